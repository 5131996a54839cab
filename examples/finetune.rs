//! Transfer learning: a pretrained backbone, frozen, with a new classifier trained on an
//! image folder (one subfolder per class), the Keras-docs workflow from Rust.
//!
//! `train::train` with `TrainOptions::finetune` set: the architecture and the backbone's
//! weights come from the pretrained file, the classifier is new and sized to the folder's
//! classes, a fifth of the images is held out for validation, and the run directory
//! receives `metrics.jsonl`, `last.safetensors`, `best.safetensors`, `curves.png`,
//! `confusion.png` and TensorBoard event files.
//! `last.safetensors` loads like any checkpoint (`mobilenet predict --weights ...`).
//!
//! Run it with:
//!
//! ```sh
//! cargo run --release --example finetune -- PRETRAINED.safetensors DATA_DIR OUT_DIR [EPOCHS] [RESOLUTION]
//! ```
//!
//! (EPOCHS defaults to 5, RESOLUTION to the weights' own.)

use anyhow::Context;
use mobilenet_wgpu::data::Augment;
use mobilenet_wgpu::train::trainer::Finetune;
use mobilenet_wgpu::train::{
    train, DataOptions, DatasetKind, OptimizerConfig, OptimizerKind, Schedule, ScheduleKind,
    TrainOptions, TrainSummary,
};
use mobilenet_wgpu::{Gpu, MobileNetV1Config};
use std::path::PathBuf;

const USAGE: &str = "usage: finetune PRETRAINED.safetensors DATA_DIR OUT_DIR [EPOCHS] [RESOLUTION]";

/// What the command line asked for.
struct Args {
    pretrained: PathBuf,
    data_dir: PathBuf,
    out_dir: PathBuf,
    epochs: usize,
    resolution: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let options = finetune_options(&args);
    let gpu = Gpu::new()?;
    let summary = train(&gpu, &options)?;
    print_summary(&summary);
    println!(
        "fine-tuned weights: {}",
        options.out_dir.join("last.safetensors").display()
    );
    Ok(())
}

fn parse_args() -> anyhow::Result<Args> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!((3..=5).contains(&args.len()), "{USAGE}");
    let epochs = match args.get(3) {
        Some(text) => text.parse().context("EPOCHS must be a whole number")?,
        None => 5,
    };
    let resolution = match args.get(4) {
        Some(text) => Some(text.parse().context("RESOLUTION must be a whole number")?),
        None => None,
    };
    Ok(Args {
        pretrained: PathBuf::from(&args[0]),
        data_dir: PathBuf::from(&args[1]),
        out_dir: PathBuf::from(&args[2]),
        epochs,
        resolution,
    })
}

/// The run: a frozen pretrained backbone and a new classifier, trained on the folder.
fn finetune_options(args: &Args) -> TrainOptions {
    TrainOptions {
        dataset: DatasetKind::Folder,
        data_dir: Some(args.data_dir.clone()),
        val_dir: None,
        // Evaluation view: shorter side to resolution / 0.875, centre crop (timm's).
        data: DataOptions {
            crop_pct: 0.875,
            ..DataOptions::default()
        },
        // Replaced by the pretrained file's architecture.
        model: MobileNetV1Config::default(),
        epochs: args.epochs,
        batch_size: 16,
        optimizer: OptimizerConfig {
            weight_decay: 0.0,
            ..OptimizerConfig::new(OptimizerKind::Rmsprop)
        },
        schedule: Schedule {
            kind: ScheduleKind::Cosine { min_lr: 0.0 },
            base_lr: 0.01,
            warmup_epochs: 0.0,
        },
        bn_momentum: 0.1,
        seed: 0,
        limit: None,
        test_limit: None,
        val_fraction: 0.2,
        // Random horizontal flips; no crops (small data sets, small images).
        augment: Augment {
            hflip: true,
            ..Augment::default()
        },
        out_dir: args.out_dir.clone(),
        resume: false,
        progress: false,
        progress_bar: false,
        log_every: mobilenet_wgpu::train::DEFAULT_LOG_EVERY,
        finetune: Some(Finetune {
            weights: args.pretrained.clone(),
            // Some(0): only the new classifier trains; Some(k) also the last k blocks,
            // None the whole network.
            trainable_blocks: Some(0),
            resolution: args.resolution,
            // Checked against the folder's class count when given.
            classes: None,
        }),
        parallel: Default::default(),
    }
}

/// Each epoch's losses and accuracies, then the best validation accuracy.
fn print_summary(summary: &TrainSummary) {
    println!("classes: {}", summary.class_names.join(", "));
    for epoch in &summary.epochs {
        let val = match (epoch.val_loss, epoch.val_acc) {
            (Some(loss), Some(acc)) => format!("val loss {loss:.4} acc {:.1}%", 100.0 * acc),
            _ => "no validation split".to_string(),
        };
        println!(
            "epoch {}: train loss {:.4} acc {:.1}%, {val}, {:.1} s",
            epoch.epoch,
            epoch.train_loss,
            100.0 * epoch.train_acc,
            epoch.seconds
        );
    }
    if let Some(best) = summary.best_val_acc {
        println!("best validation accuracy: {:.1}%", 100.0 * best);
    }
}
