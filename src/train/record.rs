//! What a finished epoch leaves behind: its `EpochMetrics`, printed as the epoch line,
//! appended to `metrics.jsonl` and logged to TensorBoard, the checkpoints (`last`, and
//! `best` when validation improved), the redrawn curves and the confusion matrix of the
//! epoch's evaluation. Only rank 0 writes.

use std::time::Instant;

use super::confusion::plot_confusion;
use super::curves::plot_curves;
use super::epoch::EpochTally;
use super::epoch_line::format_epoch_line;
use super::epoch_metrics::EpochMetrics;
use super::evaluate::EvalResult;
use super::metrics::append_metrics;
use super::run::{Progress, Run};
use super::run_files::{CONFUSION, CURVES, STEPS};
use super::steps::read_steps;
use crate::graph::ParamStore;
use crate::weights::checkpoint::Checkpoint;

impl Run<'_> {
    pub(super) fn epoch_metrics(
        &self,
        epoch: usize,
        tally: &EpochTally,
        val: Option<&EvalResult>,
        test: Option<&EvalResult>,
        epoch_start: Instant,
    ) -> EpochMetrics {
        EpochMetrics {
            epoch,
            lr: tally.lr,
            train_loss: tally.metrics.mean_loss(),
            train_acc: tally.metrics.accuracy(),
            val_loss: val.map(|v| v.loss),
            val_acc: val.map(|v| v.top1),
            val_top5: val.map(|v| v.top5),
            test_loss: test.map(|t| t.loss),
            test_acc: test.map(|t| t.top1),
            test_top5: test.map(|t| t.top5),
            seconds: epoch_start.elapsed().as_secs_f64(),
            images_per_sec: tally.metrics.samples as f64 / tally.seconds.max(1e-9),
            bad_files: tally.bad_files,
            global_batch: self.options.batch_size * self.replicas.count(),
            ranks: self.replicas.count(),
        }
    }

    /// Logs the epoch and saves the checkpoint and curves (rank 0).
    pub(super) fn record(
        &self,
        metrics: EpochMetrics,
        history: &mut Vec<EpochMetrics>,
        progress: &mut Progress,
        weights: ParamStore,
        val: Option<&EvalResult>,
    ) -> anyhow::Result<()> {
        let improved = note_best(progress, val);
        if !self.files.writer() {
            return Ok(());
        }
        if self.options.progress {
            println!("{}", format_epoch_line(&metrics, self.options.epochs));
        }
        // Metrics first, checkpoint second: a kill in between leaves a metrics line past
        // the checkpoint, which --resume truncates before redoing the epoch.
        append_metrics(&self.files.metrics, &metrics)?;
        self.tensorboard_epoch(&metrics)?;
        history.push(metrics);
        let checkpoint = self.checkpoint(weights, progress)?;
        // Without validation nothing says which epoch is best: only `last` is written.
        self.files.save(&checkpoint, improved)?;
        let title = format!(
            "MobileNet V1 {} on {} ({} epochs)",
            self.config.alpha, self.options.dataset, self.options.epochs
        );
        let steps = read_steps(&self.options.out_dir.join(STEPS));
        plot_curves(&self.options.out_dir.join(CURVES), history, &steps, &title)?;
        Ok(())
    }

    /// Everything a resume needs: the weights, the optimizer state, the progress, the
    /// preprocessing and the options' fingerprint.
    fn checkpoint(&self, weights: ParamStore, progress: &Progress) -> anyhow::Result<Checkpoint> {
        Ok(Checkpoint {
            config: self.config.clone(),
            params: weights,
            optimizer_state: self.network.train.read_opt_state()?,
            epoch: progress.epoch,
            step: progress.step,
            best_val_acc: progress.best_val_acc,
            normalize: self.normalize.clone(),
            crop_pct: self.options.data.crop_pct,
            class_names: self.data.class_names.clone(),
            train_options: Some(self.fingerprint.clone()),
        })
    }

    /// Redraws confusion.png from the epoch's test evaluation, else its validation
    /// (rank 0); nothing without either.
    pub(super) fn draw_confusion(
        &self,
        epoch: usize,
        test: Option<&EvalResult>,
        val: Option<&EvalResult>,
    ) -> anyhow::Result<()> {
        let split = test.map(|t| ("test", t)).or(val.map(|v| ("validation", v)));
        let Some((name, result)) = split.filter(|_| self.files.writer()) else {
            return Ok(());
        };
        let title = format!(
            "Confusion matrix: {name} split after epoch {epoch} ({} images, % of each true class)",
            result.count
        );
        let path = self.options.out_dir.join(CONFUSION);
        plot_confusion(&path, &result.confusion, &self.data.class_names, &title)?;
        Ok(())
    }
}

/// Keeps the best validation accuracy in `progress`; whether `val` improved on it.
fn note_best(progress: &mut Progress, val: Option<&EvalResult>) -> bool {
    let improved = match (val, progress.best_val_acc) {
        (Some(v), Some(best)) => v.top1 > best,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if improved {
        progress.best_val_acc = val.map(|v| v.top1);
    }
    improved
}
