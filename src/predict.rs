//! Inference on loaded weights: `mobilenet predict` on image files or on a raw NHWC tensor.
//! Batchnorm is folded into the convolutions, so a batch runs one pass per convolution.

use crate::data::{load_image, BatchLoader, DataSource, LoaderOptions};
use crate::gpu::Gpu;
use crate::graph::Plan;
use crate::weights::Pretrained;
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A compiled inference plan for one batch size.
///
/// ```
/// use mobilenet_wgpu::predict::Classifier;
/// use mobilenet_wgpu::weights::load_pretrained;
/// use mobilenet_wgpu::Gpu;
/// use std::path::{Path, PathBuf};
///
/// # let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm_mnv1_025_c10.safetensors");
/// # let dir = tempfile::tempdir()?;
/// # let image_path = dir.path().join("photo.jpg");
/// # image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 128])).save(&image_path)?;
/// # let image = image_path.as_path();
/// # let weights_path = fixture.as_path();
/// # /*
/// // timm's mobilenetv1_100 as published (model.safetensors), or any of our checkpoints.
/// let weights_path = Path::new("mobilenetv1_100.safetensors");
/// let image = Path::new("photo.jpg");
/// # */
/// let gpu = Gpu::new()?;
/// let weights = load_pretrained(weights_path)?;
/// // Up to 4 images per submit, at the weights' own resolution.
/// let classifier = Classifier::new(&gpu, &weights, 4, None)?;
/// let predictions = classifier.classify_files(&weights, &[PathBuf::from(image)], 5)?;
/// for ranked in &predictions[0].top {
///     println!("{:5.1}%  {}", 100.0 * ranked.probability, ranked.name);
/// }
/// assert_eq!(predictions[0].top.len(), 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Classifier {
    plan: Plan,
    batch: usize,
    classes: usize,
    image_len: usize,
}

/// One class of a top-k list.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Ranked {
    pub class: usize,
    pub name: String,
    pub probability: f32,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Prediction {
    pub image: PathBuf,
    pub top: Vec<Ranked>,
}

impl Classifier {
    /// Folds the weights' batchnorm and compiles the network for `batch` images per submit.
    /// `resolution` overrides the weights' own input size (convolutions accept any).
    pub fn new(
        gpu: &Gpu,
        weights: &Pretrained,
        batch: usize,
        resolution: Option<usize>,
    ) -> anyhow::Result<Classifier> {
        anyhow::ensure!(batch > 0, "the batch size must be at least 1");
        let config = crate::model::MobileNetV1Config {
            resolution: resolution.unwrap_or(weights.config.resolution),
            ..weights.config.clone()
        };
        Ok(Classifier {
            plan: config.inference_plan(gpu, &weights.params, batch)?,
            batch,
            classes: config.classes,
            image_len: config.resolution * config.resolution * config.in_channels,
        })
    }

    /// Logits [n, classes] of n images given as NHWC values, run `batch` images per submit
    /// (the last batch padded with zeros).
    pub fn logits(&self, inputs: &[f32]) -> anyhow::Result<Vec<f32>> {
        Ok(self.run(inputs)?.0)
    }

    /// (logits, probabilities), both [n, classes].
    fn run(&self, inputs: &[f32]) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
        anyhow::ensure!(
            inputs.len().is_multiple_of(self.image_len),
            "{} input values are not a whole number of {}-value images",
            inputs.len(),
            self.image_len
        );
        let count = inputs.len() / self.image_len;
        let mut logits = Vec::with_capacity(count * self.classes);
        let mut probs = Vec::with_capacity(count * self.classes);
        let mut padded = vec![0.0f32; self.batch * self.image_len];
        for chunk in inputs.chunks(self.batch * self.image_len) {
            let images = chunk.len() / self.image_len;
            padded[..chunk.len()].copy_from_slice(chunk);
            padded[chunk.len()..].fill(0.0);
            let outputs = self.plan.run(&padded)?;
            logits.extend_from_slice(&outputs[0][..images * self.classes]);
            probs.extend_from_slice(&outputs[1][..images * self.classes]);
        }
        Ok((logits, probs))
    }

    /// The `k` most probable classes of each image file, decoded and preprocessed as the
    /// weights expect.
    pub fn classify_files(
        &self,
        weights: &Pretrained,
        files: &[PathBuf],
        k: usize,
    ) -> anyhow::Result<Vec<Prediction>> {
        let mut preprocess = weights.preprocess.clone();
        preprocess.resolution = (self.image_len / weights.config.in_channels).isqrt();
        let mut inputs = Vec::with_capacity(files.len() * self.image_len);
        for file in files {
            inputs.extend(load_image(file, &preprocess)?);
        }
        let (_, probs) = self.run(&inputs)?;
        Ok(files
            .iter()
            .zip(probs.chunks(self.classes))
            .map(|(file, row)| Prediction {
                image: file.clone(),
                top: top_k(row, k, &weights.class_names),
            })
            .collect())
    }
}

