//! `mobilenet train` and `mobilenet finetune`: the same run, from scratch or from weights.

use crate::args::{LoadingArgs, ParallelArgs};
use clap::{Args, ValueEnum};
use mobilenet_wgpu::data::{Augment, RandomResizedCrop, DEFAULT_SHUFFLE_BUFFER};
use mobilenet_wgpu::train::evaluate::format_confusion;
use mobilenet_wgpu::train::launch::say;
use mobilenet_wgpu::train::trainer::{
    Finetune, TrainOptions, BEST, CONFUSION, CURVES, LAST, METRICS, STEPS,
};
use mobilenet_wgpu::train::{train_replicated, Launch, TrainSummary};
use mobilenet_wgpu::train::{
    DataOptions, DatasetKind, OptimizerConfig, OptimizerKind, Schedule, ScheduleKind, ScheduleName,
    DEFAULT_LOG_EVERY,
};
use mobilenet_wgpu::{Gpu, MobileNetV1Config, Preset};
use std::path::{Path, PathBuf};

/// Train a MobileNet V1 on the GPU, headless, with per-epoch evaluation and checkpoints.
#[derive(Args)]
pub struct TrainArgs {
    #[arg(long, default_value = "fashion-mnist")]
    dataset: DatasetKind,
    /// Data directory (fashion-mnist default: /usr/share/datasets/fashion-mnist).
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    #[arg(long, default_value = "paper")]
    preset: Preset,
    #[arg(long, default_value_t = 0.25)]
    alpha: f32,
    /// Input resolution (default: the data set's own, 28 for Fashion-MNIST, 32 for CIFAR-10, 128 for folders).
    #[arg(long)]
    resolution: Option<usize>,
    /// 1 (grayscale) or 3 (RGB); default: the data set's.
    #[arg(long)]
    in_channels: Option<usize>,
    /// Stem stride: 2 as in the paper; 1 is the CIFAR-style stem that keeps small inputs
    /// from shrinking early (4x the compute in the first layers). Default: 1 for
    /// Fashion-MNIST and CIFAR-10, 2 for image folders.
    #[arg(long)]
    stem_stride: Option<usize>,
    /// rmsprop (TensorFlow form, the paper's), rmsprop-torch or sgd.
    #[arg(long, default_value = "rmsprop")]
    optimizer: OptimizerKind,
    /// Base learning rate (the paper: 0.045).
    #[arg(long, default_value_t = 0.045)]
    lr: f64,
    /// Momentum (default 0.9; 0 for rmsprop-torch).
    #[arg(long)]
    momentum: Option<f32>,
    /// RMSProp decay / PyTorch alpha (default 0.9 / 0.99).
    #[arg(long)]
    rms_decay: Option<f32>,
    /// RMSProp epsilon (default 1.0 TensorFlow form / 1e-8 PyTorch form).
    #[arg(long)]
    eps: Option<f32>,
    #[arg(long)]
    nesterov: bool,
    /// L2 weight decay (not applied to depthwise filters, BN or biases unless --decay-depthwise).
    #[arg(long, default_value_t = 4e-5)]
    weight_decay: f32,
    #[arg(long)]
    decay_depthwise: bool,
    /// cosine (to zero over the run), step (x --lr-decay every --decay-epochs, the
    /// paper's) or constant.
    #[arg(long, default_value = "cosine")]
    schedule: ScheduleName,
    #[arg(long, default_value_t = 0.94)]
    lr_decay: f64,
    #[arg(long, default_value_t = 2.0)]
    decay_epochs: f64,
    #[arg(long, default_value_t = 0.0)]
    warmup_epochs: f64,
    /// BN running-statistics momentum, PyTorch convention (weight of the new batch: 0.1;
    /// Keras' 0.99 is 0.01 here).
    #[arg(long, default_value_t = 0.1)]
    bn_momentum: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Keep only the first N training images (smoke runs).
    #[arg(long)]
    limit: Option<usize>,
    /// Keep only the first N test images.
    #[arg(long)]
    test_limit: Option<usize>,
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f32,
    /// Validation data of the same kind as --data (ImageNet's val/ folder); replaces
    /// --val-fraction.
    #[arg(long)]
    val_data: Option<PathBuf>,
    /// Random crop after zero padding by this many pixels (0: off).
    #[arg(long, default_value_t = 0)]
    pad_crop: usize,
    /// Random horizontal flips.
    #[arg(long)]
    flip: bool,
    /// Training view: random (RandomResizedCrop, the ImageNet recipe) or centre (the
    /// evaluation view). Default: random for folder and shards, centre otherwise.
    #[arg(long, value_enum)]
    crop: Option<CropMode>,
    /// RandomResizedCrop's range of the image area kept; the paper advises less
    /// augmentation for small models (e.g. 0.25,1 at alpha 0.25).
    #[arg(long, value_name = "MIN,MAX", value_parser = parse_range, default_value = "0.08,1")]
    crop_scale: (f32, f32),
    /// RandomResizedCrop's range of aspect ratios.
    #[arg(long, value_name = "MIN,MAX", value_parser = parse_range, default_value = "0.75,1.3333333")]
    crop_ratio: (f32, f32),
    /// Colour jitter strength: brightness, contrast and saturation in [1-S, 1+S] (0: off).
    #[arg(long, default_value_t = 0.0)]
    color_jitter: f32,
    /// Evaluation view: shorter side resized to resolution / crop_pct, centre cropped.
    /// Default: 0.875 for folder and shards (timm's), 1 otherwise.
    #[arg(long)]
    crop_pct: Option<f32>,
    #[command(flatten)]
    loading: LoadingArgs,
    /// Shards: samples in the shuffle buffer.
    #[arg(long, default_value_t = DEFAULT_SHUFFLE_BUFFER)]
    shuffle_buffer: usize,
    /// Run directory: metrics.jsonl, last/best.safetensors, curves.png.
    #[arg(long, default_value = "runs/fashion-mnist")]
    out: PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    resume: bool,
    /// No progress bar; the line per epoch stays.
    #[arg(long)]
    no_progress: bool,
    /// Training steps between points of the TensorBoard log (RUN_DIR/events.out.tfevents.*)
    /// and updates of the progress bar's loss.
    #[arg(long, value_name = "STEPS", default_value_t = DEFAULT_LOG_EVERY)]
    log_every: usize,
    #[command(flatten)]
    parallel: ParallelArgs,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CropMode {
    Random,
    Centre,
}

/// `MIN,MAX` as a pair of numbers.
fn parse_range(text: &str) -> Result<(f32, f32), String> {
    let (low, high) = text
        .split_once(',')
        .ok_or_else(|| format!("{text:?}: expected MIN,MAX such as 0.08,1"))?;
    let number = |part: &str| {
        part.trim()
            .parse::<f32>()
            .map_err(|error| format!("{part:?} in {text:?}: {error}"))
    };
    Ok((number(low)?, number(high)?))
}

/// Transfer learning: pretrained weights, a new classifier for the data set's classes,
/// the backbone frozen (default) or partly trained. Same options and outputs as train;
/// the architecture comes from the weights.
#[derive(Args)]
pub struct FinetuneArgs {
    /// Pretrained safetensors: timm's mobilenetv1_100, Keras-named, or one of ours.
    #[arg(long)]
    weights: PathBuf,
    /// Classes of the new classifier (checked against the data set's).
    #[arg(long)]
    classes: Option<usize>,
    /// Train only the new classifier; the backbone runs in inference form (the default).
    #[arg(long, conflicts_with_all = ["unfreeze_last", "unfreeze_all"])]
    freeze_backbone: bool,
    /// Also train the last K of the 13 blocks.
    #[arg(long, value_name = "K", conflicts_with = "unfreeze_all")]
    unfreeze_last: Option<usize>,
    /// Train the whole network.
    #[arg(long)]
    unfreeze_all: bool,
    #[command(flatten)]
    train: TrainArgs,
}

impl TrainArgs {
    pub fn run(self) -> anyhow::Result<()> {
        train_in_job(&self.options(), self.parallel.adapter_index)
    }

