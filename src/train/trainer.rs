//! The training loop behind `mobilenet train`: data, GPU steps, per-epoch evaluation,
//! metrics, curves and checkpoints that survive a kill.

use super::checkpoint::Checkpoint;
use super::curves::plot_curves;
use super::evaluate::{evaluate, EvalResult};
use super::metrics::{
    append_metrics, format_epoch_line, read_metrics, truncate_metrics, EpochMetrics,
};
use super::{OptimizerConfig, Schedule};
use crate::data::{
    batch_count, load_cifar10, load_fashion_mnist, load_image_folder, split_validation, Augment,
    BatchLoader, ImageSet, LoaderOptions, Normalize, FASHION_MNIST_DIR,
};
use crate::gpu::Gpu;
use crate::graph::{ParamBuffers, ParamStore, Plan, RunningMetrics, TrainConfig, TrainPlan};
use crate::model::{Form, MobileNetV1Config, BLOCKS, CLASSIFIER, POOL_STAGE, STAGES};
use crate::ops::TrainSettings;
use crate::weights::{fold_batchnorm, load_pretrained};
use anyhow::{bail, Context};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    FashionMnist,
    Cifar10,
    /// One subfolder of images per class.
    Folder,
}

impl FromStr for DatasetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fashion-mnist" | "fashion_mnist" => Ok(DatasetKind::FashionMnist),
            "cifar10" | "cifar-10" => Ok(DatasetKind::Cifar10),
            "folder" => Ok(DatasetKind::Folder),
            other => Err(format!(
                "unknown dataset {other:?}; expected fashion-mnist, cifar10 or folder"
            )),
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Folder => "folder",
        })
    }
}

/// Everything `train` needs; the CLI fills it from its flags.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    pub dataset: DatasetKind,
    pub data_dir: Option<PathBuf>,
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
    fn first_trained_stage(&self) -> usize {
        match self.trainable_blocks {
            None => 0,
            Some(0) => POOL_STAGE + 1,
            Some(k) => POOL_STAGE - k.min(BLOCKS.len()),
        }
    }
}

/// The frozen front of a fine-tuned network: folded, run before each step, never updated.
struct FrozenPart {
    plan: Plan,
    /// Its unfolded parameters, as checkpoints store them.
    params: ParamStore,
}

