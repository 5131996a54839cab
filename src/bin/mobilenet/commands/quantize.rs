//! `mobilenet quantize`

use crate::args::{open_data, LoadingArgs};
use anyhow::Context;
use clap::Args;
use mobilenet_wgpu::data::{index_images, DataSource};
use mobilenet_wgpu::quant::{
    calibrate, quantize, CalibrationOptions, Method, DEFAULT_CALIBRATION_BATCH,
    DEFAULT_CALIBRATION_IMAGES,
};
use mobilenet_wgpu::train::dataset::{default_source_kind, load_dataset};
use mobilenet_wgpu::train::DatasetKind;
use mobilenet_wgpu::weights::load_pretrained;
use mobilenet_wgpu::Gpu;
use std::path::{Path, PathBuf};

/// Quantize float weights to int8 (post-training): weights per output channel, symmetric;
/// activations per tensor, their ranges calibrated by running the float network over N
/// images with the weights' own preprocessing. Writes a safetensors file of about a
/// quarter of the float file's size.
#[derive(Args)]
pub struct QuantizeArgs {
    /// Float weights: one of our checkpoints, or a timm or Keras file.
    #[arg(long)]
    weights: PathBuf,
    /// Calibration images: an image folder (class subfolders or images directly in it) or
    /// tar shards; with --dataset, where that data set lies.
    #[arg(long, required_unless_present = "dataset")]
    data: Option<PathBuf>,
    /// Calibrate on a data set's training split instead (fashion-mnist: the Debian
    /// package's).
    #[arg(long)]
    dataset: Option<DatasetKind>,
    /// Images to calibrate on (the first N; spread over a folder's classes).
    #[arg(long, default_value_t = DEFAULT_CALIBRATION_IMAGES)]
    calibration: usize,
    /// How each activation's range is chosen: minmax, percentile (99.99), percentile:P or
    /// mse.
    #[arg(long, default_value_t = Method::DEFAULT)]
    method: Method,
    /// Images per GPU submit during calibration.
    #[arg(long, default_value_t = DEFAULT_CALIBRATION_BATCH)]
    batch_size: usize,
    #[command(flatten)]
    loading: LoadingArgs,
    /// Where the int8 safetensors file is written.
    #[arg(long)]
    out: PathBuf,
}

impl QuantizeArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let weights = load_pretrained(&self.weights)?;
        let source = self.calibration_source()?;
        let gpu = Gpu::new()?;
        let loading = self.loading.options();
        let options = CalibrationOptions {
            images: self.calibration,
            batch_size: self.batch_size,
            workers: loading.workers,
            max_bad_fraction: loading.max_bad_fraction,
        };
        let calibration = calibrate(&gpu, &weights, source, &options)
            .with_context(|| format!("calibrating {}", self.weights.display()))?;
        let model = quantize(&weights, &calibration, self.method)?;
        model.save(&self.out)?;
        let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let (int8, float) = (size(&self.out), size(&self.weights));
        // Checkpoints of `train` also hold the optimizer's state: the weights alone are
        // the fair comparison, so both are given.
        let float_weights: usize = weights.params.iter().map(|(_, _, v)| 4 * v.len()).sum();
        let percent = |of: f64| 100.0 * int8 as f64 / of.max(1.0);
        println!(
            "quantized {} to int8 with {} ranges from {} calibration images{}: wrote {} \
             ({:.2} MB: {:.0}% of the float file's {:.2} MB, {:.0}% of its {:.2} MB of \
             float weights)",
            self.weights.display(),
            self.method,
            calibration.images,
            self.shortfall(calibration.images, calibration.bad_files.len()),
            self.out.display(),
            int8 as f64 / 1e6,
            percent(float as f64),
            float as f64 / 1e6,
            percent(float_weights as f64),
            float_weights as f64 / 1e6,
        );
        Ok(())
    }

    /// Why fewer images than asked for were used, if they were.
    fn shortfall(&self, images: usize, bad_files: usize) -> String {
        match bad_files {
            0 if images < self.calibration => " (all the data holds)".to_string(),
            0 => String::new(),
            n => format!(" ({n} files could not be decoded, named above)"),
        }
    }

    /// `--data` as `predict --data` reads it, or `--dataset`'s training split (the test
    /// split stays for measuring the int8 model).
    fn calibration_source(&self) -> anyhow::Result<DataSource> {
        match (&self.data, self.dataset) {
            (data, Some(kind)) => Ok(load_dataset(kind, data.as_deref())?.0),
            (Some(data), None) if default_source_kind(data) == DatasetKind::Shards => {
                open_data(Some(DatasetKind::Shards), data)
            }
            (Some(data), None) => Ok(index_images(data)?.into()),
            (None, None) => anyhow::bail!("give --data DIR|SHARDS or --dataset fashion-mnist"),
        }
    }
}
