//! `mobilenet predict`

use crate::args::{open_data, InferenceWeights, LoadingArgs};
use clap::Args;
use mobilenet_wgpu::data::{index_images, LoaderOptions};
use mobilenet_wgpu::predict::{logits_for_tensor, predict_to_jsonl, Precision};
use mobilenet_wgpu::train::dataset::default_source_kind;
use mobilenet_wgpu::train::{DataOptions, DatasetKind};
use mobilenet_wgpu::Gpu;
use std::path::{Path, PathBuf};

/// Classify images (JPEG, PNG) with pretrained or trained weights: top classes with
/// probabilities. Or, with --tensor, turn an NHWC tensor into logits.
#[derive(Args)]
pub struct PredictArgs {
    /// A safetensors file: timm's mobilenetv1_100, Keras-named, one of ours, or an int8
    /// file written by `mobilenet quantize` (run on the int8 kernels).
    #[arg(long)]
    weights: PathBuf,
    images: Vec<PathBuf>,
    /// Classes listed per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// Images per GPU submit.
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Input side (default: the weights' own, 224 for timm and Keras files).
    #[arg(long)]
    resolution: Option<usize>,
    /// A safetensors file holding one f32 tensor `input` [N, H, W, C], already normalised.
    #[arg(long, requires = "logits_out", conflicts_with = "images")]
    tensor: Option<PathBuf>,
    /// Classify a whole data set instead: an image folder (class subfolders or images
    /// directly in it) or tar shards; needs --out.
    #[arg(long, requires = "out", conflicts_with_all = ["images", "tensor"])]
    data: Option<PathBuf>,
    /// Where --data writes one JSON line per image (path, top classes).
    #[arg(long, requires = "data")]
    out: Option<PathBuf>,
    /// --data: how files are read.
    #[command(flatten)]
    loading: LoadingArgs,
    /// Where --tensor writes `logits` [N, classes].
    #[arg(long, requires = "tensor")]
    logits_out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

impl PredictArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let weights = InferenceWeights::load(&self.weights)?;
        let gpu = Gpu::new()?;
        if let (Some(data), Some(out)) = (&self.data, &self.out) {
            return predict_data_set(
                (&gpu, &weights),
                (data, out),
                (self.batch, self.top),
                &self.loading.options(),
                self.resolution,
            );
        }
        if let (Some(input), Some(output)) = (&self.tensor, &self.logits_out) {
            let classifier_for = |batch, side| weights.classifier(&gpu, batch, Some(side));
            let [n, classes] = logits_for_tensor(&classifier_for, input, output, self.batch)?;
            println!("wrote logits [{n}, {classes}] to {}", output.display());
            return Ok(());
        }
        self.classify_images(&gpu, &weights)
    }

    /// The images named on the command line, printed as top classes.
    fn classify_images(&self, gpu: &Gpu, weights: &InferenceWeights) -> anyhow::Result<()> {
        let images = &self.images;
        anyhow::ensure!(
            !images.is_empty(),
            "no images given; usage: mobilenet predict --weights FILE IMAGE..."
        );
        let batch = self.batch.min(images.len());
        let classifier = weights.classifier(gpu, batch, self.resolution)?;
        let predictions = classifier.classify_files(images, self.top)?;
        if self.json {
            println!("{}", serde_json::to_string(&predictions)?);
            return Ok(());
        }
        if classifier.precision() == Precision::Int8 {
            println!(
                "int8 weights ({}), on the int8 kernels",
                self.weights.display()
            );
        }
        for p in &predictions {
            println!("{}", p.image.display());
            for r in &p.top {
                println!("  {:6.2}%  {} ({})", 100.0 * r.probability, r.name, r.class);
            }
        }
        Ok(())
    }
}

/// `predict --data D --out F`: every image of a data set, one JSON line each.
fn predict_data_set(
    (gpu, weights): (&Gpu, &InferenceWeights),
    (data, out): (&Path, &Path),
    (batch, top): (usize, usize),
    loading: &DataOptions,
    resolution: Option<usize>,
) -> anyhow::Result<()> {
    let source = match default_source_kind(data) {
        DatasetKind::Shards => open_data(Some(DatasetKind::Shards), data)?,
        _ => index_images(data)?.into(),
    };
    let classifier = weights.classifier(gpu, batch.max(1), resolution)?;
    let options = LoaderOptions {
        workers: loading.workers,
        max_bad_fraction: loading.max_bad_fraction,
        ..classifier.loader_options()
    };
    let summary = predict_to_jsonl(&classifier, source, options, top, out)?;
    println!(
        "wrote {} predictions ({} weights) to {} in {:.1} s ({:.1} images/s){}",
        summary.images,
        classifier.precision(),
        out.display(),
        summary.seconds,
        summary.images as f64 / summary.seconds.max(1e-9),
        if summary.bad_files > 0 {
            format!(
                "; {} files could not be decoded (named above)",
                summary.bad_files
            )
        } else {
            String::new()
        }
    );
    Ok(())
}
