//! What a run is asked to do: `TrainOptions` (the CLI fills it from its flags) and, for
//! transfer learning, `Finetune`.

use std::path::PathBuf;

use super::dataset::{DataOptions, DatasetKind};
use super::optim::OptimizerConfig;
use super::parallel::ParallelOptions;
use super::schedule::Schedule;
use crate::data::Augment;
use crate::model::{MobileNetV1Config, BLOCKS, POOL_STAGE};

/// Everything `train` needs; the CLI fills it from its flags.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    pub dataset: DatasetKind,
    pub data_dir: Option<PathBuf>,
    /// Validation data of the same kind; otherwise `val_fraction` of the training data.
    #[serde(default)]
    pub val_dir: Option<PathBuf>,
    #[serde(default)]
    pub data: DataOptions,
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
    /// Print the run's progress: a line per epoch and notes on stdout. `false`: the trainer
    /// prints nothing but warnings (stderr); read the returned `TrainSummary` instead.
    pub progress: bool,
    /// With `progress`, also draw a progress bar on a terminal (the CLI's `--no-progress`
    /// keeps the epoch lines and drops the bar).
    #[serde(skip)]
    pub progress_bar: bool,
    /// Training steps between TensorBoard points (and read-backs of loss and accuracy).
    /// At its default it is left out of the options' JSON, so runs checkpointed before it
    /// existed still resume.
    #[serde(
        default = "default_log_every",
        skip_serializing_if = "is_default_log_every"
    )]
    pub log_every: usize,
    /// Start from pretrained weights with a new classifier (`mobilenet finetune`).
    pub finetune: Option<Finetune>,
    /// Data-parallel settings (used when several ranks train together).
    #[serde(default)]
    pub parallel: ParallelOptions,
}

/// `--log-every`'s default: a TensorBoard point every 50 steps.
pub const DEFAULT_LOG_EVERY: usize = 50;

fn default_log_every() -> usize {
    DEFAULT_LOG_EVERY
}

fn is_default_log_every(n: &usize) -> bool {
    *n == DEFAULT_LOG_EVERY
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
    pub(crate) fn first_trained_stage(&self) -> usize {
        match self.trainable_blocks {
            None => 0,
            Some(0) => POOL_STAGE + 1,
            Some(k) => POOL_STAGE - k.min(BLOCKS.len()),
        }
    }
}

impl TrainOptions {
    /// Whether this process draws the progress bars: the one that writes the run
    /// directory (`writer`, rank 0), with `progress` and `progress_bar` on.
    pub(super) fn draws_bars(&self, writer: bool) -> bool {
        self.progress && self.progress_bar && writer
    }

    /// The options that must not change when a run is resumed.
    pub(super) fn fingerprint(&self) -> String {
        let mut same = self.clone();
        same.epochs = 0;
        same.resume = false;
        same.progress = false;
        same.log_every = DEFAULT_LOG_EVERY;
        same.data.workers = 0;
        same.out_dir = PathBuf::new();
        // Taken from the data set, whatever the caller put there.
        same.model.classes = 0;
        serde_json::to_string(&same).unwrap_or_default()
    }

    /// `--epochs` is the run's total, so 0 trains nothing, resumed or not.
    fn check_epochs(&self) -> anyhow::Result<()> {
        match (self.epochs, self.resume) {
            (0, false) => anyhow::bail!(
                "--epochs 0 trains nothing and writes nothing; pass --epochs 1 or more"
            ),
            (0, true) => anyhow::bail!(
                "--epochs 0 with --resume: nothing to do; --epochs counts the run's epochs from \
                 its start, so pass the total it should reach (more than its checkpoint holds)"
            ),
            _ => Ok(()),
        }
    }

    /// Refuses options no run can start with (`train` checks them first; a caller may
    /// check before it opens an adapter).
    pub fn check(&self) -> anyhow::Result<()> {
        self.model.validate()?;
        anyhow::ensure!(self.batch_size > 0, "--batch-size must be at least 1");
        self.check_epochs()?;
        anyhow::ensure!(self.log_every > 0, "--log-every must be at least 1");
        anyhow::ensure!(
            (0.0..1.0).contains(&self.val_fraction),
            "--val-fraction must be in [0, 1)"
        );
        Ok(())
    }
}
