//! The training loop behind `mobilenet train`: data, GPU steps, per-epoch evaluation,
//! metrics, curves and checkpoints that survive a kill.

use super::checkpoint::Checkpoint;
use super::curves::plot_curves;
use super::dataset::{
    eval_loader_options, train_loader_options, DataOptions, DatasetKind, Splits, TrainData,
};
use super::evaluate::{evaluate, EvalResult};
use super::metrics::{
    append_metrics, format_epoch_line, read_metrics, truncate_metrics, EpochMetrics,
};
use super::network::Network;
use super::run_lock::RunLock;
use super::{OptimizerConfig, Schedule};
use crate::data::{Augment, Batch, BatchLoader, DataSource, LoaderOptions, Normalize};
use crate::gpu::Gpu;
use crate::graph::{ParamStore, Plan, RunningMetrics, TrainPlan};
use crate::model::{MobileNetV1Config, BLOCKS, POOL_STAGE};
use crate::weights::{load_pretrained, Pretrained};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Everything `train` needs; the CLI fills it from its flags.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    pub dataset: DatasetKind,
    pub data_dir: Option<PathBuf>,
    /// Validation data of the same kind; otherwise `val_fraction` of the training data.
    #[serde(default)]
    pub val_dir: Option<PathBuf>,
    #[serde(default)]
    pub data: DataOptions,
    /// The network; `classes` is taken from the data set.
    pub model: MobileNetV1Config,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerConfig,
    pub schedule: Schedule,
    /// Weight of the batch statistic in BN's running statistics (PyTorch convention).
    pub bn_momentum: f32,
    pub seed: u64,
    /// Keep only the first N training images (smoke runs).
    pub limit: Option<usize>,
    /// Keep only the first N test images.
    pub test_limit: Option<usize>,
    /// Fraction of the training set held out for validation.
    pub val_fraction: f32,
    pub augment: Augment,
    pub out_dir: PathBuf,
    pub resume: bool,
    /// Draw a progress bar (on a terminal).
    pub progress: bool,
    /// Start from pretrained weights with a new classifier (`mobilenet finetune`).
    pub finetune: Option<Finetune>,
}

/// Transfer learning: a pretrained network, a new classifier for the data set's classes,
/// and how much of the backbone keeps training.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Finetune {
    /// Any file `weights::load_pretrained` reads (timm, Keras, ours).
    pub weights: PathBuf,
    /// Blocks (counted from the last, 0..=13) that train with the classifier; the stem and
    /// the blocks before them are frozen and run in inference form (batchnorm folded, no
    /// backward, no gradient buffers). `None`: the whole network trains.
    pub trainable_blocks: Option<usize>,
    /// Input side; default: the pretrained network's.
    pub resolution: Option<usize>,
    /// Classes the new classifier must have; checked against the data set's.
    pub classes: Option<usize>,
}

impl Finetune {
    /// The first stage that trains (see `model::STAGES`). With the whole backbone frozen the
    /// pool runs frozen too, so only pooled features cross over to the trained part.
    pub(crate) fn first_trained_stage(&self) -> usize {
        match self.trainable_blocks {
            None => 0,
            Some(0) => POOL_STAGE + 1,
            Some(k) => POOL_STAGE - k.min(BLOCKS.len()),
        }
    }
}

impl TrainOptions {
    /// The options that must not change when a run is resumed.
    fn fingerprint(&self) -> String {
        let mut same = self.clone();
        same.epochs = 0;
        same.resume = false;
        same.progress = false;
        same.data.workers = 0;
        same.out_dir = PathBuf::new();
        // Taken from the data set, whatever the caller put there.
        same.model.classes = 0;
        serde_json::to_string(&same).unwrap_or_default()
    }
}

#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub epochs: Vec<EpochMetrics>,
    pub best_val_acc: Option<f64>,
    pub test: Option<EvalResult>,
    pub class_names: Vec<String>,
    pub seconds: f64,
}

pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";
pub const METRICS: &str = "metrics.jsonl";
pub const CURVES: &str = "curves.png";

