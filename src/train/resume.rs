//! Where a run starts: at epoch 0, or where its last checkpoint left it (`--resume`), with
//! every replica starting from rank 0's state.

use anyhow::bail;

use super::launch::say;
use super::metrics::truncate_metrics;
use super::replicas::{from_rank0, share_state};
use super::run::{Progress, Run};
use super::run_files::LAST;
use crate::weights::checkpoint::Checkpoint;

impl Run<'_> {
    /// Restores a resumed run (rank 0 reads the checkpoint) and starts every replica from
    /// rank 0's state.
    pub(super) fn restore(&self, checkpoint: Option<Checkpoint>) -> anyhow::Result<Progress> {
        let mut progress = self.load_checkpoint(checkpoint)?;
        if self.replicas.count() > 1 {
            let best = progress.best_val_acc.unwrap_or(f64::NAN);
            let shared = from_rank0(
                self.replicas,
                &[progress.epoch as f64, progress.step as f64, best],
            )?;
            progress = Progress {
                epoch: shared[0] as usize,
                step: shared[1] as usize,
                best_val_acc: (!shared[2].is_nan()).then_some(shared[2]),
            };
            share_state(&self.network, self.replicas)?;
        }
        Ok(progress)
    }

    /// Loads a resumed run's state into the network, or clears metrics left by a run killed
    /// before its first checkpoint.
    fn load_checkpoint(&self, checkpoint: Option<Checkpoint>) -> anyhow::Result<Progress> {
        let files = &self.files;
        let Some(checkpoint) = checkpoint else {
            if files.writer() && self.options.resume {
                // A run killed in its first epoch leaves no checkpoint: say so, or a user
                // would believe the run continued.
                say(&format!(
                    "warning: --resume: {} holds no checkpoint ({}) to resume from; a new run \
                     starts at epoch 1",
                    self.options.out_dir.display(),
                    LAST
                ));
            }
            if files.writer() && files.metrics.exists() {
                truncate_metrics(&files.metrics, 0)?;
            }
            return Ok(Progress {
                epoch: 0,
                step: 0,
                best_val_acc: None,
            });
        };
        if checkpoint.train_options.as_deref() != Some(self.fingerprint.as_str()) {
            bail!(
                "{} was written by a run with other options; resume with the same options (only --epochs, --workers, --log-every and the number of ranks may change)",
                files.last.display()
            );
        }
        self.network
            .restore(&checkpoint.params, &checkpoint.optimizer_state)?;
        truncate_metrics(&files.metrics, checkpoint.epoch)?;
        if self.options.progress {
            let done = match checkpoint.epoch >= self.options.epochs {
                true => format!(
                    "; --epochs {} is reached, so nothing is left to train",
                    self.options.epochs
                ),
                false => String::new(),
            };
            println!(
                "resuming {} at epoch {} (step {}){done}",
                self.options.out_dir.display(),
                checkpoint.epoch,
                checkpoint.step
            );
        }
        Ok(Progress {
            epoch: checkpoint.epoch,
            step: checkpoint.step,
            best_val_acc: checkpoint.best_val_acc,
        })
    }
}
