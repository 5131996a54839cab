//! `mobilenet export`

use clap::{Args, ValueEnum};
use mobilenet_wgpu::weights::{
    export_onnx, export_timm, load_pretrained, InputLayout, OnnxOptions, Pretrained, ONNX_OPSET,
};
use std::path::{Path, PathBuf};

/// Convert weights to another format: `--format timm` writes timm's names and PyTorch
/// layouts, loadable with `model.load_state_dict(safetensors.torch.load_file(...))`;
/// `--format onnx` writes an ONNX model (opset 13, dynamic batch).
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
    /// the convolutions.
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
        let pretrained = load_pretrained(&self.weights)?;
        match self.format {
            ExportFormat::Timm => write_timm(&pretrained, &self.out),
            ExportFormat::Onnx => {
                let options = OnnxOptions {
                    input_layout: self.input_layout.unwrap_or_default(),
                    keep_bn: self.keep_bn,
                    softmax: self.softmax,
                };
                write_onnx(&pretrained, &options, &self.out)
            }
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
    let (res, channels) = (pretrained.config.resolution, pretrained.config.in_channels);
    let input_shape = match options.input_layout {
        InputLayout::Nchw => format!("[batch, {channels}, {res}, {res}]"),
        InputLayout::Nhwc => format!("[batch, {res}, {res}, {channels}]"),
    };
    println!(
        "wrote {} ({} naming -> ONNX opset {ONNX_OPSET}, {} bytes, {} nodes): \
         input `input` {input_shape} ({}), output `{}` [batch, {}]",
        out.display(),
        pretrained.naming,
        summary.bytes,
        summary.nodes,
        options.input_layout,
        summary.output,
        pretrained.config.classes
    );
    Ok(())
}
