//! What a run shows TensorBoard (`tensorboard --logdir runs/`), written by rank 0 into
//! `RUN_DIR/events.out.tfevents.*` (the format is `tensorboard.rs`):
//!
//! - every `--log-every` global steps and at the end of each epoch, at the global step:
//!   `train/loss` and `train/accuracy` (means over the steps since the previous point) and
//!   `train/learning_rate` (the last of those steps');
//! - after each epoch, at the epoch number (1-based, as in metrics.jsonl): the `epoch/*`
//!   tags of `epoch_scalars`, the values metrics.jsonl holds.
//!
//! A resumed run first drops, from the files earlier processes wrote, every point past the
//! checkpoint it resumes from (they are logged again), then writes a file of its own: no
//! step appears twice.

use super::epoch_metrics::EpochMetrics;
use super::run::{Progress, Run};
use super::tensorboard::{event_files, retain_events, Event, EventFile};
use crate::graph::RunningMetrics;

/// Tags logged per epoch start with this; their steps count epochs, not steps.
const EPOCH_PREFIX: &str = "epoch/";

impl Run<'_> {
    /// Opens this process's event file when its first epoch starts, where the run's
    /// progress (new or resumed) is known. Rank 0 only.
    pub(super) fn open_events(&self, progress: &Progress) -> anyhow::Result<()> {
        if !self.files.writer() || self.files.events.get().is_some() {
            return Ok(());
        }
        let dir = &self.options.out_dir;
        for path in event_files(dir)? {
            retain_events(&path, |event| {
                logged_by(event, progress.epoch, progress.step)
            })?;
        }
        let file = EventFile::create(dir)?;
        // Cannot fail: the get() above saw the cell empty.
        let _ = self.files.events.set(file);
        Ok(())
    }

    /// Logs the training figures of the steps up to global `step` (rank 0).
    pub(super) fn tensorboard_step(
        &self,
        step: usize,
        window: &RunningMetrics,
        lr: f64,
    ) -> anyhow::Result<()> {
        let Some(events) = self.files.events.get() else {
            return Ok(());
        };
        if window.samples == 0 {
            return Ok(());
        }
        events.write_scalars(
            step,
            &[
                ("train/loss", window.mean_loss()),
                ("train/accuracy", window.accuracy()),
                ("train/learning_rate", lr),
            ],
        )
    }

    /// Logs an epoch's metrics.jsonl record at its epoch number (rank 0).
    pub(super) fn tensorboard_epoch(&self, metrics: &EpochMetrics) -> anyhow::Result<()> {
        match self.files.events.get() {
            Some(events) => events.write_scalars(metrics.epoch, &epoch_scalars(metrics)),
            None => Ok(()),
        }
    }
}

/// Whether `event` was logged by the time of the checkpoint at (`epoch`, global `step`).
fn logged_by(event: &Event, epoch: usize, step: usize) -> bool {
    let per_epoch = event
        .summary
        .as_ref()
        .and_then(|s| s.value.first())
        .is_some_and(|v| v.tag.starts_with(EPOCH_PREFIX));
    let limit = if per_epoch { epoch } else { step };
    usize::try_from(event.step).is_ok_and(|s| s <= limit)
}

/// The per-epoch tags and their values; evaluation figures when the split was evaluated,
/// the data-parallel shape when there were several ranks.
pub(super) fn epoch_scalars(m: &EpochMetrics) -> Vec<(&'static str, f64)> {
    let mut scalars = vec![
        ("epoch/train_loss", m.train_loss),
        ("epoch/train_accuracy", m.train_acc),
        ("epoch/learning_rate", m.lr),
        ("epoch/images_per_sec", m.images_per_sec),
        ("epoch/seconds", m.seconds),
        ("epoch/bad_files", m.bad_files as f64),
    ];
    let evaluated = [
        ("epoch/val_loss", m.val_loss),
        ("epoch/val_top1", m.val_acc),
        ("epoch/val_top5", m.val_top5),
        ("epoch/test_loss", m.test_loss),
        ("epoch/test_top1", m.test_acc),
        ("epoch/test_top5", m.test_top5),
    ];
    scalars.extend(evaluated.iter().filter_map(|&(tag, v)| Some((tag, v?))));
    if m.ranks > 1 {
        scalars.push(("epoch/global_batch", m.global_batch as f64));
        scalars.push(("epoch/ranks", m.ranks as f64));
    }
    scalars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_parallel_epochs_log_their_shape() {
        let m = EpochMetrics {
            epoch: 2,
            lr: 0.1,
            train_loss: 1.0,
            train_acc: 0.5,
            val_loss: Some(1.5),
            val_acc: Some(0.4),
            val_top5: Some(0.9),
            test_loss: None,
            test_acc: None,
            test_top5: None,
            seconds: 3.0,
            images_per_sec: 100.0,
            bad_files: 1,
            global_batch: 64,
            ranks: 2,
        };
        let tags: Vec<&str> = epoch_scalars(&m).iter().map(|s| s.0).collect();
        assert!(tags.contains(&"epoch/val_top5") && !tags.contains(&"epoch/test_loss"));
        assert!(tags.contains(&"epoch/global_batch") && tags.contains(&"epoch/ranks"));
        let solo = epoch_scalars(&EpochMetrics { ranks: 1, ..m });
        assert!(!solo.iter().any(|s| s.0 == "epoch/ranks"));
    }
}
