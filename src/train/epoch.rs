//! One epoch of training steps, over all replicas: batches in, the learning rate of each
//! step from the schedule, loss and accuracy read back every `--log-every` steps (and
//! logged to TensorBoard, `run_events`).

use std::time::Instant;

use indicatif::ProgressBar;

use super::console::{progress_bar, show_running};
use super::divergence::diverged_loss;
use super::replicas::{common_steps, pooled_metrics};
use super::run::{Progress, Run};
use super::run_files::STEPS;
use super::steps::{append_step, StepMetrics};
use crate::data::BatchLoader;
use crate::graph::{RunningMetrics, StepTiming};

/// What one epoch of training produced, over all replicas.
pub(super) struct EpochTally {
    pub metrics: RunningMetrics,
    pub lr: f64,
    pub bad_files: usize,
    pub seconds: f64,
    /// This replica's data-parallel step times, summed, and the steps they cover.
    pub timing: StepTiming,
    pub timed_steps: usize,
    /// The run's step count when the epoch began, and the epoch's length in steps: where
    /// a logged step sits within the epoch (steps.jsonl).
    pub first_step: usize,
    pub steps_per_epoch: usize,
}

impl Run<'_> {
    /// One epoch of steps. Steps are queued without waiting (a replicated step waits for
    /// its gradients); loss and accuracy accumulate on the GPU and are read back every
    /// `log_every` global steps (progress, logs, divergence check) and at the end.
    pub(super) fn train_epoch(&self, progress: &mut Progress) -> anyhow::Result<EpochTally> {
        let (options, epoch) = (self.options, progress.epoch);
        let epoch_start = Instant::now();
        self.open_events(progress)?;
        let loader = BatchLoader::new(self.data.train.clone(), self.train_loader.clone(), epoch)?;
        let steps_per_epoch = common_steps(self.replicas, loader.total())?;
        let show = options.draws_bars(self.files.writer());
        let bar = progress_bar(show, steps_per_epoch, epoch + 1, options.epochs);
        // The schedule counts steps from the epoch, so a run resumed with another rank
        // count (other steps per epoch) continues where the learning rate was.
        let first_step = epoch * steps_per_epoch;
        let schedule = |i: usize| {
            options
                .schedule
                .lr_at(first_step + i, steps_per_epoch, options.epochs)
        };
        let mut tally = EpochTally {
            metrics: RunningMetrics::default(),
            lr: schedule(0),
            bad_files: 0,
            seconds: 0.0,
            timing: StepTiming::default(),
            timed_steps: 0,
            first_step: progress.step,
            steps_per_epoch,
        };
        for (i, batch) in loader.take(steps_per_epoch).enumerate() {
            let batch = batch?;
            self.report_bad_files(&batch.bad, &bar);
            tally.bad_files += batch.bad.len();
            tally.lr = schedule(i);
            let lr = tally.lr as f32;
            if let Some(timing) =
                self.network
                    .step(&batch.images, &batch.labels, lr, self.replicas)?
            {
                tally.timing += timing;
                tally.timed_steps += 1;
            }
            progress.step += 1;
            bar.inc(1);
            if progress.step.is_multiple_of(options.log_every) {
                self.tally_logged(&mut tally, (epoch + 1, progress.step), &bar)?;
                show_running(&bar, &tally.metrics, epoch_start);
            }
        }
        self.tally_logged(&mut tally, (epoch + 1, progress.step), &bar)?;
        tally.bad_files = self.replicas.sum(&[tally.bad_files as f64])?[0] as usize;
        bar.finish_and_clear();
        tally.seconds = epoch_start.elapsed().as_secs_f64();
        Ok(tally)
    }

    /// Adds the metrics accumulated on the GPUs since the last read to `tally`; stops
    /// training when their loss is not finite. `at` is (epoch, step) for the message.
    fn tally_logged(
        &self,
        tally: &mut EpochTally,
        at: (usize, usize),
        bar: &ProgressBar,
    ) -> anyhow::Result<()> {
        let local = self.network.train.take_metrics()?;
        let (logged, diverged) = pooled_metrics(self.replicas, local)?;
        tally.metrics += logged;
        // Logged before the check, so that TensorBoard shows where the loss broke.
        self.tensorboard_step(at.1, &logged, tally.lr)?;
        let loss = logged.mean_loss();
        if loss.is_finite() {
            return self.log_step(tally, &logged, at);
        }
        bar.abandon();
        let ranks = self.replicas.count();
        Err(diverged_loss(
            loss,
            &diverged,
            ranks,
            at,
            tally.lr,
            &self.files.last,
        ))
    }

    /// Appends what the steps since the last read-back measured to steps.jsonl (rank 0),
    /// for the curves' per-step line. `at` is (epoch, step), the epoch counted from 1.
    fn log_step(
        &self,
        tally: &EpochTally,
        logged: &RunningMetrics,
        at: (usize, usize),
    ) -> anyhow::Result<()> {
        if logged.samples == 0 || !self.files.writer() {
            return Ok(());
        }
        let done = at.1.saturating_sub(tally.first_step) as f64;
        let record = StepMetrics {
            step: at.1,
            epoch: (at.0 - 1) as f64 + done / tally.steps_per_epoch.max(1) as f64,
            lr: tally.lr,
            loss: logged.mean_loss(),
            acc: logged.accuracy(),
        };
        append_step(&self.options.out_dir.join(STEPS), &record)?;
        Ok(())
    }
}
