//! The files a run keeps in its directory (`--out`): the last and best checkpoints, the
//! metrics, the curves and the TensorBoard events. Only the writer (rank 0) locks the
//! directory and writes.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::run_lock::RunLock;
use super::tensorboard::EventFile;
use crate::weights::checkpoint::Checkpoint;

pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";
pub const METRICS: &str = "metrics.jsonl";
pub const CURVES: &str = "curves.png";
/// Training loss, accuracy and learning rate at every read-back (see `steps`).
pub const STEPS: &str = "steps.jsonl";
/// The last evaluation's confusion matrix (the test split, else validation).
pub const CONFUSION: &str = "confusion.png";

/// Where a run keeps its files. Only the writer (rank 0) holds the lock and writes.
pub(super) struct RunFiles {
    pub last: PathBuf,
    pub metrics: PathBuf,
    /// This process's TensorBoard event file (`events.out.tfevents.*`), opened by rank 0
    /// when its first epoch starts (`run_events`).
    pub events: OnceCell<EventFile>,
    /// Held while the run lives; None on ranks other than 0.
    lock: Option<RunLock>,
}

impl RunFiles {
    /// The run's files; `writer` (rank 0) creates and locks the directory, other ranks
    /// never touch it (on other machines it need not even exist).
    pub fn create(out_dir: &Path, writer: bool) -> anyhow::Result<RunFiles> {
        let lock = match writer {
            true => {
                std::fs::create_dir_all(out_dir).with_context(|| {
                    format!("cannot create the run directory {}", out_dir.display())
                })?;
                Some(RunLock::acquire(out_dir)?)
            }
            false => None,
        };
        Ok(RunFiles {
            lock,
            last: out_dir.join(LAST),
            metrics: out_dir.join(METRICS),
            events: OnceCell::new(),
        })
    }

    pub fn writer(&self) -> bool {
        self.lock.is_some()
    }

    pub fn checkpoint_to_resume(&self, resume: bool) -> anyhow::Result<Option<Checkpoint>> {
        if !self.writer() || !self.last.exists() {
            return Ok(None);
        }
        if !resume {
            bail!(
                "{} already holds a checkpoint; pass --resume to continue that run, or choose another --out",
                self.last.display()
            );
        }
        Ok(Some(Checkpoint::load(&self.last)?))
    }

    pub fn save(&self, checkpoint: &Checkpoint, as_best: bool) -> anyhow::Result<()> {
        checkpoint.save(&self.last)?;
        if as_best {
            let best = self.last.with_file_name(BEST);
            checkpoint.save(&best)?;
        }
        Ok(())
    }
}
