//! Inference on loaded weights: `mobilenet predict` on image files or on a raw NHWC tensor.
//! Batchnorm is folded into the convolutions, so a batch runs one pass per convolution.
//! Float weights run on the f32 plan, an int8 file (`mobilenet quantize`) on the int8 one;
//! everything else (batching, preprocessing, ranking, the output) is one path for both.

use crate::data::{load_image, BatchLoader, DataSource, LoaderOptions, Preprocess};
use crate::gpu::Gpu;
use crate::graph::Plan;
use crate::model::{Int8Plan, MobileNetV1Config};
use crate::ops::Int8Numbers;
use crate::weights::Pretrained;
use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A compiled inference plan for one batch size, float or int8.
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
/// let predictions = classifier.classify_files(&[PathBuf::from(image)], 5)?;
/// for ranked in &predictions[0].top {
///     println!("{:5.1}%  {}", 100.0 * ranked.probability, ranked.name);
/// }
/// assert_eq!(predictions[0].top.len(), 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Classifier {
    network: Network,
    batch: usize,
    classes: usize,
    image_len: usize,
    /// The weights' preprocessing at the plan's resolution.
    preprocess: Preprocess,
    in_channels: usize,
    class_names: Vec<String>,
}

/// The numbers a classifier computes with; every prediction says which.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Float32,
    Int8,
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Float32 => "float32",
            Precision::Int8 => "int8",
        })
    }
}

/// An int8 network's numbers (`quant::QuantizedModel`, read from an int8 file) with what
/// predictions need besides them.
pub struct Int8Weights<'a> {
    pub numbers: &'a dyn Int8Numbers,
    pub config: &'a MobileNetV1Config,
    pub preprocess: &'a Preprocess,
    pub class_names: &'a [String],
}

/// The compiled network: how a batch's logits and probabilities come out is all that
/// differs between float and int8.
enum Network {
    Float(Plan),
    Int8(Int8Plan),
}

