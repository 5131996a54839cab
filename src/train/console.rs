//! What a run prints besides the epoch line: the progress bar and its running figures,
//! skipped files, notes before the first epoch (no validation split, the data-parallel
//! banner) and rank 0's step timing. With `TrainOptions::progress` off only warnings are
//! printed (on stderr).

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::dataset::DatasetKind;
use super::run::Run;
use super::run_files::{BEST, LAST};
use crate::data::BadSample;
use crate::graph::{RunningMetrics, StepTiming};

/// The epoch's progress bar; hidden unless `enabled`.
pub(super) fn progress_bar(enabled: bool, len: usize, epoch: usize, epochs: usize) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len as u64);
    let style =
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed} < {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("epoch {epoch}/{epochs}"));
    bar
}

/// The bar's message: the epoch's loss, accuracy and throughput so far.
pub(super) fn show_running(bar: &ProgressBar, metrics: &RunningMetrics, epoch_start: Instant) {
    let rate = metrics.samples as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
    bar.set_message(format!(
        "loss {:.4} acc {:.2}% {rate:.0} img/s",
        metrics.mean_loss(),
        100.0 * metrics.accuracy()
    ));
}

impl Run<'_> {
    /// Names each bad file above the progress bar the first time this run meets it, in
    /// training or evaluation; later epochs only count it (the epoch line's "bad files
    /// skipped"), or a bad file in every epoch would bury the run's output.
    pub(super) fn report_bad_files(&self, bad: &[BadSample], bar: &ProgressBar) {
        let mut named = self
            .named_bad
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for sample in bad {
            if named.insert(sample.origin.clone()) {
                bar.suspend(|| eprintln!("warning: skipped {sample} (named once per run)"));
            }
        }
    }

    /// Rank 0 says, before the first epoch, what runs without a validation split and how
    /// the run is spread.
    pub(super) fn announce(&self) {
        if !self.options.progress || !self.files.writer() {
            return;
        }
        if let Some(note) = self.no_validation_note() {
            println!("note: {note}");
        }
        let ranks = self.replicas.count();
        if ranks > 1 {
            println!(
                "data parallel: {ranks} ranks x batch {} = global batch {}, batch norm {}",
                self.options.batch_size,
                ranks * self.options.batch_size,
                if self.options.parallel.sync_bn {
                    "synchronised over all ranks (--sync-bn)"
                } else {
                    "per rank"
                }
            );
        }
    }

    /// Why there is no validation split, and what that means for the checkpoints.
    fn no_validation_note(&self) -> Option<String> {
        if self.data.val.is_some() {
            return None;
        }
        let options = self.options;
        let why = if options.val_fraction == 0.0 {
            "--val-fraction 0".to_string()
        } else if options.dataset == DatasetKind::Shards {
            "shards are not split by --val-fraction, as that would read them twice; pass \
             --val-data with validation shards or a folder for one"
                .to_string()
        } else {
            format!(
                "--val-fraction {} of {} images is none; raise it or pass --val-data",
                options.val_fraction,
                self.data.train.len()
            )
        };
        Some(format!(
            "training without a validation split ({why}); {BEST} is not written, as it \
             follows validation accuracy: {LAST} holds the latest epoch"
        ))
    }

    /// Rank 0's share of a data-parallel epoch: compute, gradient sums and how much of
    /// them the backward pass hid, over the `steps` that `timing` sums.
    pub(super) fn report_timing(&self, timing: &StepTiming, steps: usize) {
        if steps == 0 || !self.files.writer() || !self.options.progress {
            return;
        }
        let per_step = |d: Duration| 1e3 * d.as_secs_f64() / steps as f64;
        let t = timing;
        println!(
            "  rank 0: compute {:.1} ms/step, gradient sums {:.1} ms/step ({:.0}% hidden behind \
             the backward pass), {:.2} MB of gradients per step",
            per_step(t.compute),
            per_step(t.communication),
            100.0 * t.hidden.as_secs_f64() / t.communication.as_secs_f64().max(1e-12),
            t.gradient_bytes as f64 / steps as f64 / 1e6
        );
    }
}
