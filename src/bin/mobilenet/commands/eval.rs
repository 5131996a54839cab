//! `mobilenet eval`

use crate::args::{override_preprocess, LoadingArgs};
use anyhow::Context;
use clap::Args;
use mobilenet_wgpu::data::{DataSource, LoaderOptions};
use mobilenet_wgpu::model::Int8Plan;
use mobilenet_wgpu::quant::QuantizedModel;
use mobilenet_wgpu::train::confusion::{plot_confusion, CONFUSION};
use mobilenet_wgpu::train::dataset::load_dataset;
use mobilenet_wgpu::train::evaluate::{
    evaluate_checkpoint, evaluate_with, format_confusion, EvalResult,
};
use mobilenet_wgpu::train::DatasetKind;
use mobilenet_wgpu::weights::{load_pretrained, PretrainedError, WeightsError};
use mobilenet_wgpu::Gpu;
use std::path::{Path, PathBuf};

/// Evaluate weights on a data set: loss, top-1, top-5 and the confusion matrix (printed, and
/// drawn into confusion.png), with the weights' own preprocessing (timm: bicubic resize to
/// 224/0.875, centre crop 224).
#[derive(Args)]
pub struct EvalArgs {
    /// Our checkpoints, timm/Keras files whose classes match the data set, or an int8 file
    /// written by `mobilenet quantize` (run on the int8 kernels).
    #[arg(long)]
    weights: PathBuf,
    #[arg(long, default_value = "fashion-mnist")]
    dataset: DatasetKind,
    /// Data directory, or shards (default for fashion-mnist: the Debian package's).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Evaluate at another input size (timm's test size for mobilenetv1_100 is 256).
    #[arg(long)]
    resolution: Option<usize>,
    /// Override the weights' centre-crop fraction (timm: 0.875 at 224, 0.95 at 256).
    #[arg(long)]
    crop_pct: Option<f32>,
    #[command(flatten)]
    loading: LoadingArgs,
    /// Evaluate only the first N test images.
    #[arg(long)]
    limit: Option<usize>,
    #[arg(long)]
    json: bool,
    /// Directory for confusion.png (default: the weights file's, which for a checkpoint of
    /// `train` is its run directory).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

impl EvalArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let set = self.test_set()?;
        let gpu = Gpu::new()?;
        let class_names = set.class_names().to_vec();
        let (result, precision) = match load_pretrained(&self.weights) {
            Err(PretrainedError::File(WeightsError::Int8File { .. })) => {
                (self.evaluate_int8(&gpu, set)?, " (int8)")
            }
            weights => {
                let mut weights_file = weights?;
                override_preprocess(&mut weights_file, self.resolution, self.crop_pct)?;
                let loading = self.loading.options();
                let result =
                    evaluate_checkpoint(&gpu, &weights_file, set, self.batch_size, &loading);
                (result.with_context(|| self.evaluating())?, "")
            }
        };
        if self.json {
            println!("{}", serde_json::to_string(&result)?);
        } else {
            println!(
                "{}{precision}: loss {:.4}  top-1 {:.2}%  top-5 {:.2}%  ({} images)",
                self.weights.display(),
                result.loss,
                100.0 * result.top1,
                100.0 * result.top5,
                result.count
            );
            print!("{}", format_confusion(&result, &class_names));
        }
        self.draw_confusion(&result, &class_names)?;
        if !result.bad_files.is_empty() {
            eprintln!(
                "{} files could not be decoded and were left out (named above)",
                result.bad_files.len()
            );
        }
        Ok(())
    }

    /// The test split where the data set has one, else its training split; --limit applied.
    fn test_set(&self) -> anyhow::Result<DataSource> {
        let (train_set, test_set) = load_dataset(self.dataset, self.data.as_deref())?;
        let set = test_set.unwrap_or(train_set);
        Ok(match self.limit {
            Some(n) => set.limit(n)?,
            None => set,
        })
    }

    fn evaluating(&self) -> String {
        format!("evaluating {}", self.weights.display())
    }

    /// An int8 file (`mobilenet quantize`) on its int8 kernels, with the float weights'
    /// preprocessing it carries. Its activation ranges were calibrated at its resolution.
    fn evaluate_int8(&self, gpu: &Gpu, set: DataSource) -> anyhow::Result<EvalResult> {
        anyhow::ensure!(
            self.resolution.is_none() && self.crop_pct.is_none(),
            "--resolution and --crop-pct do not apply to an int8 file: its ranges were \
             calibrated with its own preprocessing; quantize the float weights again instead"
        );
        anyhow::ensure!(self.batch_size > 0, "the batch size must be at least 1");
        let model = QuantizedModel::load(&self.weights)?;
        anyhow::ensure!(
            set.class_names().len() == model.config.classes,
            "the int8 model has {} classes but the data set has {}",
            model.config.classes,
            set.class_names().len()
        );
        let graph = model.config.build_folded(self.batch_size)?.graph;
        let plan = Int8Plan::compile(gpu, &graph, &model)?;
        let loading = self.loading.options();
        let options = LoaderOptions {
            workers: loading.workers,
            max_bad_fraction: loading.max_bad_fraction,
            ..model.preprocess.loader_options(self.batch_size)
        };
        let logits = |images: &[f32]| -> anyhow::Result<Vec<f32>> { Ok(plan.run(images)?.logits) };
        evaluate_with(&logits, set, options, &mut |bad| {
            eprintln!("warning: skipped {bad}")
        })
        .with_context(|| self.evaluating())
    }

    /// Writes confusion.png into --out, or beside the weights. Beside the weights it may
    /// not be writable (a shared model directory): the figures are printed already, so
    /// that is a warning there and an error only for a directory the user named.
    fn draw_confusion(&self, result: &EvalResult, class_names: &[String]) -> anyhow::Result<()> {
        let dir = match (&self.out, self.weights.parent()) {
            (Some(dir), _) => dir.as_path(),
            (None, Some(parent)) if !parent.as_os_str().is_empty() => parent,
            (None, _) => Path::new("."),
        };
        let path = dir.join(CONFUSION);
        let name = self.weights.file_name().unwrap_or(self.weights.as_os_str());
        let title = format!(
            "Confusion matrix: {} ({} images, % of each true class)",
            name.to_string_lossy(),
            result.count
        );
        match plot_confusion(&path, &result.confusion, class_names, &title) {
            Ok(()) if !self.json => println!("confusion matrix drawn in {}", path.display()),
            Ok(()) => {}
            Err(e) if self.out.is_none() => {
                eprintln!("warning: {e}; pass --out DIR to write it elsewhere")
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }
}
