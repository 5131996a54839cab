//! The training loop behind `mobilenet train`: data, GPU steps, per-epoch evaluation,
//! metrics, curves and checkpoints that survive a kill.
//!
//! The loop is here; its steps are `Run` methods (see `run.rs` for where each lives).

use std::time::Instant;

use super::epoch_metrics::EpochMetrics;
use super::evaluate::EvalResult;
use super::metrics::read_metrics;
use super::run::Run;
use crate::gpu::Gpu;
use crate::graph::{Replicas, Solo};

/// These were defined here once; kept reachable at their old paths.
pub use super::dataset::default_normalize;
pub use super::options::{Finetune, TrainOptions};
pub use super::run_files::{BEST, CONFUSION, CURVES, LAST, METRICS, STEPS};

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    pub epochs: Vec<EpochMetrics>,
    pub best_val_acc: Option<f64>,
    pub test: Option<EvalResult>,
    pub class_names: Vec<String>,
    pub seconds: f64,
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
///     progress_bar: true,
///     log_every: 50, // TensorBoard points (RUN_DIR/events.out.tfevents.*)
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
        run.draw_confusion(progress.epoch, test.as_ref(), val.as_ref())?;
        run.report_timing(&tally.timing, tally.timed_steps);
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
