//! Argument groups that several subcommands flatten in, and the conversions they share.

use clap::Args;
use mobilenet_wgpu::data::{DataSource, DEFAULT_MAX_BAD_FRACTION};
use mobilenet_wgpu::predict::{Classifier, Int8Weights};
use mobilenet_wgpu::quant::QuantizedModel;
use mobilenet_wgpu::train::dataset::{default_source_kind, load_dataset};
use mobilenet_wgpu::train::{DataOptions, DatasetKind, ParallelOptions, DEFAULT_BUCKET_BYTES};
use mobilenet_wgpu::weights::{load_pretrained, Pretrained, PretrainedError, WeightsError};
use mobilenet_wgpu::Gpu;
use mobilenet_wgpu::{Activation, MobileNetV1Config, Padding, Preset};
use std::path::Path;

/// The architecture, for the commands that build a network from flags (summary, bench,
/// tune).
#[derive(Args)]
pub struct ModelArgs {
    /// paper (ReLU, symmetric padding), timm (ReLU6), keras (ReLU6, TF SAME padding).
    #[arg(long, default_value = "paper")]
    pub preset: Preset,
    /// Width multiplier.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f32,
    #[arg(long, default_value_t = 224)]
    pub resolution: usize,
    #[arg(long, default_value_t = 1000)]
    pub classes: usize,
    /// 3 for RGB, 1 for grayscale.
    #[arg(long, default_value_t = 3)]
    pub in_channels: usize,
    #[arg(long, default_value_t = 2)]
    pub stem_stride: usize,
    /// Override the preset's activation: none, relu, relu6.
    #[arg(long)]
    pub activation: Option<Activation>,
    /// Override the preset's padding: symmetric or same.
    #[arg(long)]
    pub padding: Option<Padding>,
    /// Override the preset's batch-norm epsilon.
    #[arg(long)]
    pub bn_eps: Option<f32>,
}

impl ModelArgs {
    pub fn config(&self) -> MobileNetV1Config {
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

/// How image files are read, for every command that reads a data set.
#[derive(Args)]
pub struct LoadingArgs {
    /// Decoding threads (default: cores - 1); batches are identical for any number.
    #[arg(long, default_value_t = 0)]
    pub workers: usize,
    /// Stop when more than this fraction of the files cannot be decoded.
    #[arg(long, default_value_t = DEFAULT_MAX_BAD_FRACTION)]
    pub max_bad_fraction: f64,
}

impl LoadingArgs {
    pub fn options(&self) -> DataOptions {
        DataOptions {
            workers: self.workers,
            max_bad_fraction: self.max_bad_fraction,
            ..DataOptions::default()
        }
    }
}

/// Data-parallel training under `mpirun -np N` (a build with `--features mpi`).
#[derive(Args)]
pub struct ParallelArgs {
    /// Batch-norm statistics over all ranks' batches instead of each rank's own.
    #[arg(long)]
    pub sync_bn: bool,
    /// Gradients travel between ranks in buckets of about this many MiB.
    #[arg(long, default_value_t = (DEFAULT_BUCKET_BYTES >> 20) as f64)]
    pub bucket_mb: f64,
    /// This rank's adapter (see `mobilenet devices`); default: the rank's index among
    /// the ranks on its machine.
    #[arg(long)]
    pub adapter_index: Option<usize>,
}

impl ParallelArgs {
    pub fn options(&self) -> ParallelOptions {
        ParallelOptions {
            sync_bn: self.sync_bn,
            bucket_bytes: ((self.bucket_mb * (1 << 20) as f64) as u64).max(4),
        }
    }
}

/// `--resolution` and `--crop-pct` in place of the weights' own evaluation view.
pub fn override_preprocess(
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
pub fn open_data(kind: Option<DatasetKind>, data: &Path) -> anyhow::Result<DataSource> {
    let kind = kind.unwrap_or_else(|| default_source_kind(data));
    Ok(load_dataset(kind, Some(data))?.0)
}

/// A weights file as the inference commands take it: float weights, or an int8 file written
/// by `mobilenet quantize`, recognised by its metadata (never by its name).
pub enum InferenceWeights {
    Float(Pretrained),
    Int8(QuantizedModel),
}

impl InferenceWeights {
    pub fn load(path: &Path) -> anyhow::Result<InferenceWeights> {
        match load_pretrained(path) {
            Err(PretrainedError::File(WeightsError::Int8File { .. })) => {
                Ok(InferenceWeights::Int8(QuantizedModel::load(path)?))
            }
            weights => Ok(InferenceWeights::Float(weights?)),
        }
    }

    /// The network compiled for `batch` images per submit, float or int8.
    pub fn classifier(
        &self,
        gpu: &Gpu,
        batch: usize,
        resolution: Option<usize>,
    ) -> anyhow::Result<Classifier> {
        match self {
            InferenceWeights::Float(weights) => Classifier::new(gpu, weights, batch, resolution),
            InferenceWeights::Int8(model) => {
                let weights = Int8Weights {
                    numbers: model,
                    config: &model.config,
                    preprocess: &model.preprocess,
                    class_names: &model.class_names,
                };
                Classifier::int8(gpu, &weights, batch, resolution)
            }
        }
    }
}