impl Network {
    /// (logits, probabilities) of one full batch.
    fn run(&self, batch: &[f32]) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
        match self {
            Network::Float(plan) => {
                let mut outputs = plan.run(batch)?.into_iter();
                let mut next = || outputs.next().context("the plan gave no probabilities");
                Ok((next()?, next()?))
            }
            Network::Int8(plan) => {
                let outputs = plan.run(batch)?;
                let probs = outputs
                    .probabilities
                    .context("the int8 plan gave no probabilities")?;
                Ok((outputs.logits, probs))
            }
        }
    }
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
    /// The weights' numbers: `float32`, or `int8` for an int8 file.
    pub precision: Precision,
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
        let config = MobileNetV1Config {
            resolution: resolution.unwrap_or(weights.config.resolution),
            ..weights.config.clone()
        };
        let plan = config.inference_plan(gpu, &weights.params, batch)?;
        Ok(Classifier::around(
            Network::Float(plan),
            (&config, &weights.preprocess, &weights.class_names),
            batch,
        ))
    }

    /// The int8 network (`mobilenet quantize`'s file) on the int8 kernels. Its activation
    /// ranges were calibrated at its own resolution, so `resolution` may only repeat it.
    pub fn int8(
        gpu: &Gpu,
        weights: &Int8Weights<'_>,
        batch: usize,
        resolution: Option<usize>,
    ) -> anyhow::Result<Classifier> {
        anyhow::ensure!(batch > 0, "the batch size must be at least 1");
        let config = weights.config;
        let own = config.resolution;
        anyhow::ensure!(
            resolution.is_none_or(|r| r == own),
            "the int8 weights take {own}x{own} inputs (their ranges were calibrated there), \
             not {r}x{r}; quantize the float weights at that resolution instead",
            r = resolution.unwrap_or(own)
        );
        let graph = config.build_folded(batch)?.graph;
        let plan = Int8Plan::compile(gpu, &graph, weights.numbers)?;
        Ok(Classifier::around(
            Network::Int8(plan),
            (config, weights.preprocess, weights.class_names),
            batch,
        ))
    }

    fn around(
        network: Network,
        (config, preprocess, class_names): (&MobileNetV1Config, &Preprocess, &[String]),
        batch: usize,
    ) -> Classifier {
        Classifier {
            network,
            batch,
            classes: config.classes,
            image_len: config.resolution * config.resolution * config.in_channels,
            preprocess: Preprocess {
                resolution: config.resolution,
                ..preprocess.clone()
            },
            in_channels: config.in_channels,
            class_names: class_names.to_vec(),
        }
    }

    /// Float32, or int8 for an int8 file.
    pub fn precision(&self) -> Precision {
        match self.network {
            Network::Float(_) => Precision::Float32,
            Network::Int8(_) => Precision::Int8,
        }
    }

    /// How the loader should prepare a data set for this network (no shuffling or
    /// augmentation; the network's batch and resolution).
    pub fn loader_options(&self) -> LoaderOptions {
        self.preprocess.loader_options(self.batch)
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
            let (batch_logits, batch_probs) = self.network.run(&padded)?;
            logits.extend_from_slice(&batch_logits[..images * self.classes]);
            probs.extend_from_slice(&batch_probs[..images * self.classes]);
        }
        Ok((logits, probs))
    }

    /// The `k` most probable classes of each image file, decoded and preprocessed as the
    /// weights expect.
    pub fn classify_files(&self, files: &[PathBuf], k: usize) -> anyhow::Result<Vec<Prediction>> {
        let mut inputs = Vec::with_capacity(files.len() * self.image_len);
        for file in files {
            inputs.extend(load_image(file, &self.preprocess)?);
        }
        let (_, probs) = self.run(&inputs)?;
        Ok(files
            .iter()
            .zip(probs.chunks(self.classes))
            .map(|(file, row)| Prediction {
                image: file.clone(),
                top: top_k(row, k, &self.class_names),
                precision: self.precision(),
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
/// already normalised, H = W); OUT receives `logits` [N, classes]. `classifier_for(batch,
/// side)` compiles the network for the tensor's images.
pub fn logits_for_tensor(
    classifier_for: &dyn Fn(usize, usize) -> anyhow::Result<Classifier>,
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
    let classifier = classifier_for(batch.min(n).max(1), h)?;
    anyhow::ensure!(
        c == classifier.in_channels,
        "{}: `input` has {c} channels but the weights expect {} (NHWC: channels last)",
        input_path.display(),
        classifier.in_channels
    );
    let logits = classifier.logits(&input.values)?;
    let classes = classifier.classes;
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
    precision: Precision,
}

/// What `predict_to_jsonl` did.
#[derive(Clone, Debug)]
pub struct PredictSummary {
    pub images: usize,
    pub bad_files: usize,
    pub seconds: f64,
}

/// Streams `source` through the loader (`options`: the classifier's `loader_options`, the
/// decoding threads and bad-file tolerance the user chose) and the network, writing one
/// JSON line per image to `out`: memory stays bounded by the loader's batches, and the file
/// appears under its name only once complete.
pub fn predict_to_jsonl(
    classifier: &Classifier,
    source: DataSource,
    options: LoaderOptions,
    k: usize,
    out: &Path,
) -> anyhow::Result<PredictSummary> {
    let started = std::time::Instant::now();
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
        write_predictions(classifier, source, options, k, &mut writer, &mut summary)?;
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

/// One JSON line per image of `source` to `writer`, counting images and bad files in
/// `summary`.
fn write_predictions(
    classifier: &Classifier,
    source: DataSource,
    options: LoaderOptions,
    k: usize,
    writer: &mut impl Write,
    summary: &mut PredictSummary,
) -> anyhow::Result<()> {
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
                top: top_k(row, k, &classifier.class_names),
                precision: classifier.precision(),
            };
            serde_json::to_writer(&mut *writer, &line)?;
            writer.write_all(b"\n")?;
        }
        summary.images += batch.count;
    }
    Ok(())
}

/// `DIR/.NAME.partial`, beside the final file so the rename stays on one file system.
fn partial_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "predictions.jsonl".to_string());
    out.with_file_name(format!(".{name}.partial"))
}
