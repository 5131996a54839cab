//! `mobilenet preprocess`

use crate::args::override_preprocess;
use clap::Args;
use mobilenet_wgpu::data::load_image;
use mobilenet_wgpu::weights::{load_pretrained, save_safetensors, Pretrained};
use std::path::{Path, PathBuf};

/// Write images exactly as `predict` feeds them to the network: `input` [N, H, W, C] f32
/// in a safetensors file, for comparing preprocessing with other frameworks.
#[derive(Args)]
pub struct PreprocessArgs {
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
}

impl PreprocessArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let mut pretrained = load_pretrained(&self.weights)?;
        override_preprocess(&mut pretrained, self.resolution, self.crop_pct)?;
        let shape = write_preprocessed(&pretrained, &self.images, &self.out)?;
        println!("wrote input {shape:?} to {}", self.out.display());
        Ok(())
    }
}

/// Images as `predict` feeds them, saved as `input` [N, H, W, C].
fn write_preprocessed(
    pretrained: &Pretrained,
    images: &[PathBuf],
    out: &Path,
) -> anyhow::Result<[usize; 4]> {
    let preprocess = &pretrained.preprocess;
    let mut values = Vec::new();
    for image in images {
        values.extend(load_image(image, preprocess)?);
    }
    let side = preprocess.resolution;
    let shape = [images.len(), side, side, preprocess.normalize.mean.len()];
    save_safetensors(out, &[("input", &shape, &values)], &Default::default())?;
    Ok(shape)
}
