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
use super::replicas::{
    build_with_rank0_kernels, check_replicas_agree, common_steps, from_rank0, pooled_eval,
    pooled_metrics, share_state, ParallelOptions,
};
use super::run_lock::RunLock;
use super::{OptimizerConfig, Schedule};
use crate::data::{Augment, Batch, BatchLoader, DataSource, LoaderOptions, Normalize};
use crate::gpu::Gpu;
use crate::graph::{ParamStore, Replicas, RunningMetrics, Solo, StepTiming};
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
    /// Data-parallel settings (used when several ranks train together).
    #[serde(default)]
    pub parallel: ParallelOptions,
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

/// Where a run keeps its files. Only the writer (rank 0) holds the lock and writes.
struct RunFiles {
    last: PathBuf,
    metrics: PathBuf,
    /// Held while the run lives; None on ranks other than 0.
    lock: Option<RunLock>,
}

/// Progress that a checkpoint carries across a resume.
struct Progress {
    epoch: usize,
    step: usize,
    best_val_acc: Option<f64>,
}

/// What one epoch of training produced, over all replicas.
struct EpochTally {
    metrics: RunningMetrics,
    lr: f64,
    bad_files: usize,
    seconds: f64,
    /// This replica's data-parallel step times, summed, and the steps they cover.
    timing: StepTiming,
    timed_steps: usize,
}

/// One run's fixed parts, shared by the pieces of the epoch loop.
struct Run<'a> {
    options: &'a TrainOptions,
    replicas: &'a dyn Replicas,
    files: RunFiles,
    network: Network,
    data: TrainData,
    config: MobileNetV1Config,
    normalize: Normalize,
    fingerprint: String,
    train_loader: LoaderOptions,
    eval_loader: LoaderOptions,
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
///     parallel: Default::default(),
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
    train_replicated(gpu, options, &Solo)
}