    fn options(&self) -> TrainOptions {
        let image_files = self.dataset.is_image_files();
        TrainOptions {
            dataset: self.dataset,
            data_dir: self.data.clone(),
            val_dir: self.val_data.clone(),
            data: DataOptions {
                crop_pct: self
                    .crop_pct
                    .unwrap_or(if image_files { 0.875 } else { 1.0 }),
                shuffle_buffer: self.shuffle_buffer,
                ..self.loading.options()
            },
            model: self.model(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            optimizer: OptimizerConfig {
                momentum: self.momentum,
                decay: self.rms_decay,
                eps: self.eps,
                nesterov: self.nesterov,
                weight_decay: self.weight_decay,
                decay_depthwise: self.decay_depthwise,
                ..OptimizerConfig::new(self.optimizer)
            },
            schedule: self.schedule(),
            bn_momentum: self.bn_momentum,
            seed: self.seed,
            limit: self.limit,
            test_limit: self.test_limit,
            val_fraction: self.val_fraction,
            augment: self.augment(),
            out_dir: self.out.clone(),
            resume: self.resume,
            progress: true,
            progress_bar: !self.no_progress,
            log_every: self.log_every,
            finetune: None,
            parallel: self.parallel.options(),
        }
    }

    /// The preset at the data set's own input shape unless the flags say otherwise.
    fn model(&self) -> MobileNetV1Config {
        let (native_resolution, native_channels, native_stem_stride) = match self.dataset {
            DatasetKind::FashionMnist => (28, 1, 1),
            DatasetKind::Cifar10 => (32, 3, 1),
            DatasetKind::Folder | DatasetKind::Shards => (128, 3, 2),
        };
        let preset = MobileNetV1Config::preset(self.preset);
        MobileNetV1Config {
            alpha: self.alpha,
            resolution: self.resolution.unwrap_or(native_resolution),
            in_channels: self.in_channels.unwrap_or(native_channels),
            stem_stride: self.stem_stride.unwrap_or(native_stem_stride),
            ..preset
        }
    }

    fn schedule(&self) -> Schedule {
        let kind = match self.schedule {
            ScheduleName::Step => ScheduleKind::StepDecay {
                factor: self.lr_decay,
                every_epochs: self.decay_epochs,
            },
            ScheduleName::Cosine => ScheduleKind::Cosine { min_lr: 0.0 },
            ScheduleName::Constant => ScheduleKind::Constant,
        };
        Schedule {
            kind,
            base_lr: self.lr,
            warmup_epochs: self.warmup_epochs,
        }
    }

    fn augment(&self) -> Augment {
        let random_crop = self.crop.unwrap_or(if self.dataset.is_image_files() {
            CropMode::Random
        } else {
            CropMode::Centre
        });
        Augment {
            pad_crop: self.pad_crop,
            hflip: self.flip,
            random_resized_crop: (random_crop == CropMode::Random).then_some(RandomResizedCrop {
                scale: self.crop_scale,
                ratio: self.crop_ratio,
            }),
            color_jitter: self.color_jitter,
        }
    }
}

impl FinetuneArgs {
    pub fn run(self) -> anyhow::Result<()> {
        train_in_job(&self.options()?, self.train.parallel.adapter_index)
    }