impl TrainOptions {
    /// The options that must not change when a run is resumed.
    fn fingerprint(&self) -> String {
        let mut same = self.clone();
        same.epochs = 0;
        same.resume = false;
        same.progress = false;
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

/// Train and test sets of a data set kind (a folder has no test split).
pub fn load_dataset(
    kind: DatasetKind,
    dir: Option<&Path>,
    resolution: usize,
    channels: usize,
) -> anyhow::Result<(ImageSet, Option<ImageSet>)> {
    Ok(match kind {
        DatasetKind::FashionMnist => {
            let dir = dir.unwrap_or(Path::new(FASHION_MNIST_DIR));
            let (train, test) = load_fashion_mnist(dir)?;
            (train, Some(test))
        }
        DatasetKind::Cifar10 => {
            let dir = dir
                .context("--data DIR is required for cifar10 (the folder of the binary version)")?;
            let (train, test) = load_cifar10(dir)?;
            (train, Some(test))
        }
        DatasetKind::Folder => {
            let dir = dir
                .context("--data DIR is required for folder (one subfolder of images per class)")?;
            (load_image_folder(dir, resolution, channels)?, None)
        }
    })
}

/// Input normalisation used for training: x/127.5 - 1 (mean = std = 0.5), as timm's and
/// Keras' MobileNets expect.
pub fn default_normalize(channels: usize) -> Normalize {
    Normalize::symmetric(channels)
}

fn eval_options(
    batch_size: usize,
    config: &MobileNetV1Config,
    normalize: &Normalize,
) -> LoaderOptions {
    LoaderOptions {
        batch_size,
        resolution: config.resolution,
        channels: config.in_channels,
        augment: Augment::default(),
        normalize: normalize.clone(),
        shuffle: false,
        seed: 0,
        drop_last: false,
    }
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

/// Trains (or resumes) a run as described by `options`, writing into `options.out_dir`.
pub fn train(gpu: &Gpu, options: &TrainOptions) -> anyhow::Result<TrainSummary> {
    let started = Instant::now();
    options.model.validate()?;
    anyhow::ensure!(options.batch_size > 0, "--batch-size must be at least 1");
    anyhow::ensure!(
        (0.0..1.0).contains(&options.val_fraction),
        "--val-fraction must be in [0, 1)"
    );
    std::fs::create_dir_all(&options.out_dir).with_context(|| {
        format!(
            "cannot create the run directory {}",
            options.out_dir.display()
        )
    })?;
    let last_path = options.out_dir.join(LAST);
    let metrics_path = options.out_dir.join(METRICS);
    let pretrained =
        match &options.finetune {
            Some(f) => Some(load_pretrained(&f.weights).with_context(|| {
                format!("loading the pretrained weights {}", f.weights.display())
            })?),
            None => None,
        };
    let resume_from = if last_path.exists() {
        if !options.resume {
            bail!(
                "{} already holds a checkpoint; pass --resume to continue that run, or choose another --out",
                last_path.display()
            );
        }
        Some(Checkpoint::load(&last_path)?)
    } else {
        None
    };

    // Fine-tuning keeps the pretrained architecture; only the classifier changes.
    let base_model = match (&pretrained, &options.finetune) {
        (Some(p), Some(f)) => MobileNetV1Config {
            resolution: f.resolution.unwrap_or(p.config.resolution),
            ..p.config.clone()
        },
        _ => options.model.clone(),
    };
    let (train_set, test_set) = load_dataset(
        options.dataset,
        options.data_dir.as_deref(),
        base_model.resolution,
        base_model.in_channels,
    )?;
    let train_set = match options.limit {
        Some(n) => train_set.take(n),
        None => train_set,
    };
    let test_set = test_set.map(|t| match options.test_limit {
        Some(n) => t.take(n),
        None => t,
    });
    let class_names = train_set.class_names.clone();
    if let Some(expected) = options.finetune.as_ref().and_then(|f| f.classes) {
        anyhow::ensure!(
            expected == class_names.len(),
            "--classes {expected} but the data set has {} classes ({}); drop --classes or fix the data",
            class_names.len(),
            class_names.join(", ")
        );
    }
    // The classifier's width always comes from the data.
    let config = &MobileNetV1Config {
        classes: class_names.len(),
        ..base_model
    };
    config.validate()?;
    let (train_set, val_set) = if options.val_fraction > 0.0 {
        let (train, val) = split_validation(&train_set, options.val_fraction, options.seed);
        (train, (!val.is_empty()).then_some(val))
    } else {
        (train_set, None)
    };
    anyhow::ensure!(
        train_set.len() >= options.batch_size,
        "only {} training images for a batch of {}; lower --batch-size",
        train_set.len(),
        options.batch_size
    );
    let train_set = Arc::new(train_set);
    let val_set = val_set.map(Arc::new);
    let test_set = test_set.map(Arc::new);

    let model = config.build(options.batch_size)?;
    let mut initial = ParamStore::initialize(&model.graph, options.seed);
    if let Some(p) = &pretrained {
        // Everything but the new classifier comes from the pretrained weights.
        for (name, shape, values) in p.params.iter() {
            if !name.starts_with(CLASSIFIER) {
                initial.insert(name, shape.to_vec(), values.to_vec());
            }
        }
    }
    let first_trained = options
        .finetune
        .as_ref()
        .map_or(0, Finetune::first_trained_stage);
    let trained_model =
        config.build_stages(options.batch_size, first_trained..STAGES, Form::Train)?;
    let frozen = if first_trained > 0 {
        let part = config.build_stages(options.batch_size, 0..first_trained, Form::Folded)?;
        let unfolded = config.build_stages(1, 0..first_trained, Form::Train)?;
        let params = initial.for_graph(&unfolded.graph);
        let folded = fold_batchnorm(&params, config.bn_eps)?;
        let plan = part.graph.compile(gpu)?;
        plan.load_params(&folded)?;
        Some(FrozenPart { plan, params })
    } else {
        None
    };
    let params = Arc::new(ParamBuffers::new(gpu, &trained_model.graph)?);
    params.load(&initial.for_graph(&trained_model.graph))?;
    let weight_decay = trained_model
        .graph
        .params()
        .iter()
        .map(|p| (p.name.clone(), options.optimizer.weight_decay_for(p)))
        .filter(|(_, d)| *d != 0.0)
        .collect();
    let train_config = TrainConfig {
        settings: TrainSettings {
            bn_momentum: options.bn_momentum,
        },
        update: Some(options.optimizer.rule()),
        weight_decay,
        input_grad: false,
    };
    let plan = TrainPlan::compile(&trained_model.graph, gpu, params.clone(), &train_config)?;
    // Evaluation runs the whole network; with a frozen part it has its own parameter
    // buffers, refreshed from both parts before each evaluation.
    let eval_plan = match &frozen {
        Some(_) => model.graph.compile(gpu)?,
        None => Plan::compile_with(&model.graph, gpu, params.clone())?,
    };
    // The whole network's parameters: the frozen part's and the trained part's.
    let all_params = |trained: ParamStore| -> ParamStore {
        let mut all = frozen
            .as_ref()
            .map(|f| f.params.clone())
            .unwrap_or_default();
        all.extend(&trained);
        all
    };
    let normalize = match &pretrained {
        // Inputs as the pretrained network saw them.
        Some(p) => p.preprocess.normalize.clone(),
        None => default_normalize(config.in_channels),
    };

    let fingerprint = options.fingerprint();
    let (mut epoch, mut step, mut best_val_acc) = (0, 0, None);
    if let Some(checkpoint) = resume_from {
        if checkpoint.train_options.as_deref() != Some(fingerprint.as_str()) {
            bail!(
                "{} was written by a run with other options; resume with the same options (only --epochs may change)",
                last_path.display()
            );
        }
        params.load(&checkpoint.params.for_graph(&trained_model.graph))?;
        plan.load_opt_state(&checkpoint.optimizer_state)?;
        (epoch, step, best_val_acc) = (checkpoint.epoch, checkpoint.step, checkpoint.best_val_acc);
        truncate_metrics(&metrics_path, epoch)?;
        println!(
            "resuming {} at epoch {epoch} (step {step})",
            options.out_dir.display()
        );
    } else if metrics_path.exists() {
        // Metrics without a checkpoint belong to a run killed before its first save.
        truncate_metrics(&metrics_path, 0)?;
    }

    let loader_options = LoaderOptions {
        batch_size: options.batch_size,
        resolution: config.resolution,
        channels: config.in_channels,
        augment: options.augment.clone(),
        normalize: normalize.clone(),
        shuffle: true,
        seed: options.seed,
        drop_last: true,
    };
    let steps_per_epoch = batch_count(train_set.len(), &loader_options);
    let eval_loader = eval_options(options.batch_size, config, &normalize);
    let mut history = read_metrics(&metrics_path).unwrap_or_default();
    let mut test_result = None;

    while epoch < options.epochs {
        let epoch_start = Instant::now();
        let bar = progress_bar(options.progress, steps_per_epoch, epoch + 1, options.epochs);
        let loader = BatchLoader::try_new(train_set.clone(), loader_options.clone(), epoch)?;
        let mut tally = RunningMetrics::default();
        let mut lr = options
            .schedule
            .lr_at(step, steps_per_epoch, options.epochs);
        // Steps are queued without waiting; loss and accuracy accumulate on the GPU and are
        // read back every LOG_EVERY steps (progress, divergence check) and at the epoch's end.
        let mut since_log = 0;
        for batch in loader {
            lr = options
                .schedule
                .lr_at(step, steps_per_epoch, options.epochs);
            // A frozen front runs in the same submit, its features staying on the GPU.
            match &frozen {
                Some(front) => {
                    plan.step_queued_after(&front.plan, &batch.images, &batch.labels, lr as f32)?
                }
                None => plan.step_queued(&batch.images, &batch.labels, lr as f32)?,
            }
            step += 1;
            since_log += 1;
            bar.inc(1);
            if since_log == LOG_EVERY {
                since_log = 0;
                tally_logged(&plan, &mut tally, (epoch + 1, step, lr), &last_path, &bar)?;
                let rate = tally.samples as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "loss {:.4} acc {:.2}% {rate:.0} img/s",
                    tally.mean_loss(),
                    100.0 * tally.accuracy()
                ));
            }
        }
        tally_logged(&plan, &mut tally, (epoch + 1, step, lr), &last_path, &bar)?;
        bar.finish_and_clear();
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        let weights = all_params(params.read()?);
        if frozen.is_some() {
            eval_plan.load_params(&weights)?;
        }
        let val = match &val_set {
            Some(set) => Some(evaluate(&eval_plan, set.clone(), eval_loader.clone())?),
            None => None,
        };
        let test = match &test_set {
            Some(set) => Some(evaluate(&eval_plan, set.clone(), eval_loader.clone())?),
            None => None,
        };
        epoch += 1;
        let metrics = EpochMetrics {
            epoch,
            lr,
            train_loss: tally.mean_loss(),
            train_acc: tally.accuracy(),
            val_loss: val.as_ref().map(|v| v.loss),
            val_acc: val.as_ref().map(|v| v.top1),
            test_loss: test.as_ref().map(|t| t.loss),
            test_acc: test.as_ref().map(|t| t.top1),
            seconds: epoch_start.elapsed().as_secs_f64(),
            images_per_sec: tally.samples as f64 / train_seconds.max(1e-9),
        };
        if let Some((name, _, _)) = weights
            .iter()
            .find(|(_, _, v)| v.iter().any(|x| !x.is_finite()))
        {
            // Batch norm can keep the loss finite while the weights have already overflowed.
            bail!(
                "the weights became non-finite in epoch {epoch} (first: {name}; learning rate {lr:.4}); \
                 training stopped and the last good checkpoint {} was kept; lower --lr or check the data",
                last_path.display()
            );
        }
        println!("{}", format_epoch_line(&metrics, options.epochs));
        // Metrics first, checkpoint second: a kill in between leaves a metrics line past
        // the checkpoint, which --resume truncates before redoing the epoch.
        append_metrics(&metrics_path, &metrics)?;
        history.push(metrics);
        let improved = match (val.as_ref(), best_val_acc) {
            (Some(v), Some(best)) => v.top1 > best,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if improved {
            best_val_acc = val.as_ref().map(|v| v.top1);
        }
        let checkpoint = Checkpoint {
            config: config.clone(),
            params: weights,
            optimizer_state: plan.read_opt_state()?,
            epoch,
            step,
            best_val_acc,
            normalize: normalize.clone(),
            class_names: class_names.clone(),
            train_options: Some(fingerprint.clone()),
        };
        checkpoint.save(&last_path)?;
        if improved || val_set.is_none() {
            checkpoint.save(&options.out_dir.join(BEST))?;
        }
        let title = format!(
            "MobileNet V1 {} on {} ({} epochs)",
            config.alpha, options.dataset, options.epochs
        );
        plot_curves(&options.out_dir.join(CURVES), &history, &title)?;
        test_result = test;
    }
    if test_result.is_none() {
        if let Some(set) = &test_set {
            test_result = Some(evaluate(&eval_plan, set.clone(), eval_loader.clone())?);
        }
    }
    Ok(TrainSummary {
        epochs: history,
        best_val_acc,
        test: test_result,
        class_names,
        seconds: started.elapsed().as_secs_f64(),
    })
}