/// `train` as one replica of a data-parallel run: every rank calls it with the same
/// options and its own adapter. `--batch-size` is per rank; each epoch's permutation is
/// dealt out to the ranks, gradients are averaged every step, evaluation is sharded, and
/// rank 0 alone writes the run directory. The loop is `train`'s, whatever the rank count.
pub fn train_replicated(
    gpu: &Gpu,
    options: &TrainOptions,
    replicas: &dyn Replicas,
) -> anyhow::Result<TrainSummary> {
    let started = Instant::now();
    let (run, resume_from) = Run::prepare(gpu, options, replicas)?;
    let mut progress = run.restore(resume_from)?;
    let mut history = match run.files.writer() {
        true => read_metrics(&run.files.metrics).unwrap_or_default(),
        false => Vec::new(),
    };
    run.announce();
    let mut test_result = None;
    while progress.epoch < options.epochs {
        let epoch_start = Instant::now();
        let tally = run.train_epoch(&mut progress)?;
        let weights = run.settle_weights(progress.epoch + 1, tally.lr)?;
        let val = run.evaluate(run.data.val.as_ref())?;
        let test = run.evaluate(run.data.test.as_ref())?;
        progress.epoch += 1;
        let metrics = run.epoch_metrics(
            progress.epoch,
            &tally,
            val.as_ref(),
            test.as_ref(),
            epoch_start,
        );
        run.record(metrics, &mut history, &mut progress, weights, val.as_ref())?;
        run.report_timing(&tally);
        test_result = test;
    }
    if test_result.is_none() {
        test_result = run.evaluate(run.data.test.as_ref())?;
    }
    Ok(TrainSummary {
        epochs: history,
        best_val_acc: progress.best_val_acc,
        test: test_result,
        class_names: run.data.class_names,
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl<'a> Run<'a> {
    /// Checks the options, locks the run directory (rank 0), loads the data and builds
    /// the network; returns the checkpoint to resume from, if any (rank 0).
    fn prepare(
        gpu: &Gpu,
        options: &'a TrainOptions,
        replicas: &'a dyn Replicas,
    ) -> anyhow::Result<(Run<'a>, Option<Checkpoint>)> {
        check_options(options)?;
        let files = RunFiles::create(&options.out_dir, replicas.rank() == 0)?;
        let pretrained = match &options.finetune {
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
        let config = classifier_for(options, base_model, &data.class_names)?;
        let global_batch = options.batch_size * replicas.count();
        anyhow::ensure!(
            data.train.len() >= global_batch,
            "only {} training images for a global batch of {global_batch} ({} per rank x {} \
             ranks); lower --batch-size",
            data.train.len(),
            options.batch_size,
            replicas.count()
        );
        let network = build_with_rank0_kernels(gpu, replicas, || {
            Network::build(gpu, options, &config, pretrained.as_ref(), replicas.count())
        })?;
        let normalize = match &pretrained {
            // Inputs as the pretrained network saw them.
            Some(p) => p.preprocess.normalize.clone(),
            None => default_normalize(config.in_channels),
        };
        let input = (config.resolution, config.in_channels);
        let part = (replicas.rank(), replicas.count());
        let train_loader = LoaderOptions {
            part,
            ..train_loader_options(
                options.batch_size,
                input,
                &options.augment,
                &normalize,
                &options.data,
                options.seed,
            )
        };
        let eval_loader = LoaderOptions {
            part,
            ..eval_loader_options(options.batch_size, input, &normalize, &options.data)
        };
        let run = Run {
            fingerprint: options.fingerprint(),
            options,
            replicas,
            files,
            network,
            data,
            config,
            normalize,
            train_loader,
            eval_loader,
        };
        Ok((run, resume_from))
    }

    /// Restores a resumed run (rank 0 reads the checkpoint) and starts every replica from
    /// rank 0's state.
    fn restore(&self, checkpoint: Option<Checkpoint>) -> anyhow::Result<Progress> {
        let mut progress =
            self.files
                .restore(checkpoint, &self.fingerprint, &self.network, self.options)?;
        if self.replicas.count() > 1 {
            let best = progress.best_val_acc.unwrap_or(f64::NAN);
            let shared = from_rank0(
                self.replicas,
                &[progress.epoch as f64, progress.step as f64, best],
            )?;
            progress = Progress {
                epoch: shared[0] as usize,
                step: shared[1] as usize,
                best_val_acc: (!shared[2].is_nan()).then_some(shared[2]),
            };
            share_state(&self.network, self.replicas)?;
        }
        Ok(progress)
    }

    /// Rank 0 says how the run is spread before the first epoch.
    fn announce(&self) {
        let ranks = self.replicas.count();
        if ranks > 1 && self.files.writer() {
            println!(
                "data parallel: {ranks} ranks x batch {} = global batch {}, batch norm {}",
                self.options.batch_size,
                ranks * self.options.batch_size,
                if self.options.parallel.sync_bn {
                    "synchronised over all ranks (--sync-bn)"
                } else {
                    "per rank"
                }
            );
        }
    }

    /// One epoch of steps. Steps are queued without waiting (a replicated step waits for
    /// its gradients); loss and accuracy accumulate on the GPU and are read back every
    /// LOG_EVERY steps (progress, divergence check) and at the end.
    fn train_epoch(&self, progress: &mut Progress) -> anyhow::Result<EpochTally> {
        let (options, epoch) = (self.options, progress.epoch);
        let epoch_start = Instant::now();
        let loader = BatchLoader::new(self.data.train.clone(), self.train_loader.clone(), epoch)?;
        let steps_per_epoch = common_steps(self.replicas, loader.total())?;
        let show = options.progress && self.files.writer();
        let bar = progress_bar(show, steps_per_epoch, epoch + 1, options.epochs);
        // The schedule counts steps from the epoch, so a run resumed with another rank
        // count (other steps per epoch) continues where the learning rate was.
        let first_step = epoch * steps_per_epoch;
        let schedule = |i: usize| {
            options
                .schedule
                .lr_at(first_step + i, steps_per_epoch, options.epochs)
        };
        let mut tally = EpochTally {
            metrics: RunningMetrics::default(),
            lr: schedule(0),
            bad_files: 0,
            seconds: 0.0,
            timing: StepTiming::default(),
            timed_steps: 0,
        };
        for (i, batch) in loader.take(steps_per_epoch).enumerate() {
            let batch = batch?;
            report_bad_files(&batch, &bar);
            tally.bad_files += batch.bad.len();
            tally.lr = schedule(i);
            let lr = tally.lr as f32;
            if let Some(timing) =
                self.network
                    .step(&batch.images, &batch.labels, lr, self.replicas)?
            {
                tally.timing += timing;
                tally.timed_steps += 1;
            }
            progress.step += 1;
            bar.inc(1);
            if (i + 1) % LOG_EVERY == 0 {
                self.tally_logged(&mut tally, (epoch + 1, progress.step), &bar)?;
                let rate =
                    tally.metrics.samples as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "loss {:.4} acc {:.2}% {rate:.0} img/s",
                    tally.metrics.mean_loss(),
                    100.0 * tally.metrics.accuracy()
                ));
            }
        }
        self.tally_logged(&mut tally, (epoch + 1, progress.step), &bar)?;
        tally.bad_files = self.replicas.sum(&[tally.bad_files as f64])?[0] as usize;
        bar.finish_and_clear();
        tally.seconds = epoch_start.elapsed().as_secs_f64();
        Ok(tally)
    }

    /// Adds the metrics accumulated on the GPUs since the last read to `tally`; stops
    /// training when their loss is not finite. `at` is (epoch, step) for the message.
    fn tally_logged(
        &self,
        tally: &mut EpochTally,
        (epoch, step): (usize, usize),
        bar: &indicatif::ProgressBar,
    ) -> anyhow::Result<()> {
        let local = self.network.train.take_metrics()?;
        let (logged, diverged) = pooled_metrics(self.replicas, local)?;
        tally.metrics += logged;
        let loss = logged.mean_loss();
        if loss.is_finite() {
            return Ok(());
        }
        bar.abandon();
        let ranks = match self.replicas.count() {
            1 => String::new(),
            _ => format!(" on rank(s) {diverged:?}"),
        };
        bail!(
            "the loss became {loss}{ranks} at epoch {epoch} by step {step} (learning rate {:.4}); \
             training stopped and the last good checkpoint {} was kept; lower --lr or check the data",
            tally.lr,
            self.files.last.display()
        );
    }

    /// The epoch's weights, made ready for evaluation and checkpointing: running
    /// statistics averaged over the replicas, checked finite and identical on every rank.
    fn settle_weights(&self, epoch: usize, lr: f64) -> anyhow::Result<ParamStore> {
        self.network.average_running_stats(self.replicas)?;
        let weights = self.network.weights()?;
        check_finite(&weights, epoch, lr, &self.files.last)?;
        check_replicas_agree(self.replicas, &weights, epoch)?;
        self.network.prepare_eval(&weights)?;
        Ok(weights)
    }

    /// Evaluates a split, sharded over the replicas.
    fn evaluate(&self, split: Option<&DataSource>) -> anyhow::Result<Option<EvalResult>> {
        let Some(source) = split else {
            return Ok(None);
        };
        let local = evaluate(&self.network.eval, source.clone(), self.eval_loader.clone())?;
        Ok(Some(pooled_eval(self.replicas, local)?))
    }

    fn epoch_metrics(
        &self,
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
            global_batch: self.options.batch_size * self.replicas.count(),
            ranks: self.replicas.count(),
        }
    }

    /// Logs the epoch and saves the checkpoint and curves (rank 0).
    fn record(
        &self,
        metrics: EpochMetrics,
        history: &mut Vec<EpochMetrics>,
        progress: &mut Progress,
        weights: ParamStore,
        val: Option<&EvalResult>,
    ) -> anyhow::Result<()> {
        let improved = match (val, progress.best_val_acc) {
            (Some(v), Some(best)) => v.top1 > best,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if improved {
            progress.best_val_acc = val.map(|v| v.top1);
        }
        if !self.files.writer() {
            return Ok(());
        }
        println!("{}", format_epoch_line(&metrics, self.options.epochs));
        // Metrics first, checkpoint second: a kill in between leaves a metrics line past
        // the checkpoint, which --resume truncates before redoing the epoch.
        append_metrics(&self.files.metrics, &metrics)?;
        history.push(metrics);
        let checkpoint = Checkpoint {
            config: self.config.clone(),
            params: weights,
            optimizer_state: self.network.train.read_opt_state()?,
            epoch: progress.epoch,
            step: progress.step,
            best_val_acc: progress.best_val_acc,
            normalize: self.normalize.clone(),
            crop_pct: self.options.data.crop_pct,
            class_names: self.data.class_names.clone(),
            train_options: Some(self.fingerprint.clone()),
        };
        self.files
            .save(&checkpoint, improved || self.data.val.is_none())?;
        let title = format!(
            "MobileNet V1 {} on {} ({} epochs)",
            self.config.alpha, self.options.dataset, self.options.epochs
        );
        plot_curves(&self.options.out_dir.join(CURVES), history, &title)?;
        Ok(())
    }

    /// Rank 0's share of a data-parallel epoch: compute, gradient sums and how much of
    /// them the backward pass hid.
    fn report_timing(&self, tally: &EpochTally) {
        if tally.timed_steps == 0 || !self.files.writer() {
            return;
        }
        let per_step = |d: std::time::Duration| 1e3 * d.as_secs_f64() / tally.timed_steps as f64;
        let t = &tally.timing;
        println!(
            "  rank 0: compute {:.1} ms/step, gradient sums {:.1} ms/step ({:.0}% hidden behind \
             the backward pass), {:.2} MB of gradients per step",
            per_step(t.compute),
            per_step(t.communication),
            100.0 * t.hidden.as_secs_f64() / t.communication.as_secs_f64().max(1e-12),
            t.gradient_bytes as f64 / tally.timed_steps as f64 / 1e6
        );
    }
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
    /// The run's files; `writer` (rank 0) creates and locks the directory, other ranks
    /// never touch it (on other machines it need not even exist).
    fn create(out_dir: &Path, writer: bool) -> anyhow::Result<RunFiles> {
        let lock = match writer {
            true => {
                std::fs::create_dir_all(out_dir).with_context(|| {
                    format!("cannot create the run directory {}", out_dir.display())
                })?;
                Some(RunLock::acquire(out_dir)?)
            }
            false => None,
        };
        Ok(RunFiles {
            lock,
            last: out_dir.join(LAST),
            metrics: out_dir.join(METRICS),
        })
    }

    fn writer(&self) -> bool {
        self.lock.is_some()
    }

    fn checkpoint_to_resume(&self, resume: bool) -> anyhow::Result<Option<Checkpoint>> {
        if !self.writer() || !self.last.exists() {
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
            if self.writer() && self.metrics.exists() {
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
                "{} was written by a run with other options; resume with the same options (only --epochs, --workers and the number of ranks may change)",
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