    fn options(&self) -> anyhow::Result<TrainOptions> {
        if let Some(k) = self.unfreeze_last {
            anyhow::ensure!(
                k <= 13,
                "--unfreeze-last {k}: MobileNet V1 has 13 blocks; use --unfreeze-all to train everything"
            );
        }
        let trainable_blocks = if self.unfreeze_all {
            None
        } else {
            Some(self.unfreeze_last.unwrap_or(0))
        };
        Ok(TrainOptions {
            finetune: Some(Finetune {
                weights: self.weights.clone(),
                trainable_blocks,
                resolution: self.train.resolution,
                classes: self.classes,
            }),
            ..self.train.options()
        })
    }
}

/// Joins the MPI job if there is one; a failing rank tells the others before it exits.
fn train_in_job(options: &TrainOptions, adapter_index: Option<usize>) -> anyhow::Result<()> {
    let launch = Launch::join()?;
    if let Err(error) = run_training(&launch, options, adapter_index) {
        if launch.replicas().count() > 1 {
            launch.fail(&error);
        }
        return Err(error);
    }
    Ok(())
}

/// `mobilenet train` and `finetune`, alone or as one rank of an MPI job.
fn run_training(
    launch: &Launch,
    options: &TrainOptions,
    adapter_index: Option<usize>,
) -> anyhow::Result<()> {
    // Refused before the adapter opens and the start line claims a run.
    options.check()?;
    let replicas = launch.replicas();
    let gpu = launch.gpu(adapter_index)?;
    if replicas.count() > 1 {
        say(&format!(
            "rank {} of {}: pid {}, adapter {} ({})",
            replicas.rank(),
            replicas.count(),
            std::process::id(),
            gpu.adapter().name,
            gpu.adapter().backend
        ));
    }
    let writer = replicas.rank() == 0;
    if writer {
        print_start(&gpu, options);
    }
    let summary = train_replicated(&gpu, options, replicas)?;
    if !writer {
        return Ok(());
    }
    print_outcome(&summary, &options.out_dir);
    Ok(())
}

/// The test set's figures and confusion matrix, then the files the run left in `out_dir`.
fn print_outcome(summary: &TrainSummary, out_dir: &Path) {
    if let Some(test) = &summary.test {
        println!(
            "test: loss {:.4}  top-1 {:.2}%  top-5 {:.2}%  ({} images)",
            test.loss,
            100.0 * test.top1,
            100.0 * test.top5,
            test.count
        );
        print!("{}", format_confusion(test, &summary.class_names));
    }
    // Only what is there: best.safetensors, for one, needs a validation split.
    let mut written: Vec<String> = [LAST, BEST, METRICS, STEPS, CURVES, CONFUSION]
        .into_iter()
        .filter(|file| out_dir.join(file).is_file())
        .map(String::from)
        .collect();
    // The TensorBoard event files, by name (a resumed run may have several).
    let mut events: Vec<String> = std::fs::read_dir(out_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("events.out.tfevents."))
        .collect();
    events.sort();
    written.extend(events);
    println!(
        "done in {:.1} s; {} in {}",
        summary.seconds,
        written.join(", "),
        out_dir.display()
    );
}

/// What is trained, on which adapter, how.
fn print_start(gpu: &Gpu, options: &TrainOptions) {
    let what = match &options.finetune {
        Some(f) => format!("fine-tuning {}", f.weights.display()),
        None => format!(
            "training MobileNet V1 alpha {} at {}x{}x{}",
            options.model.alpha,
            options.model.resolution,
            options.model.resolution,
            options.model.in_channels
        ),
    };
    println!(
        "{what} on {} ({}), batch {}, {} epochs, {} lr {}",
        gpu.adapter().name,
        gpu.adapter().backend,
        options.batch_size,
        options.epochs,
        options.optimizer.kind,
        options.schedule.base_lr
    );
}
