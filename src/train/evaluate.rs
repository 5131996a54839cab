//! Loss, top-1/top-5 accuracy and the confusion matrix of a model on a data set.

use crate::data::{BadSample, BatchLoader, DataSource, LoaderOptions};
use crate::graph::Plan;
use std::fmt::Write;

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvalResult {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fractions in [0, 1].
    pub top1: f64,
    pub top5: f64,
    pub count: usize,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    /// Files that could not be decoded and were left out of the figures.
    pub bad_files: Vec<String>,
    /// The top-1 class of each image, in the loader's order (`top1_agreement` compares two
    /// networks' on the same images). Not in the JSON: one number per image.
    #[serde(skip)]
    pub predictions: Vec<u32>,
}

/// Cross-entropy of one row of logits against its label, in f64.
pub fn cross_entropy(logits: &[f32], label: usize) -> f64 {
    let peak = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let total: f64 = logits.iter().map(|&v| (v as f64 - peak).exp()).sum();
    total.ln() - (logits[label] as f64 - peak)
}

/// Whether `label` is among the `k` largest logits (ties resolved against it).
pub fn in_top_k(logits: &[f32], label: usize, k: usize) -> bool {
    let target = logits[label];
    logits.iter().filter(|&&v| v > target).count() < k
}

/// Runs `plan` (an inference plan whose first output is the logits) over `source`, naming
/// each bad file on stderr. `options` should neither shuffle, augment nor drop the last
/// batch.
pub fn evaluate(
    plan: &Plan,
    source: DataSource,
    options: LoaderOptions,
) -> anyhow::Result<EvalResult> {
    evaluate_reporting(plan, source, options, &mut |bad| {
        eprintln!("warning: skipped {bad}")
    })
}

/// `evaluate`, with `report` told of each bad file (a trainer names each once per run).
pub fn evaluate_reporting(
    plan: &Plan,
    source: DataSource,
    options: LoaderOptions,
    report: &mut dyn FnMut(&BadSample),
) -> anyhow::Result<EvalResult> {
    let logits =
        |images: &[f32]| -> anyhow::Result<Vec<f32>> { Ok(plan.run(images)?.swap_remove(0)) };
    evaluate_with(&logits, source, options, report)
}

/// The figures of any network that maps a batch of images to its logits (the float plan,
/// or the int8 one `eval` runs for an int8 file).
pub fn evaluate_with(
    logits_of: &dyn Fn(&[f32]) -> anyhow::Result<Vec<f32>>,
    source: DataSource,
    options: LoaderOptions,
    report: &mut dyn FnMut(&BadSample),
) -> anyhow::Result<EvalResult> {
    let classes = source.class_names().len().max(1);
    let loader = BatchLoader::new(source, options, 0)?;
    let mut bad_files = Vec::new();
    let mut confusion = vec![vec![0u64; classes]; classes];
    let mut predictions = Vec::new();
    let (mut loss, mut top1, mut top5, mut count) = (0.0f64, 0usize, 0usize, 0usize);
    for batch in loader {
        let batch = batch?;
        for bad in &batch.bad {
            report(bad);
            bad_files.push(bad.origin.clone());
        }
        let logits = &logits_of(&batch.images)?;
        let width = logits.len() / batch.labels.len().max(1);
        for (row, &label) in logits.chunks(width).zip(&batch.labels).take(batch.count) {
            let label = label as usize;
            anyhow::ensure!(
                label < width,
                "label {label} is out of range for a {width}-class model"
            );
            loss += cross_entropy(row, label);
            top1 += in_top_k(row, label, 1) as usize;
            top5 += in_top_k(row, label, 5) as usize;
            let predicted = crate::graph::argmax(row);
            predictions.push(predicted as u32);
            if label < classes && predicted < classes {
                confusion[label][predicted] += 1;
            }
            count += 1;
        }
    }
    let n = count.max(1) as f64;
    Ok(EvalResult {
        loss: loss / n,
        top1: top1 as f64 / n,
        top5: top5 as f64 / n,
        count,
        confusion,
        bad_files,
        predictions,
    })
}

/// How often two networks evaluated on the same images (the same data set and
/// preprocessing, so the loader gives the same images in the same order) pick the same
/// top-1 class: (images agreeing, images).
pub fn top1_agreement(a: &EvalResult, b: &EvalResult) -> anyhow::Result<(usize, usize)> {
    anyhow::ensure!(
        a.predictions.len() == b.predictions.len() && a.bad_files == b.bad_files,
        "the two evaluations did not see the same images ({} and {} predictions, {} and {} \
         files left out)",
        a.predictions.len(),
        b.predictions.len(),
        a.bad_files.len(),
        b.bad_files.len()
    );
    let agreeing = a
        .predictions
        .iter()
        .zip(&b.predictions)
        .filter(|(x, y)| x == y);
    Ok((agreeing.count(), a.predictions.len()))
}

/// The confusion matrix as a table: rows are true classes, columns predictions.
pub fn format_confusion(result: &EvalResult, class_names: &[String]) -> String {
    let name_width = class_names
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(5)
        .clamp(5, 16);
    let width = (name_width + 3).max(16);
    let mut out = String::new();
    let _ = write!(out, "{:>width$} |", "true \\ predicted");
    for i in 0..result.confusion.len() {
        let _ = write!(out, " {i:>5}");
    }
    out.push('\n');
    for (i, row) in result.confusion.iter().enumerate() {
        let name = class_names.get(i).map(String::as_str).unwrap_or("?");
        let short: String = name.chars().take(name_width).collect();
        let _ = write!(out, "{:>width$} |", format!("{i} {short}"));
        for v in row {
            let _ = write!(out, " {v:>5}");
        }
        out.push('\n');
    }
    out
}

/// Evaluates weights on a data set with the checkpoint's own preprocessing (normalisation and
/// centre crop), batchnorm folded into the convolutions; `loading` sets the decoding threads
/// and the tolerated share of bad files.
pub fn evaluate_checkpoint(
    gpu: &crate::gpu::Gpu,
    weights: &crate::weights::Pretrained,
    source: DataSource,
    batch_size: usize,
    loading: &super::DataOptions,
) -> anyhow::Result<EvalResult> {
    let config = &weights.config;
    anyhow::ensure!(batch_size > 0, "the batch size must be at least 1");
    anyhow::ensure!(
        source.class_names().len() == config.classes,
        "the checkpoint has {} classes but the data set has {}",
        config.classes,
        source.class_names().len()
    );
    let plan = config.inference_plan(gpu, &weights.params, batch_size)?;
    let options = LoaderOptions {
        workers: loading.workers,
        max_bad_fraction: loading.max_bad_fraction,
        ..weights.preprocess.loader_options(batch_size)
    };
    evaluate(&plan, source, options)
}
