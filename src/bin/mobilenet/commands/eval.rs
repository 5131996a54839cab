//! `mobilenet eval`

use crate::args::{override_preprocess, InferenceWeights, LoadingArgs};
use anyhow::Context;
use clap::Args;
use mobilenet_wgpu::data::{DataSource, LoaderOptions};
use mobilenet_wgpu::model::Int8Plan;
use mobilenet_wgpu::quant::QuantizedModel;
use mobilenet_wgpu::train::confusion::{plot_confusion, CONFUSION};
use mobilenet_wgpu::train::dataset::load_dataset;
use mobilenet_wgpu::train::evaluate::{
    evaluate_checkpoint, evaluate_with, format_confusion, top1_agreement, EvalResult,
};
use mobilenet_wgpu::train::DatasetKind;
use mobilenet_wgpu::weights::{load_pretrained, Pretrained};
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
    /// With an int8 --weights file: also evaluate these float weights (the file it was
    /// quantized from) on the same images, and report both top-1 figures and how often
    /// their top-1 predictions agree.
    #[arg(long, value_name = "FLOAT_WEIGHTS")]
    float_reference: Option<PathBuf>,
}

/// `eval --float-reference`'s figures: the int8 network and its float weights on the
/// same images.
#[derive(serde::Serialize)]
struct Agreement {
    int8: EvalResult,
    float32: EvalResult,
    /// Images whose top-1 class is the same under both, and their share of all images.
    agreeing: usize,
    top1_agreement: f64,
}

impl EvalArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let set = self.test_set()?;
        let gpu = Gpu::new()?;
        let class_names = set.class_names().to_vec();
        let (result, precision) = match InferenceWeights::load(&self.weights)? {
            InferenceWeights::Int8(model) => match &self.float_reference {
                Some(reference) => return self.compare(&gpu, &model, reference, set),
                None => (self.evaluate_int8(&gpu, &model, set)?, " (int8)"),
            },
            InferenceWeights::Float(mut weights_file) => {
                anyhow::ensure!(
                    self.float_reference.is_none(),
                    "--float-reference compares an int8 file (written by `mobilenet \
                     quantize`) with its float weights, but {} holds float weights already",
                    self.weights.display()
                );
                override_preprocess(&mut weights_file, self.resolution, self.crop_pct)?;
                (
                    self.evaluate_float(&gpu, (&weights_file, &self.weights), set)?,
                    "",
                )
            }
        };
        if self.json {
            println!("{}", serde_json::to_string(&result)?);
        } else {
            println!("{}", figures(&self.weights, precision, &result));
            print!("{}", format_confusion(&result, &class_names));
        }
        self.finish(&result, &class_names)
    }

    /// The confusion matrix drawn, and the bad files counted.
    fn finish(&self, result: &EvalResult, class_names: &[String]) -> anyhow::Result<()> {
        self.draw_confusion(result, class_names)?;
        if !result.bad_files.is_empty() {
            eprintln!(
                "{} files could not be decoded and were left out (named above)",
                result.bad_files.len()
            );
        }
        Ok(())
    }

    fn evaluate_float(
        &self,
        gpu: &Gpu,
        (weights, path): (&Pretrained, &Path),
        set: DataSource,
    ) -> anyhow::Result<EvalResult> {
        let loading = self.loading.options();
        evaluate_checkpoint(gpu, weights, set, self.batch_size, &loading)
            .with_context(|| format!("evaluating {}", path.display()))
    }

    /// `--float-reference F`: the int8 file and F on the same images (F must be the
    /// network the int8 file was quantized from: same configuration, classes and
    /// preprocessing), with the agreement of their top-1 predictions.
    fn compare(
        &self,
        gpu: &Gpu,
        model: &QuantizedModel,
        reference: &Path,
        set: DataSource,
    ) -> anyhow::Result<()> {
        let float = load_pretrained(reference)
            .with_context(|| format!("--float-reference {}", reference.display()))?;
        same_network(model, &float, reference)?;
        let class_names = set.class_names().to_vec();
        let int8 = self.evaluate_int8(gpu, model, set.clone())?;
        let float32 = self.evaluate_float(gpu, (&float, reference), set)?;
        let (agreeing, count) = top1_agreement(&int8, &float32)?;
        let both = Agreement {
            top1_agreement: agreeing as f64 / count.max(1) as f64,
            agreeing,
            int8,
            float32,
        };
        if self.json {
            println!("{}", serde_json::to_string(&both)?);
        } else {
            println!("{}", figures(&self.weights, " (int8)", &both.int8));
            println!("{}", figures(reference, " (float32)", &both.float32));
            println!(
                "top-1 agreement: {:.2}% ({agreeing} of {count} images get the same top-1 \
                 class from both)",
                100.0 * both.top1_agreement
            );
            print!("{}", format_confusion(&both.int8, &class_names));
        }
        self.finish(&both.int8, &class_names)
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
    fn evaluate_int8(
        &self,
        gpu: &Gpu,
        model: &QuantizedModel,
        set: DataSource,
    ) -> anyhow::Result<EvalResult> {
        anyhow::ensure!(
            self.resolution.is_none() && self.crop_pct.is_none(),
            "--resolution and --crop-pct do not apply to an int8 file: its ranges were \
             calibrated with its own preprocessing; quantize the float weights again instead"
        );
        anyhow::ensure!(self.batch_size > 0, "the batch size must be at least 1");
        anyhow::ensure!(
            set.class_names().len() == model.config.classes,
            "the int8 model has {} classes but the data set has {}",
            model.config.classes,
            set.class_names().len()
        );
        let graph = model.config.build_folded(self.batch_size)?.graph;
        let plan = Int8Plan::compile(gpu, &graph, model)?;
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

/// The one-line summary of an evaluation.
fn figures(weights: &Path, precision: &str, result: &EvalResult) -> String {
    format!(
        "{}{precision}: loss {:.4}  top-1 {:.2}%  top-5 {:.2}%  ({} images)",
        weights.display(),
        result.loss,
        100.0 * result.top1,
        100.0 * result.top5,
        result.count
    )
}

/// Refuses a float reference that is not the network the int8 file was quantized from:
/// their agreement would mean nothing.
fn same_network(model: &QuantizedModel, float: &Pretrained, path: &Path) -> anyhow::Result<()> {
    let mut differences = Vec::new();
    if model.config != float.config {
        differences.push(format!(
            "configuration: int8 {}, float {}",
            serde_json::to_string(&model.config)?,
            serde_json::to_string(&float.config)?
        ));
    }
    if model.class_names != float.class_names {
        differences.push(format!(
            "classes: int8 {} ({}, ...), float {} ({}, ...)",
            model.class_names.len(),
            model.class_names.first().map_or("", String::as_str),
            float.class_names.len(),
            float.class_names.first().map_or("", String::as_str)
        ));
    }
    if model.preprocess != float.preprocess {
        differences.push(format!(
            "preprocessing: int8 {:?}, float {:?}",
            model.preprocess, float.preprocess
        ));
    }
    anyhow::ensure!(
        differences.is_empty(),
        "--float-reference {} is not the network the int8 file was quantized from; they \
         differ in\n  {}\npass the float weights given to `mobilenet quantize`",
        path.display(),
        differences.join("\n  ")
    );
    Ok(())
}
