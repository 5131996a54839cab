//! A run's state: its fixed parts (`Run`: options, run files, network, data, loader
//! options) set up from the options, and how far it has come (`Progress`).
//!
//! The loop's steps are `Run` methods in files of their own: `resume` (restoring),
//! `epoch` (training an epoch), `epoch_end` (settling and evaluating), `record` (metrics,
//! checkpoints, curves) and `console` (what is printed besides the epoch line).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};

use super::dataset::{
    default_normalize, eval_loader_options, train_loader_options, Splits, TrainData,
};
use super::network::Network;
use super::options::TrainOptions;
use super::replicas::build_with_rank0_kernels;
use super::run_files::RunFiles;
use crate::data::{LoaderOptions, Normalize};
use crate::gpu::Gpu;
use crate::graph::Replicas;
use crate::model::MobileNetV1Config;
use crate::weights::checkpoint::Checkpoint;
use crate::weights::{load_pretrained, Pretrained};

/// One run's fixed parts, shared by the pieces of the epoch loop.
pub(super) struct Run<'a> {
    pub options: &'a TrainOptions,
    pub replicas: &'a dyn Replicas,
    pub files: RunFiles,
    pub network: Network,
    pub data: TrainData,
    pub config: MobileNetV1Config,
    pub normalize: Normalize,
    pub fingerprint: String,
    pub train_loader: LoaderOptions,
    pub eval_loader: LoaderOptions,
    /// Bad files already named, so each is named once per run (`console`).
    pub named_bad: Mutex<HashSet<String>>,
}

/// Progress that a checkpoint carries across a resume.
pub(super) struct Progress {
    pub epoch: usize,
    pub step: usize,
    pub best_val_acc: Option<f64>,
}

impl<'a> Run<'a> {
    /// Checks the options, locks the run directory (rank 0), loads the data and builds
    /// the network; returns the checkpoint to resume from, if any (rank 0).
    pub fn prepare(
        gpu: &Gpu,
        options: &'a TrainOptions,
        replicas: &'a dyn Replicas,
    ) -> anyhow::Result<(Run<'a>, Option<Checkpoint>)> {
        options.check()?;
        let files = RunFiles::create(&options.out_dir, replicas.rank() == 0)?;
        let pretrained = load_finetune_weights(options)?;
        let resume_from = files.checkpoint_to_resume(options.resume)?;
        let base_model = base_model(options, pretrained.as_ref());
        let data = load_data(options)?;
        let config = classifier_for(options, base_model, &data.class_names)?;
        check_global_batch(options, &data, replicas)?;
        let spinner = preparing_spinner(options.draws_bars(files.writer()));
        let network = build_with_rank0_kernels(gpu, replicas, || {
            Network::build(gpu, options, &config, pretrained.as_ref(), replicas.count())
        })?;
        spinner.finish_and_clear();
        let normalize = match &pretrained {
            // Inputs as the pretrained network saw them.
            Some(p) => p.preprocess.normalize.clone(),
            None => default_normalize(config.in_channels),
        };
        let (train_loader, eval_loader) = loader_options(options, &config, &normalize, replicas);
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
            named_bad: Mutex::default(),
        };
        Ok((run, resume_from))
    }
}

/// A spinner on stderr while the plans are compiled and their kernels tuned, cleared when
/// done (or dropped on an error): on a machine's first run lavapipe compiles every kernel,
/// a minute or more on 2 cores, and nothing else would show meanwhile. Hidden unless
/// `enabled`, and where stderr is not a terminal.
fn preparing_spinner(enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::new_spinner().with_finish(ProgressFinish::AndClear);
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        spinner.set_style(style);
    }
    spinner.set_message("preparing kernels (slow only on a machine's first run)");
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

/// The pretrained network a fine-tuning run starts from.
fn load_finetune_weights(options: &TrainOptions) -> anyhow::Result<Option<Pretrained>> {
    let Some(f) = &options.finetune else {
        return Ok(None);
    };
    let pretrained = load_pretrained(&f.weights)
        .with_context(|| format!("loading the pretrained weights {}", f.weights.display()))?;
    Ok(Some(pretrained))
}

fn load_data(options: &TrainOptions) -> anyhow::Result<TrainData> {
    TrainData::load(&Splits {
        kind: options.dataset,
        data: options.data_dir.as_deref(),
        val_data: options.val_dir.as_ref(),
        val_fraction: options.val_fraction,
        limit: options.limit,
        test_limit: options.test_limit,
        seed: options.seed,
    })
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

/// Every step needs a full batch on every rank.
fn check_global_batch(
    options: &TrainOptions,
    data: &TrainData,
    replicas: &dyn Replicas,
) -> anyhow::Result<()> {
    let global_batch = options.batch_size * replicas.count();
    anyhow::ensure!(
        data.train.len() >= global_batch,
        "only {} training images for a global batch of {global_batch} ({} per rank x {} \
         ranks); lower --batch-size",
        data.train.len(),
        options.batch_size,
        replicas.count()
    );
    Ok(())
}

/// The training and evaluation views of this rank's part of the data.
fn loader_options(
    options: &TrainOptions,
    config: &MobileNetV1Config,
    normalize: &Normalize,
    replicas: &dyn Replicas,
) -> (LoaderOptions, LoaderOptions) {
    let input = (config.resolution, config.in_channels);
    let part = (replicas.rank(), replicas.count());
    let train_loader = LoaderOptions {
        part,
        ..train_loader_options(
            options.batch_size,
            input,
            &options.augment,
            normalize,
            &options.data,
            options.seed,
        )
    };
    let eval_loader = LoaderOptions {
        part,
        ..eval_loader_options(options.batch_size, input, normalize, &options.data)
    };
    (train_loader, eval_loader)
}
