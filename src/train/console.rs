//! What a run prints besides the epoch line: the progress bar and its running figures,
//! skipped files, the data-parallel banner and rank 0's step timing.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::run::Run;
use crate::data::Batch;
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

/// Bad files are named as they are met, above the progress bar.
pub(super) fn report_bad_files(batch: &Batch, bar: &ProgressBar) {
    for bad in &batch.bad {
        bar.suspend(|| eprintln!("warning: skipped {bad}"));
    }
}

impl Run<'_> {
    /// Rank 0 says how the run is spread before the first epoch.
    pub(super) fn announce(&self) {
        let ranks = self.replicas.count();
        if ranks > 1 && self.files.writer() {
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

    /// Rank 0's share of a data-parallel epoch: compute, gradient sums and how much of
    /// them the backward pass hid, over the `steps` that `timing` sums.
    pub(super) fn report_timing(&self, timing: &StepTiming, steps: usize) {
        if steps == 0 || !self.files.writer() {
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
