//! The `mobilenet` command line: parses arguments and calls the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use mobilenet_wgpu::bench::{
    bench_data, bench_gemm, bench_infer, bench_train, tune, BenchOptions, BenchReport, TunePlans,
    TuneReport,
};
use mobilenet_wgpu::data::{
    index_image_folder, Augment, DataSource, LoaderOptions, RandomResizedCrop,
    DEFAULT_MAX_BAD_FRACTION, DEFAULT_SHUFFLE_BUFFER,
};
use mobilenet_wgpu::gpu::{list_adapters, INSTALL_HINT};
use mobilenet_wgpu::predict::{logits_for_tensor, predict_to_jsonl, Classifier};
use mobilenet_wgpu::train::dataset::{default_source_kind, eval_loader_options, load_dataset};
use mobilenet_wgpu::train::evaluate::{evaluate_checkpoint, format_confusion};
use mobilenet_wgpu::train::launch::say;
use mobilenet_wgpu::train::trainer::{Finetune, TrainOptions, BEST, CURVES, LAST, METRICS};
use mobilenet_wgpu::train::{train_replicated, Launch, ParallelOptions, DEFAULT_BUCKET_BYTES};
use mobilenet_wgpu::train::{
    DataOptions, DatasetKind, OptimizerConfig, OptimizerKind, Schedule, ScheduleKind, ScheduleName,
};
use mobilenet_wgpu::weights::{export_timm, load_pretrained, Pretrained};
use mobilenet_wgpu::{Activation, Gpu, MobileNetV1Config, Padding, Preset};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "mobilenet",
    version,
    about = "MobileNet V1 on wgpu compute shaders"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters wgpu can see (honours WGPU_BACKEND).
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// Print the layer table: output shapes, parameters and mult-adds.
    Summary {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        json: bool,
    },
    /// Measure throughput on the selected adapter.
    Bench {
        #[arg(long, value_enum, default_value_t = BenchMode::Infer)]
        mode: BenchMode,
        #[arg(long, default_value_t = 8)]
        batch: usize,
        #[command(flatten)]
        model: ModelArgs,
        /// Untimed batches before measuring.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// Timed batches; the median is reported.
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// Also time every dispatch on its own (timestamp queries) and print the slowest.
        #[arg(long, visible_alias = "per-layer")]
        profile: bool,
        /// --mode data: the image folder or shards to read.
        #[arg(long)]
        data: Option<PathBuf>,
        /// --mode data: folder or shards (default: shards when --data names .tar files).
        #[arg(long)]
        dataset: Option<DatasetKind>,
        /// --mode data: decoding threads (default: cores - 1).
        #[arg(long, default_value_t = 0)]
        workers: usize,
        /// --mode data: time the evaluation transform (resize + centre crop) instead of the
        /// training one (RandomResizedCrop + flip).
        #[arg(long)]
        eval: bool,
        /// --mode data: centre-crop fraction of the evaluation transform.
        #[arg(long, default_value_t = 0.875)]
        crop_pct: f32,
        /// --mode train under mpirun: gradient bucket size in MiB.
        #[arg(long, default_value_t = (DEFAULT_BUCKET_BYTES >> 20) as f64)]
        bucket_mb: f64,
        #[arg(long)]
        json: bool,
    },
    /// Time the kernel candidates (GEMM tiles; vec4 or scalar depthwise and batch norm) on
    /// this adapter for a network's shapes and cache the fastest per shape (what the first train, bench or predict at these shapes would
    /// otherwise do); prints the kernel each layer will run. MOBILENET_TUNE=off skips tuning
    /// everywhere.
    Tune {
        #[command(flatten)]
        model: ModelArgs,
        /// Batch sizes to tune for, comma-separated (each is its own set of shapes).
        #[arg(long, value_delimiter = ',', default_value = "32")]
        batch: Vec<usize>,
        /// The plans to tune: train (training and its evaluation), infer (predict, bench
        /// --mode infer) or both.
        #[arg(long, value_enum, default_value_t = TuneMode::Both)]
        mode: TuneMode,
        #[arg(long)]
        json: bool,
    },
    /// Train a MobileNet V1 on the GPU, headless, with per-epoch evaluation and checkpoints.
    Train(Box<TrainArgs>),
    /// Classify images (JPEG, PNG) with pretrained or trained weights: top classes with
    /// probabilities. Or, with --tensor, turn an NHWC tensor into logits.
    Predict {
        /// A safetensors file: timm's mobilenetv1_100, Keras-named, or one of ours.
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
    },
    /// Convert weights to another format: `--format timm` writes timm's names and PyTorch
    /// layouts, loadable with `model.load_state_dict(safetensors.torch.load_file(...))`;
    /// `--format onnx` writes an ONNX model (opset 13, dynamic batch).
    Export {
        #[arg(long)]
        weights: PathBuf,
        #[arg(long, value_enum)]
        format: ExportFormat,
        #[arg(long)]
        out: PathBuf,
        /// ONNX only: layout of the model's `input`, nchw ([N, C, H, W], default) or nhwc.
        #[arg(long)]
        input_layout: Option<mobilenet_wgpu::weights::InputLayout>,
        /// ONNX only: keep batchnorm as BatchNormalization nodes instead of folding it into
        /// the convolutions.
        #[arg(long)]
        keep_bn: bool,
        /// ONNX only: end with Softmax; the output is `probabilities` instead of `logits`.
        #[arg(long)]
        softmax: bool,
    },
    /// Transfer learning: pretrained weights, a new classifier for the data set's classes,
    /// the backbone frozen (default) or partly trained. Same options and outputs as train;
    /// the architecture comes from the weights.
    Finetune(Box<FinetuneArgs>),
    /// Evaluate weights on a data set: loss, top-1, top-5 and the confusion matrix, with the
    /// weights' own preprocessing (timm: bicubic resize to 224/0.875, centre crop 224).
    Eval {
        /// Our checkpoints, or timm/Keras files whose classes match the data set.
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
    },
    /// Write images exactly as `predict` feeds them to the network: `input` [N, H, W, C] f32
    /// in a safetensors file, for comparing preprocessing with other frameworks.
    Preprocess {
        /// Weights whose preprocessing to apply (resolution, crop, normalisation).
        #[arg(long)]
        weights: PathBuf,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Input side (default: the weights' own).
        #[arg(long)]
        resolution: Option<usize>,
        /// Centre-crop fraction (default: the weights' own).
        #[arg(long)]
        crop_pct: Option<f32>,
    },
    /// Write tar shards (WebDataset layout: KEY.jpg + KEY.cls) from an image folder, for
    /// reading sequentially with `--dataset shards`.
    Shard {
        /// A folder of class subfolders.
        #[arg(long)]
        data: PathBuf,
        /// Folder for the shards and their dataset.json.
        #[arg(long)]
        out: PathBuf,
        /// Samples per shard (ImageNet is usually cut into shards of about 1 GB).
        #[arg(long, default_value_t = 10_000)]
        shard_size: usize,
        /// Shard names: PREFIX-000000.tar, ...
        #[arg(long, default_value = "train")]
        prefix: String,
        /// Seed of the shuffle applied before sharding (so every shard mixes classes).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Replace shards with the same prefix already in --out.
        #[arg(long)]
        overwrite: bool,
    },
    /// Print a shell completion script to stdout, e.g.
    /// `mobilenet completions bash > ~/.local/share/bash-completion/completions/mobilenet`.
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportFormat {
    /// timm's names and PyTorch layouts (safetensors).
    Timm,
    /// An ONNX model (opset 13) for onnxruntime, tract, TensorRT, OpenVINO, ...
    Onnx,
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchMode {
    Infer,
    Train,
    /// The pointwise GEMM alone, on the network's 1x1 convolution shapes.
    Gemm,
    /// The data loader alone on --data: images/s of read, decode, transform, normalise.
    Data,
}

#[derive(Clone, Copy, ValueEnum)]
enum TuneMode {
    Train,
    Infer,
    Both,
}

#[derive(Args)]
struct ModelArgs {
    /// paper (ReLU, symmetric padding), timm (ReLU6), keras (ReLU6, TF SAME padding).
    #[arg(long, default_value = "paper")]
    preset: Preset,
    /// Width multiplier.
    #[arg(long, default_value_t = 1.0)]
    alpha: f32,
    #[arg(long, default_value_t = 224)]
    resolution: usize,
    #[arg(long, default_value_t = 1000)]
    classes: usize,
    /// 3 for RGB, 1 for grayscale.
    #[arg(long, default_value_t = 3)]
    in_channels: usize,
    #[arg(long, default_value_t = 2)]
    stem_stride: usize,
    /// Override the preset's activation: none, relu, relu6.
    #[arg(long)]
    activation: Option<Activation>,
    /// Override the preset's padding: symmetric or same.
    #[arg(long)]
    padding: Option<Padding>,
    /// Override the preset's batch-norm epsilon.
    #[arg(long)]
    bn_eps: Option<f32>,
}

impl ModelArgs {
    fn config(&self) -> MobileNetV1Config {
        let preset = MobileNetV1Config::preset(self.preset);
        MobileNetV1Config {
            alpha: self.alpha,
            resolution: self.resolution,
            classes: self.classes,
            in_channels: self.in_channels,
            stem_stride: self.stem_stride,
            activation: self.activation.unwrap_or(preset.activation),
            padding: self.padding.unwrap_or(preset.padding),
            bn_eps: self.bn_eps.unwrap_or(preset.bn_eps),
        }
    }
}

#[derive(Args)]
struct TrainArgs {
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
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    parallel: ParallelArgs,
}

/// Data-parallel training under `mpirun -np N` (a build with `--features mpi`).
#[derive(Args)]
struct ParallelArgs {
    /// Batch-norm statistics over all ranks' batches instead of each rank's own.
    #[arg(long)]
    sync_bn: bool,
    /// Gradients travel between ranks in buckets of about this many MiB.
    #[arg(long, default_value_t = (DEFAULT_BUCKET_BYTES >> 20) as f64)]
    bucket_mb: f64,
    /// This rank's adapter (see `mobilenet devices`); default: the rank's index among
    /// the ranks on its machine.
    #[arg(long)]
    adapter_index: Option<usize>,
}

impl ParallelArgs {
    fn options(&self) -> ParallelOptions {
        ParallelOptions {
            sync_bn: self.sync_bn,
            bucket_bytes: ((self.bucket_mb * (1 << 20) as f64) as u64).max(4),
        }
    }
}

/// How image files are read, for every command that reads a data set.
#[derive(Args)]
struct LoadingArgs {
    /// Decoding threads (default: cores - 1); batches are identical for any number.
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Stop when more than this fraction of the files cannot be decoded.
    #[arg(long, default_value_t = DEFAULT_MAX_BAD_FRACTION)]
    max_bad_fraction: f64,
}

impl LoadingArgs {
    fn options(&self) -> DataOptions {
        DataOptions {
            workers: self.workers,
            max_bad_fraction: self.max_bad_fraction,
            ..DataOptions::default()
        }
    }
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

#[derive(Args)]
struct FinetuneArgs {
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

impl FinetuneArgs {
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

impl TrainArgs {
    fn options(&self) -> TrainOptions {
        let (native_resolution, native_channels, native_stem_stride) = match self.dataset {
            DatasetKind::FashionMnist => (28, 1, 1),
            DatasetKind::Cifar10 => (32, 3, 1),
            DatasetKind::Folder | DatasetKind::Shards => (128, 3, 2),
        };
        let image_files = self.dataset.is_image_files();
        let random_crop = self.crop.unwrap_or(if image_files {
            CropMode::Random
        } else {
            CropMode::Centre
        });
        let resolution = self.resolution.unwrap_or(native_resolution);
        let preset = MobileNetV1Config::preset(self.preset);
        let model = MobileNetV1Config {
            alpha: self.alpha,
            resolution,
            in_channels: self.in_channels.unwrap_or(native_channels),
            stem_stride: self.stem_stride.unwrap_or(native_stem_stride),
            ..preset
        };
        let kind = match self.schedule {
            ScheduleName::Step => ScheduleKind::StepDecay {
                factor: self.lr_decay,
                every_epochs: self.decay_epochs,
            },
            ScheduleName::Cosine => ScheduleKind::Cosine { min_lr: 0.0 },
            ScheduleName::Constant => ScheduleKind::Constant,
        };
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
            model,
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
            schedule: Schedule {
                kind,
                base_lr: self.lr,
                warmup_epochs: self.warmup_epochs,
            },
            bn_momentum: self.bn_momentum,
            seed: self.seed,
            limit: self.limit,
            test_limit: self.test_limit,
            val_fraction: self.val_fraction,
            augment: Augment {
                pad_crop: self.pad_crop,
                hflip: self.flip,
                random_resized_crop: (random_crop == CropMode::Random).then_some(
                    RandomResizedCrop {
                        scale: self.crop_scale,
                        ratio: self.crop_ratio,
                    },
                ),
                color_jitter: self.color_jitter,
            },
            out_dir: self.out.clone(),
            resume: self.resume,
            progress: !self.no_progress,
            finetune: None,
            parallel: self.parallel.options(),
        }
    }
}

fn print_bench(report: &BenchReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!(
            "{}  batch {}  res {}  alpha {}  on {} ({})\n  {:.2} ms/batch ({})  {:.1} images/s  \
             {:.2} GFLOP/s  wall {:.2} ms/batch  GPU memory {:.1} MiB (activations {:.1} MiB, \
             live-tensor peak {:.1} MiB)  dispatches {}",
            report.mode,
            report.batch,
            report.resolution,
            report.alpha,
            report.adapter,
            report.backend,
            report.ms_per_batch,
            report.timing,
            report.images_per_sec,
            report.gflops,
            report.wall_ms_per_batch,
            report.memory_bytes as f64 / (1 << 20) as f64,
            report.activation_bytes as f64 / (1 << 20) as f64,
            report.activation_live_peak_bytes as f64 / (1 << 20) as f64,
            report.dispatches
        );
        print_kernels(report);
        if let Some(wait) = report.data_wait_ms_per_batch {
            println!(
                "  waited {wait:.2} ms per step for the loader's next batch ({:.1}% of the step)",
                100.0 * wait / (wait + report.wall_ms_per_batch).max(1e-9)
            );
        }
        if let Some(dp) = &report.data_parallel {
            println!(
                "  rank {} of {}: compute {:.2} ms/step, gradient sums {:.2} ms/step, {:.0}% of them \
                 hidden behind the backward pass; {:.2} MB of gradients per step in {:.1} MiB buckets",
                dp.rank,
                dp.ranks,
                dp.compute_ms,
                dp.communication_ms,
                100.0 * dp.hidden_fraction,
                dp.gradient_bytes as f64 / 1e6,
                dp.bucket_bytes as f64 / (1 << 20) as f64
            );
        }
        if report.mode == "gemm" {
            for row in &report.profile {
                println!("  {:9.2} ms  {}", row.ms, row.step);
            }
        } else if !report.profile.is_empty() {
            print_profile(report);
        }
    }
    Ok(())
}

fn print_tune(report: &TuneReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    for plan in &report.plans {
        println!("{} on {}:", plan.plan, report.adapter);
        for kernel in &plan.kernels {
            println!("  {kernel}");
        }
    }
    let tuning = &report.tuning;
    println!(
        "{} shapes timed in {:.2} s, {} reused (from the cache or a layer of the same shape); choices saved in {}",
        tuning.timed_shapes,
        tuning.seconds,
        tuning.cached_shapes,
        tuning
            .cache
            .as_deref()
            .unwrap_or("memory only (no HOME or XDG_CACHE_HOME)")
    );
    Ok(())
}

/// Which kernels ran, and what choosing them cost.
fn print_kernels(report: &BenchReport) {
    let kernels: Vec<String> = report
        .chosen_kernels
        .iter()
        .map(|(name, count)| format!("{name} x{count}"))
        .collect();
    let tuning = &report.tuning;
    let how = match tuning.choice.as_str() {
        "on" => format!(
            "tuned: {} shapes timed in {:.2} s, {} from the cache{}",
            tuning.timed_shapes,
            tuning.seconds,
            tuning.cached_shapes,
            tuning
                .cache
                .as_ref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        ),
        "off" => "MOBILENET_TUNE=off: the default kernels".to_string(),
        "cached" => format!(
            "MOBILENET_TUNE=cached: {} shapes from the cache, defaults elsewhere",
            tuning.cached_shapes
        ),
        forced => format!("MOBILENET_TUNE={forced}: forced"),
    };
    println!("  kernels: {}; {how}", kernels.join(", "));
}

/// The slowest dispatches and the time per shader entry point.
fn print_profile(report: &BenchReport) {
    let total: f64 = report.profile.iter().map(|r| r.ms).sum();
    let mut by_entry: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
    for row in &report.profile {
        // "<op> <shader>:<entry> [<kernel>]": grouped from the shader on (an update step's
        // op name holds a space).
        let tokens: Vec<&str> = row.step.split(' ').collect();
        let at = tokens.iter().position(|t| t.contains(".wgsl")).unwrap_or(0);
        let entry = tokens[at..].join(" ");
        let slot = by_entry.entry(entry).or_default();
        slot.0 += row.ms;
        slot.1 += 1;
    }
    let mut entries: Vec<_> = by_entry.into_iter().collect();
    entries.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!(
        "profile: {total:.2} ms in {} dispatches (each in its own pass)",
        report.profile.len()
    );
    for (entry, (ms, count)) in entries {
        println!(
            "  {ms:9.2} ms {:5.1}%  {count:4}x  {entry}",
            100.0 * ms / total
        );
    }
    let mut slowest: Vec<_> = report.profile.iter().collect();
    slowest.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    println!("slowest dispatches:");
    for row in slowest.iter().take(10) {
        println!("  {:9.2} ms  {}", row.ms, row.step);
    }
}

/// `mobilenet train` and `finetune`, alone or as one rank of an MPI job.
fn run_training(
    launch: &Launch,
    options: &TrainOptions,
    adapter_index: Option<usize>,
) -> anyhow::Result<()> {
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
    if writer {
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
    let summary = train_replicated(&gpu, options, replicas)?;
    if !writer {
        return Ok(());
    }
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
    println!(
        "done in {:.1} s; {} in {}",
        summary.seconds,
        [LAST, BEST, METRICS, CURVES].join(", "),
        options.out_dir.display()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    mobilenet_wgpu::gpu::quiet_headless_start();
    let command = Cli::parse().command;
    match command {
        Command::Completions { shell } => {
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            let mut cli = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cli, "mobilenet", &mut std::io::stdout());
        }
        Command::Devices { json } => {
            let adapters = list_adapters();
            anyhow::ensure!(!adapters.is_empty(), "no GPU adapter found; {INSTALL_HINT}");
            if json {
                println!("{}", serde_json::to_string_pretty(&adapters)?);
            } else {
                for a in adapters {
                    println!(
                        "{} [{}; {}; {}]\n  max_storage_buffer_binding_size {} MiB, max_buffer_size {} MiB, \
                         workgroup invocations {}, workgroup storage {} KiB, timestamps {}",
                        a.name,
                        a.backend,
                        a.device_type,
                        a.driver,
                        a.max_storage_buffer_binding_size >> 20,
                        a.max_buffer_size >> 20,
                        a.max_compute_invocations_per_workgroup,
                        a.max_compute_workgroup_storage_size >> 10,
                        a.timestamp_queries
                    );
                }
            }
        }
        Command::Tune {
            model,
            batch,
            mode,
            json,
        } => {
            let gpu = Gpu::new()?;
            let which = TunePlans {
                train: !matches!(mode, TuneMode::Infer),
                infer: !matches!(mode, TuneMode::Train),
            };
            let report = tune(&gpu, &model.config(), &batch, which)?;
            print_tune(&report, json)?;
        }
        Command::Summary { model, json } => {
            let summary = model.config().build(1)?.summary();
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{summary}");
            }
        }
        Command::Bench {
            mode,
            batch,
            model,
            warmup,
            iters,
            profile,
            data,
            dataset,
            workers,
            eval,
            crop_pct,
            bucket_mb,
            json,
        } => {
            if let BenchMode::Data = mode {
                let data =
                    data.context("--mode data needs --data DIR (an image folder or shards)")?;
                let source = open_data(dataset, &data)?;
                let input = (batch, model.resolution, model.in_channels);
                let options = data_bench_options(input, workers, eval.then_some(crop_pct));
                let report = bench_data(source, options, warmup, (iters > 0).then_some(iters))?;
                if json {
                    println!("{}", serde_json::to_string(&report)?);
                } else {
                    println!(
                        "data  {} transform  {} workers  batch {}  res {}: {:.1} images/s ({} images in {:.2} s, {} bad files, peak RSS {:.0} MiB)",
                        report.transform,
                        report.workers,
                        report.batch,
                        report.resolution,
                        report.images_per_sec,
                        report.images,
                        report.seconds,
                        report.bad_files,
                        report.peak_rss_mb.unwrap_or(f64::NAN)
                    );
                }
                return Ok(());
            }
            // Under mpirun every rank benchmarks its own adapter (train: with the others).
            let launch = Launch::join()?;
            let gpu = launch.gpu(None)?;
            let options = BenchOptions {
                preset: model.preset,
                batch,
                resolution: model.resolution,
                alpha: model.alpha,
                classes: model.classes,
                warmup,
                iters,
                profile,
            };
            let report = match mode {
                BenchMode::Infer => bench_infer(&gpu, &options),
                BenchMode::Train => {
                    let data = match &data {
                        Some(path) => Some((
                            open_data(dataset, path)?,
                            data_bench_options(
                                (batch, model.resolution, model.in_channels),
                                workers,
                                None,
                            ),
                        )),
                        None => None,
                    };
                    let buckets = (launch.replicas(), (bucket_mb * (1 << 20) as f64) as u64);
                    let input = (model.stem_stride, model.in_channels);
                    bench_train(&gpu, &options, input, data, buckets)
                }
                BenchMode::Gemm => bench_gemm(&gpu, &options),
                BenchMode::Data => unreachable!("handled above"),
            }
            .context("benchmark failed")?;
            print_bench(&report, json)?;
        }
        Command::Train(_) | Command::Finetune(_) => {
            let (options, adapter_index) = match command {
                Command::Train(args) => (args.options(), args.parallel.adapter_index),
                Command::Finetune(args) => (args.options()?, args.train.parallel.adapter_index),
                _ => unreachable!("matched above"),
            };
            let launch = Launch::join()?;
            if let Err(error) = run_training(&launch, &options, adapter_index) {
                if launch.replicas().count() > 1 {
                    launch.fail(&error);
                }
                return Err(error);
            }
        }
        Command::Predict {
            weights,
            images,
            top,
            batch,
            resolution,
            tensor,
            logits_out,
            data,
            out,
            loading,
            json,
        } => {
            let pretrained = load_pretrained(&weights)?;
            let gpu = Gpu::new()?;
            if let (Some(data), Some(out)) = (data, out) {
                return predict_data_set(
                    &gpu,
                    &pretrained,
                    (&data, &out),
                    (batch, top),
                    &loading.options(),
                    resolution,
                );
            }
            if let (Some(input), Some(output)) = (tensor, logits_out) {
                let [n, classes] = logits_for_tensor(&gpu, &pretrained, &input, &output, batch)?;
                println!("wrote logits [{n}, {classes}] to {}", output.display());
                return Ok(());
            }
            anyhow::ensure!(
                !images.is_empty(),
                "no images given; usage: mobilenet predict --weights FILE IMAGE..."
            );
            let classifier =
                Classifier::new(&gpu, &pretrained, batch.min(images.len()), resolution)?;
            let predictions = classifier.classify_files(&pretrained, &images, top)?;
            if json {
                println!("{}", serde_json::to_string(&predictions)?);
            } else {
                for p in &predictions {
                    println!("{}", p.image.display());
                    for r in &p.top {
                        println!("  {:6.2}%  {} ({})", 100.0 * r.probability, r.name, r.class);
                    }
                }
            }
        }
        Command::Export {
            weights,
            format,
            out,
            input_layout,
            keep_bn,
            softmax,
        } => {
            let onnx_only = [
                (input_layout.is_some(), "--input-layout"),
                (keep_bn, "--keep-bn"),
                (softmax, "--softmax"),
            ];
            if let (ExportFormat::Timm, Some((_, flag))) =
                (format, onnx_only.iter().find(|(given, _)| *given))
            {
                anyhow::bail!("{flag} applies to --format onnx only; drop it for --format timm");
            }
            let pretrained = load_pretrained(&weights)?;
            match format {
                ExportFormat::Timm => {
                    export_timm(&pretrained.config, &pretrained.params, &out)?;
                    println!(
                        "wrote {} ({} naming -> timm, alpha {}, {} classes)",
                        out.display(),
                        pretrained.naming,
                        pretrained.config.alpha,
                        pretrained.config.classes
                    );
                }
                ExportFormat::Onnx => {
                    use mobilenet_wgpu::weights::{
                        export_onnx, InputLayout, OnnxOptions, ONNX_OPSET,
                    };
                    let options = OnnxOptions {
                        input_layout: input_layout.unwrap_or_default(),
                        keep_bn,
                        softmax,
                    };
                    let summary = export_onnx(&pretrained, &options, &out)?;
                    let (res, channels) =
                        (pretrained.config.resolution, pretrained.config.in_channels);
                    let input_shape = match options.input_layout {
                        InputLayout::Nchw => format!("[batch, {channels}, {res}, {res}]"),
                        InputLayout::Nhwc => format!("[batch, {res}, {res}, {channels}]"),
                    };
                    println!(
                        "wrote {} ({} naming -> ONNX opset {ONNX_OPSET}, {} bytes, {} nodes): \
                         input `input` {input_shape} ({}), output `{}` [batch, {}]",
                        out.display(),
                        pretrained.naming,
                        summary.bytes,
                        summary.nodes,
                        options.input_layout,
                        summary.output,
                        pretrained.config.classes
                    );
                }
            }
        }
        Command::Eval {
            weights,
            dataset,
            data,
            batch_size,
            resolution,
            crop_pct,
            loading,
            limit,
            json,
        } => {
            let mut weights_file = load_pretrained(&weights)?;
            override_preprocess(&mut weights_file, resolution, crop_pct)?;
            let (train_set, test_set) = load_dataset(dataset, data.as_deref())?;
            // Evaluate on the test split where the data set has one.
            let set = test_set.unwrap_or(train_set);
            let set = match limit {
                Some(n) => set.limit(n)?,
                None => set,
            };
            let gpu = Gpu::new()?;
            let class_names = set.class_names().to_vec();
            let result =
                evaluate_checkpoint(&gpu, &weights_file, set, batch_size, &loading.options())
                    .with_context(|| format!("evaluating {}", weights.display()))?;
            if json {
                println!("{}", serde_json::to_string(&result)?);
            } else {
                println!(
                    "{}: loss {:.4}  top-1 {:.2}%  top-5 {:.2}%  ({} images)",
                    weights.display(),
                    result.loss,
                    100.0 * result.top1,
                    100.0 * result.top5,
                    result.count
                );
                print!("{}", format_confusion(&result, &class_names));
            }
            if !result.bad_files.is_empty() {
                eprintln!(
                    "{} files could not be decoded and were left out (named above)",
                    result.bad_files.len()
                );
            }
        }
        Command::Preprocess {
            weights,
            images,
            out,
            resolution,
            crop_pct,
        } => {
            let mut pretrained = load_pretrained(&weights)?;
            override_preprocess(&mut pretrained, resolution, crop_pct)?;
            let shape = write_preprocessed(&pretrained, &images, &out)?;
            println!("wrote input {shape:?} to {}", out.display());
        }
        Command::Shard {
            data,
            out,
            shard_size,
            prefix,
            seed,
            overwrite,
        } => {
            anyhow::ensure!(shard_size > 0, "--shard-size must be at least 1");
            let index = index_image_folder(&data)?;
            let samples = index.samples();
            let shards = mobilenet_wgpu::data::write_shards(
                &samples,
                &index.class_names,
                &out,
                &prefix,
                shard_size,
                seed,
                overwrite,
            )?;
            println!(
                "wrote {} images of {} classes into {} shards in {} (read them with --dataset shards --data '{}/{prefix}-{{000000..{:06}}}.tar')",
                samples.len(),
                index.class_names.len(),
                shards.len(),
                out.display(),
                out.display(),
                shards.len().saturating_sub(1)
            );
        }
    }
    Ok(())
}

/// The loader a data benchmark times: the training view (RandomResizedCrop + flip,
/// shuffled), or with `eval_crop_pct` the evaluation view.
fn data_bench_options(
    (batch, resolution, channels): (usize, usize, usize),
    workers: usize,
    eval_crop_pct: Option<f32>,
) -> LoaderOptions {
    let loading = DataOptions {
        workers,
        crop_pct: eval_crop_pct.unwrap_or(1.0),
        ..DataOptions::default()
    };
    let normalize = mobilenet_wgpu::data::Normalize::symmetric(channels);
    let options = eval_loader_options(batch, (resolution, channels), &normalize, &loading);
    match eval_crop_pct {
        Some(_) => options,
        None => LoaderOptions {
            shuffle: true,
            drop_last: true,
            augment: Augment {
                hflip: true,
                random_resized_crop: Some(RandomResizedCrop::default()),
                ..Augment::default()
            },
            ..options
        },
    }
}

/// `--resolution` and `--crop-pct` in place of the weights' own evaluation view.
fn override_preprocess(
    weights: &mut Pretrained,
    resolution: Option<usize>,
    crop_pct: Option<f32>,
) -> anyhow::Result<()> {
    if let Some(resolution) = resolution {
        anyhow::ensure!(resolution > 0, "--resolution must be at least 1");
        weights.config.resolution = resolution;
        weights.preprocess.resolution = resolution;
    }
    if let Some(crop_pct) = crop_pct {
        anyhow::ensure!(
            crop_pct > 0.0 && crop_pct <= 1.0,
            "--crop-pct must be in (0, 1]"
        );
        weights.preprocess.crop_pct = crop_pct;
    }
    Ok(())
}

/// A folder or shards, as `--dataset` says or as the path suggests.
fn open_data(kind: Option<DatasetKind>, data: &std::path::Path) -> anyhow::Result<DataSource> {
    let kind = kind.unwrap_or_else(|| default_source_kind(data));
    Ok(load_dataset(kind, Some(data))?.0)
}

/// `predict --data D --out F`: every image of a data set, one JSON line each.
fn predict_data_set(
    gpu: &Gpu,
    pretrained: &Pretrained,
    (data, out): (&std::path::Path, &std::path::Path),
    (batch, top): (usize, usize),
    loading: &DataOptions,
    resolution: Option<usize>,
) -> anyhow::Result<()> {
    let source = match default_source_kind(data) {
        DatasetKind::Shards => open_data(Some(DatasetKind::Shards), data)?,
        _ => mobilenet_wgpu::data::index_images(data)?.into(),
    };
    let mut preprocess = pretrained.preprocess.clone();
    preprocess.resolution = resolution.unwrap_or(preprocess.resolution);
    let options = LoaderOptions {
        workers: loading.workers,
        max_bad_fraction: loading.max_bad_fraction,
        ..preprocess.loader_options(batch.max(1))
    };
    let summary = predict_to_jsonl(gpu, pretrained, source, options, top, out)?;
    println!(
        "wrote {} predictions to {} in {:.1} s ({:.1} images/s){}",
        summary.images,
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

/// `preprocess`: images as `predict` feeds them, saved as `input` [N, H, W, C].
fn write_preprocessed(
    pretrained: &Pretrained,
    images: &[PathBuf],
    out: &std::path::Path,
) -> anyhow::Result<[usize; 4]> {
    let preprocess = &pretrained.preprocess;
    let mut values = Vec::new();
    for image in images {
        values.extend(mobilenet_wgpu::data::load_image(image, preprocess)?);
    }
    let side = preprocess.resolution;
    let shape = [images.len(), side, side, preprocess.normalize.mean.len()];
    mobilenet_wgpu::weights::save_safetensors(
        out,
        &[("input", &shape, &values)],
        &Default::default(),
    )?;
    Ok(shape)
}