/// Input normalisation used for training: x/127.5 - 1 (mean = std = 0.5), as timm's and
/// Keras' MobileNets expect.
pub fn default_normalize(channels: usize) -> Normalize {
    Normalize::symmetric(channels)
}

fn progress_bar(enabled: bool, len: usize, epoch: usize, epochs: usize) -> indicatif::ProgressBar {
    if !enabled {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    let style = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed} < {eta})",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}

/// Training steps between read-backs of the running loss and accuracy.
const LOG_EVERY: usize = 50;

/// Adds the metrics accumulated on the GPU since the last read to `tally`; stops training
/// when their loss is not finite. `at` is (epoch, step, learning rate) for the message.
fn tally_logged(
    plan: &TrainPlan,
    tally: &mut RunningMetrics,
    (epoch, step, lr): (usize, usize, f64),
    last_path: &Path,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let logged = plan.take_metrics()?;
    let loss = logged.mean_loss();
    *tally += logged;
    if !loss.is_finite() {
        bar.abandon();
        bail!(
            "the loss became {loss} at epoch {epoch} by step {step} (learning rate {lr:.4}); training stopped and \
             the last good checkpoint {} was kept; lower --lr or check the data",
            last_path.display()
        );
    }
    Ok(())
}

/// Where a run keeps its files, locked for this run while it lives.
struct RunFiles {
    last: PathBuf,
    metrics: PathBuf,
    _lock: RunLock,
}

/// Progress that a checkpoint carries across a resume.
struct Progress {
    epoch: usize,
    step: usize,
    best_val_acc: Option<f64>,
}

/// What one epoch of training produced.
struct EpochTally {
    metrics: RunningMetrics,
    lr: f64,
    bad_files: usize,
    seconds: f64,
}

