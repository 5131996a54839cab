//! `mobilenet export`

use clap::{Args, ValueEnum};
use mobilenet_wgpu::quant::onnx::export_onnx_int8;
use mobilenet_wgpu::quant::QuantizedModel;
use mobilenet_wgpu::weights::{
    export_onnx, export_timm, load_pretrained, InputLayout, OnnxOptions, OnnxSummary, Pretrained,
    PretrainedError, WeightsError, ONNX_OPSET,
};
use mobilenet_wgpu::MobileNetV1Config;
use std::path::{Path, PathBuf};

/// Convert weights to another format: `--format timm` writes timm's names and PyTorch
/// layouts, loadable with `model.load_state_dict(safetensors.torch.load_file(...))`;
/// `--format onnx` writes an ONNX model (opset 13, dynamic batch).
///
/// Given an int8 file of `mobilenet quantize`, `--format onnx` writes the int8 model in the
/// QDQ form (QuantizeLinear/DequantizeLinear around every convolution and the classifier)
/// that onnxruntime runs with integer kernels.
#[derive(Args)]
pub struct ExportArgs {
    #[arg(long)]
    weights: PathBuf,
    #[arg(long, value_enum)]
    format: ExportFormat,
    #[arg(long)]
    out: PathBuf,
    /// ONNX only: layout of the model's `input`, nchw ([N, C, H, W], default) or nhwc.
    #[arg(long)]
    input_layout: Option<InputLayout>,
    /// ONNX only: keep batchnorm as BatchNormalization nodes instead of folding it into
    /// the convolutions (float weights only: an int8 file has it folded into its weights).
    #[arg(long)]
    keep_bn: bool,
    /// ONNX only: end with Softmax; the output is `probabilities` instead of `logits`.
    #[arg(long)]
    softmax: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// timm's names and PyTorch layouts (safetensors).
    Timm,
    /// An ONNX model (opset 13) for onnxruntime, tract, TensorRT, OpenVINO, ...
    Onnx,
}

impl ExportArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let onnx_only = [
            (self.input_layout.is_some(), "--input-layout"),
            (self.keep_bn, "--keep-bn"),
            (self.softmax, "--softmax"),
        ];
        if let (ExportFormat::Timm, Some((_, flag))) =
            (self.format, onnx_only.iter().find(|(given, _)| *given))
        {
            anyhow::bail!("{flag} applies to --format onnx only; drop it for --format timm");
        }
        let options = OnnxOptions {
            input_layout: self.input_layout.unwrap_or_default(),
            keep_bn: self.keep_bn,
            softmax: self.softmax,
        };
        let pretrained = match load_pretrained(&self.weights) {
            // An int8 file: only its ONNX form exists (QDQ); timm has no int8 layout.
            Err(PretrainedError::File(WeightsError::Int8File { .. }))
                if matches!(self.format, ExportFormat::Onnx) =>
            {
                return write_onnx_int8(&self.weights, &options, &self.out);
            }
            loaded => loaded?,
        };
        match self.format {
            ExportFormat::Timm => write_timm(&pretrained, &self.out),
            ExportFormat::Onnx => write_onnx(&pretrained, &options, &self.out),
        }
    }
}

fn write_timm(pretrained: &Pretrained, out: &Path) -> anyhow::Result<()> {
    export_timm(&pretrained.config, &pretrained.params, out)?;
    println!(
        "wrote {} ({} naming -> timm, alpha {}, {} classes)",
        out.display(),
        pretrained.naming,
        pretrained.config.alpha,
        pretrained.config.classes
    );
    Ok(())
}

fn write_onnx(pretrained: &Pretrained, options: &OnnxOptions, out: &Path) -> anyhow::Result<()> {
    let summary = export_onnx(pretrained, options, out)?;
    let source = format!("{} naming", pretrained.naming);
    report_onnx(&pretrained.config, options, out, &source, &summary);
    Ok(())
}

fn write_onnx_int8(weights: &Path, options: &OnnxOptions, out: &Path) -> anyhow::Result<()> {
    if options.keep_bn {
        anyhow::bail!(
            "--keep-bn does not apply to an int8 file: its batch norm is folded into the int8 \
             weights; drop it (or export the float checkpoint with --keep-bn)"
        );
    }
    let model = QuantizedModel::load(weights)?;
    let summary = export_onnx_int8(&model, options, out)?;
    report_onnx(&model.config, options, out, "int8, QDQ", &summary);
    Ok(())
}

/// The line that says what was written and how to feed it.
fn report_onnx(
    config: &MobileNetV1Config,
    options: &OnnxOptions,
    out: &Path,
    source: &str,
    summary: &OnnxSummary,
) {
    let (res, channels) = (config.resolution, config.in_channels);
    let input_shape = match options.input_layout {
        InputLayout::Nchw => format!("[batch, {channels}, {res}, {res}]"),
        InputLayout::Nhwc => format!("[batch, {res}, {res}, {channels}]"),
    };
    println!(
        "wrote {} ({source} -> ONNX opset {ONNX_OPSET}, {} bytes, {} nodes): \
         input `input` {input_shape} ({}), output `{}` [batch, {}]",
        out.display(),
        summary.bytes,
        summary.nodes,
        options.input_layout,
        summary.output,
        config.classes
    );
}