/// The `k` largest entries of a probability row, most probable first.
pub fn top_k(row: &[f32], k: usize, names: &[String]) -> Vec<Ranked> {
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(k)
        .map(|class| Ranked {
            class,
            name: names
                .get(class)
                .cloned()
                .unwrap_or_else(|| format!("class {class}")),
            probability: row[class],
        })
        .collect()
}

/// `--tensor IN --logits-out OUT`: IN holds one f32 tensor `input` [N, H, W, C] (NHWC,
/// already normalised, H = W); OUT receives `logits` [N, classes].
pub fn logits_for_tensor(
    gpu: &Gpu,
    weights: &Pretrained,
    input_path: &Path,
    output_path: &Path,
    batch: usize,
) -> anyhow::Result<[usize; 2]> {
    let file = crate::weights::load_safetensors(input_path)?;
    let input = file
        .tensors
        .iter()
        .find(|t| t.name == "input")
        .with_context(|| {
            format!(
                "{} has no tensor named `input` (it has: {}); save the batch as `input`, f32 [N, H, W, C]",
                input_path.display(),
                file.tensors.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?;
    let &[n, h, w, c] = input.shape.as_slice() else {
        anyhow::bail!(
            "{}: `input` has shape {:?}; expected [N, H, W, C] (NHWC)",
            input_path.display(),
            input.shape
        );
    };
    anyhow::ensure!(
        h == w && h > 0,
        "{}: `input` is {h}x{w}; the network takes square inputs",
        input_path.display()
    );
    anyhow::ensure!(
        c == weights.config.in_channels,
        "{}: `input` has {c} channels but the weights expect {} (NHWC: channels last)",
        input_path.display(),
        weights.config.in_channels
    );
    let classifier = Classifier::new(gpu, weights, batch.min(n).max(1), Some(h))?;
    let logits = classifier.logits(&input.values)?;
    let classes = weights.config.classes;
    crate::weights::save_safetensors(
        output_path,
        &[("logits", &[n, classes], &logits)],
        &Default::default(),
    )?;
    Ok([n, classes])
}

/// One line of `predict --data ... --out predictions.jsonl`.
#[derive(Clone, Debug, serde::Serialize)]
struct PredictionLine<'a> {
    path: &'a str,
    top: Vec<Ranked>,
}

/// What `predict_to_jsonl` did.
#[derive(Clone, Debug)]
pub struct PredictSummary {
    pub images: usize,
    pub bad_files: usize,
    pub seconds: f64,
}

/// Streams `source` through the loader (the weights' evaluation view) and the network,
/// writing one JSON line per image to `out`: memory stays bounded by the loader's batches,
/// and the file appears under its name only once complete.
pub fn predict_to_jsonl(
    gpu: &Gpu,
    weights: &Pretrained,
    source: DataSource,
    options: LoaderOptions,
    k: usize,
    out: &Path,
) -> anyhow::Result<PredictSummary> {
    let started = std::time::Instant::now();
    let classifier = Classifier::new(gpu, weights, options.batch_size, Some(options.resolution))?;
    let partial = partial_path(out);
    let file = std::fs::File::create(&partial).with_context(|| {
        format!(
            "cannot create {}; check that its folder exists and is writable",
            partial.display()
        )
    })?;
    let mut writer = std::io::BufWriter::new(file);
    let mut summary = PredictSummary {
        images: 0,
        bad_files: 0,
        seconds: 0.0,
    };
    let written = (|| -> anyhow::Result<()> {
        for batch in BatchLoader::new(source, options, 0)? {
            let batch = batch?;
            for bad in &batch.bad {
                eprintln!("warning: skipped {bad}");
            }
            summary.bad_files += batch.bad.len();
            let (_, probs) = classifier.run(&batch.images)?;
            for (origin, row) in batch.origins.iter().zip(probs.chunks(classifier.classes)) {
                let line = PredictionLine {
                    path: origin,
                    top: top_k(row, k, &weights.class_names),
                };
                serde_json::to_writer(&mut writer, &line)?;
                writer.write_all(b"\n")?;
            }
            summary.images += batch.count;
        }
        writer.flush()?;
        writer.get_ref().sync_all()?;
        Ok(())
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(error.context(format!("writing {}", out.display())));
    }
    std::fs::rename(&partial, out)
        .with_context(|| format!("cannot move {} to {}", partial.display(), out.display()))?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// `DIR/.NAME.partial`, beside the final file so the rename stays on one file system.
fn partial_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "predictions.jsonl".to_string());
    out.with_file_name(format!(".{name}.partial"))
}