/// Trains (or resumes) a run as described by `options`, writing into `options.out_dir`.
///
/// Every epoch trains on the training split, evaluates the validation (and test) split,
/// appends a line to `metrics.jsonl`, redraws `curves.png` and saves `last.safetensors`
/// (and `best.safetensors` when validation accuracy improves), atomically, so a killed
/// run resumes with `resume: true`. With `finetune` set, the architecture and backbone
/// come from pretrained weights and the classifier is new (see `examples/finetune.rs`).
///
/// ```no_run
/// use mobilenet_wgpu::data::Augment;
/// use mobilenet_wgpu::train::{
///     train, DataOptions, DatasetKind, OptimizerConfig, OptimizerKind, Schedule, ScheduleKind,
///     TrainOptions,
/// };
/// use mobilenet_wgpu::{Gpu, MobileNetV1Config, Preset};
/// use std::path::PathBuf;
///
/// // MobileNet 0.25 on Fashion-MNIST (the Debian package's files), 28x28 grey images.
/// let options = TrainOptions {
///     dataset: DatasetKind::FashionMnist,
///     data_dir: None, // default: /usr/share/datasets/fashion-mnist
///     val_dir: None,
///     data: DataOptions::default(),
///     model: MobileNetV1Config {
///         alpha: 0.25,
///         resolution: 28,
///         in_channels: 1,
///         stem_stride: 1,
///         ..MobileNetV1Config::preset(Preset::Paper)
///     },
///     epochs: 4,
///     batch_size: 32,
///     optimizer: OptimizerConfig::new(OptimizerKind::Rmsprop),
///     schedule: Schedule {
///         kind: ScheduleKind::Cosine { min_lr: 0.0 },
///         base_lr: 0.045,
///         warmup_epochs: 0.0,
///     },
///     bn_momentum: 0.1,
///     seed: 0,
///     limit: None,
///     test_limit: None,
///     val_fraction: 0.1,
///     augment: Augment::default(),
///     out_dir: PathBuf::from("runs/fashion-mnist"),
///     resume: false,
///     progress: true,
///     finetune: None,
/// };
/// let summary = train(&Gpu::new()?, &options)?;
/// for epoch in &summary.epochs {
///     println!("epoch {}: train loss {:.4}, val acc {:?}", epoch.epoch, epoch.train_loss, epoch.val_acc);
/// }
/// if let Some(test) = &summary.test {
///     println!("test top-1 {:.2}%", 100.0 * test.top1);
/// }
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn train(gpu: &Gpu, options: &TrainOptions) -> anyhow::Result<TrainSummary> {
    let started = Instant::now();
    check_options(options)?;
    let files = RunFiles::create(&options.out_dir)?;
    let pretrained =
        match &options.finetune {
            Some(f) => Some(load_pretrained(&f.weights).with_context(|| {
                format!("loading the pretrained weights {}", f.weights.display())
            })?),
            None => None,
        };
    let resume_from = files.checkpoint_to_resume(options.resume)?;
    let base_model = base_model(options, pretrained.as_ref());
    let data = TrainData::load(&Splits {
        kind: options.dataset,
        data: options.data_dir.as_deref(),
        val_data: options.val_dir.as_ref(),
        val_fraction: options.val_fraction,
        limit: options.limit,
        test_limit: options.test_limit,
        seed: options.seed,
    })?;
    let config = &classifier_for(options, base_model, &data.class_names)?;
    anyhow::ensure!(
        data.train.len() >= options.batch_size,
        "only {} training images for a batch of {}; lower --batch-size",
        data.train.len(),
        options.batch_size
    );
    let network = Network::build(gpu, options, config, pretrained.as_ref())?;
    let normalize = match &pretrained {
        // Inputs as the pretrained network saw them.
        Some(p) => p.preprocess.normalize.clone(),
        None => default_normalize(config.in_channels),
    };
    let fingerprint = options.fingerprint();
    let mut progress = files.restore(resume_from, &fingerprint, &network, options)?;
    let input = (config.resolution, config.in_channels);
    let train_loader = train_loader_options(
        options.batch_size,
        input,
        &options.augment,
        &normalize,
        &options.data,
        options.seed,
    );
    let eval_loader = eval_loader_options(options.batch_size, input, &normalize, &options.data);
    let mut history = read_metrics(&files.metrics).unwrap_or_default();
    let mut test_result = None;

    while progress.epoch < options.epochs {
        let epoch_start = Instant::now();
        let tally = train_epoch(
            &network,
            &data.train,
            &train_loader,
            &mut progress,
            options,
            &files,
        )?;
        let weights = network.weights()?;
        check_finite(&weights, progress.epoch + 1, tally.lr, &files.last)?;
        network.prepare_eval(&weights)?;
        let val = evaluate_split(&network.eval, data.val.as_ref(), &eval_loader)?;
        let test = evaluate_split(&network.eval, data.test.as_ref(), &eval_loader)?;
        progress.epoch += 1;
        let metrics = epoch_metrics(
            progress.epoch,
            &tally,
            val.as_ref(),
            test.as_ref(),
            epoch_start,
        );
        println!("{}", format_epoch_line(&metrics, options.epochs));
        // Metrics first, checkpoint second: a kill in between leaves a metrics line past
        // the checkpoint, which --resume truncates before redoing the epoch.
        append_metrics(&files.metrics, &metrics)?;
        history.push(metrics);
        let improved = match (val.as_ref(), progress.best_val_acc) {
            (Some(v), Some(best)) => v.top1 > best,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if improved {
            progress.best_val_acc = val.as_ref().map(|v| v.top1);
        }
        let checkpoint = Checkpoint {
            config: config.clone(),
            params: weights,
            optimizer_state: network.train.read_opt_state()?,
            epoch: progress.epoch,
            step: progress.step,
            best_val_acc: progress.best_val_acc,
            normalize: normalize.clone(),
            crop_pct: options.data.crop_pct,
            class_names: data.class_names.clone(),
            train_options: Some(fingerprint.clone()),
        };
        files.save(&checkpoint, improved || data.val.is_none())?;
        let title = format!(
            "MobileNet V1 {} on {} ({} epochs)",
            config.alpha, options.dataset, options.epochs
        );
        plot_curves(&options.out_dir.join(CURVES), &history, &title)?;
        test_result = test;
    }
    if test_result.is_none() {
        test_result = evaluate_split(&network.eval, data.test.as_ref(), &eval_loader)?;
    }
    Ok(TrainSummary {
        epochs: history,
        best_val_acc: progress.best_val_acc,
        test: test_result,
        class_names: data.class_names,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn check_options(options: &TrainOptions) -> anyhow::Result<()> {
    options.model.validate()?;
    anyhow::ensure!(options.batch_size > 0, "--batch-size must be at least 1");
    anyhow::ensure!(
        (0.0..1.0).contains(&options.val_fraction),
        "--val-fraction must be in [0, 1)"
    );
    Ok(())
}

/// Fine-tuning keeps the pretrained architecture (at the requested resolution).
fn base_model(options: &TrainOptions, pretrained: Option<&Pretrained>) -> MobileNetV1Config {
    match (pretrained, &options.finetune) {
        (Some(p), Some(f)) => MobileNetV1Config {
            resolution: f.resolution.unwrap_or(p.config.resolution),
            ..p.config.clone()
        },
        _ => options.model.clone(),
    }
}

/// The network with a classifier as wide as the data set has classes.
fn classifier_for(
    options: &TrainOptions,
    base_model: MobileNetV1Config,
    class_names: &[String],
) -> anyhow::Result<MobileNetV1Config> {
    if let Some(expected) = options.finetune.as_ref().and_then(|f| f.classes) {
        anyhow::ensure!(
            expected == class_names.len(),
            "--classes {expected} but the data set has {} classes ({}); drop --classes or fix the data",
            class_names.len(),
            class_names.join(", ")
        );
    }
    let config = MobileNetV1Config {
        classes: class_names.len(),
        ..base_model
    };
    config.validate()?;
    Ok(config)
}

impl RunFiles {
    fn create(out_dir: &Path) -> anyhow::Result<RunFiles> {
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("cannot create the run directory {}", out_dir.display()))?;
        Ok(RunFiles {
            _lock: RunLock::acquire(out_dir)?,
            last: out_dir.join(LAST),
            metrics: out_dir.join(METRICS),
        })
    }

    fn checkpoint_to_resume(&self, resume: bool) -> anyhow::Result<Option<Checkpoint>> {
        if !self.last.exists() {
            return Ok(None);
        }
        if !resume {
            bail!(
                "{} already holds a checkpoint; pass --resume to continue that run, or choose another --out",
                self.last.display()
            );
        }
        Ok(Some(Checkpoint::load(&self.last)?))
    }

    /// Loads a resumed run's state into the network, or clears metrics left by a run killed
    /// before its first checkpoint.
    fn restore(
        &self,
        checkpoint: Option<Checkpoint>,
        fingerprint: &str,
        network: &Network,
        options: &TrainOptions,
    ) -> anyhow::Result<Progress> {
        let Some(checkpoint) = checkpoint else {
            if self.metrics.exists() {
                truncate_metrics(&self.metrics, 0)?;
            }
            return Ok(Progress {
                epoch: 0,
                step: 0,
                best_val_acc: None,
            });
        };
        if checkpoint.train_options.as_deref() != Some(fingerprint) {
            bail!(
                "{} was written by a run with other options; resume with the same options (only --epochs and --workers may change)",
                self.last.display()
            );
        }
        network.restore(&checkpoint.params, &checkpoint.optimizer_state)?;
        truncate_metrics(&self.metrics, checkpoint.epoch)?;
        println!(
            "resuming {} at epoch {} (step {})",
            options.out_dir.display(),
            checkpoint.epoch,
            checkpoint.step
        );
        Ok(Progress {
            epoch: checkpoint.epoch,
            step: checkpoint.step,
            best_val_acc: checkpoint.best_val_acc,
        })
    }

    fn save(&self, checkpoint: &Checkpoint, as_best: bool) -> anyhow::Result<()> {
        checkpoint.save(&self.last)?;
        if as_best {
            let best = self.last.with_file_name(BEST);
            checkpoint.save(&best)?;
        }
        Ok(())
    }
}

/// One epoch of steps. Steps are queued without waiting; loss and accuracy accumulate on the
/// GPU and are read back every LOG_EVERY steps (progress, divergence check) and at the end.
fn train_epoch(
    network: &Network,
    train: &DataSource,
    loader_options: &LoaderOptions,
    progress: &mut Progress,
    options: &TrainOptions,
    files: &RunFiles,
) -> anyhow::Result<EpochTally> {
    let epoch_start = Instant::now();
    let loader = BatchLoader::new(train.clone(), loader_options.clone(), progress.epoch)?;
    let steps_per_epoch = loader.total();
    let bar = progress_bar(
        options.progress,
        steps_per_epoch,
        progress.epoch + 1,
        options.epochs,
    );
    let schedule = |step| {
        options
            .schedule
            .lr_at(step, steps_per_epoch, options.epochs)
    };
    let mut tally = EpochTally {
        metrics: RunningMetrics::default(),
        lr: schedule(progress.step),
        bad_files: 0,
        seconds: 0.0,
    };
    let mut since_log = 0;
    for batch in loader {
        let batch = batch?;
        report_bad_files(&batch, &bar);
        tally.bad_files += batch.bad.len();
        tally.lr = schedule(progress.step);
        network.step(&batch.images, &batch.labels, tally.lr as f32)?;
        progress.step += 1;
        since_log += 1;
        bar.inc(1);
        if since_log == LOG_EVERY {
            since_log = 0;
            let at = (progress.epoch + 1, progress.step, tally.lr);
            tally_logged(&network.train, &mut tally.metrics, at, &files.last, &bar)?;
            let rate = tally.metrics.samples as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.4} acc {:.2}% {rate:.0} img/s",
                tally.metrics.mean_loss(),
                100.0 * tally.metrics.accuracy()
            ));
        }
    }
    let at = (progress.epoch + 1, progress.step, tally.lr);
    tally_logged(&network.train, &mut tally.metrics, at, &files.last, &bar)?;
    bar.finish_and_clear();
    tally.seconds = epoch_start.elapsed().as_secs_f64();
    Ok(tally)
}

