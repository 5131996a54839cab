//! Classify image files with pretrained weights: the library's shortest useful program.
//!
//! Loads a safetensors checkpoint (timm's `mobilenetv1_100` as published, a Keras-named
//! file, or one written by `mobilenet train`), compiles the network once for a small
//! batch and prints the three most probable classes of each image (JPEG or PNG),
//! preprocessed as the weights expect (timm: bicubic resize, centre crop, ImageNet
//! normalisation).
//!
//! Run it with:
//!
//! ```sh
//! cargo run --release --example classify -- WEIGHTS.safetensors IMAGE...
//! ```

use anyhow::Context;
use mobilenet_wgpu::predict::Classifier;
use mobilenet_wgpu::weights::load_pretrained;
use mobilenet_wgpu::Gpu;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let weights_path = args
        .next()
        .context("usage: classify WEIGHTS.safetensors IMAGE...")?;
    let images: Vec<PathBuf> = args.collect();
    anyhow::ensure!(
        !images.is_empty(),
        "usage: classify WEIGHTS.safetensors IMAGE... (no image given)"
    );

    // The adapter follows WGPU_BACKEND / WGPU_ADAPTER_NAME; without a GPU, lavapipe.
    let gpu = Gpu::new()?;
    let weights = load_pretrained(&weights_path)
        .with_context(|| format!("loading {}", weights_path.display()))?;
    println!(
        "{} ({} names): alpha {}, {} classes, {}x{} input, on {}",
        weights_path.display(),
        weights.naming,
        weights.config.alpha,
        weights.config.classes,
        weights.config.resolution,
        weights.config.resolution,
        gpu.adapter().name
    );

    // Batch norm is folded into the convolutions; up to 8 images per GPU submit, at the
    // weights' own resolution.
    let classifier = Classifier::new(&gpu, &weights, images.len().min(8), None)?;
    for prediction in classifier.classify_files(&images, 3)? {
        println!("{}", prediction.image.display());
        for ranked in &prediction.top {
            println!("  {:6.2}%  {}", 100.0 * ranked.probability, ranked.name);
        }
    }
    Ok(())
}