/// Bad files are named as they are met, above the progress bar.
fn report_bad_files(batch: &Batch, bar: &indicatif::ProgressBar) {
    for bad in &batch.bad {
        bar.suspend(|| eprintln!("warning: skipped {bad}"));
    }
}

/// Batch norm can keep the loss finite while the weights have already overflowed.
fn check_finite(weights: &ParamStore, epoch: usize, lr: f64, last: &Path) -> anyhow::Result<()> {
    if let Some((name, _, _)) = weights
        .iter()
        .find(|(_, _, v)| v.iter().any(|x| !x.is_finite()))
    {
        bail!(
            "the weights became non-finite in epoch {epoch} (first: {name}; learning rate {lr:.4}); \
             training stopped and the last good checkpoint {} was kept; lower --lr or check the data",
            last.display()
        );
    }
    Ok(())
}

fn evaluate_split(
    plan: &Plan,
    split: Option<&DataSource>,
    options: &LoaderOptions,
) -> anyhow::Result<Option<EvalResult>> {
    split
        .map(|source| evaluate(plan, source.clone(), options.clone()))
        .transpose()
}

fn epoch_metrics(
    epoch: usize,
    tally: &EpochTally,
    val: Option<&EvalResult>,
    test: Option<&EvalResult>,
    epoch_start: Instant,
) -> EpochMetrics {
    EpochMetrics {
        epoch,
        lr: tally.lr,
        train_loss: tally.metrics.mean_loss(),
        train_acc: tally.metrics.accuracy(),
        val_loss: val.map(|v| v.loss),
        val_acc: val.map(|v| v.top1),
        test_loss: test.map(|t| t.loss),
        test_acc: test.map(|t| t.top1),
        seconds: epoch_start.elapsed().as_secs_f64(),
        images_per_sec: tally.metrics.samples as f64 / tally.seconds.max(1e-9),
        bad_files: tally.bad_files,
    }
}
