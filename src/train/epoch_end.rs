//! From a trained epoch to its figures: the weights settled over the replicas and checked
//! (finite, identical on every rank), then a split evaluated, sharded over the replicas.

use indicatif::ProgressBar;

use super::divergence::check_finite;
use super::evaluate::{evaluate_reporting, EvalResult};
use super::replicas::{check_replicas_agree, pooled_eval};
use super::run::Run;
use crate::data::DataSource;
use crate::graph::ParamStore;

impl Run<'_> {
    /// The epoch's weights, made ready for evaluation and checkpointing: running
    /// statistics averaged over the replicas, checked finite and identical on every rank.
    pub(super) fn settle_weights(&self, epoch: usize, lr: f64) -> anyhow::Result<ParamStore> {
        self.network.average_running_stats(self.replicas)?;
        let weights = self.network.weights()?;
        check_finite(&weights, epoch, lr, &self.files.last)?;
        check_replicas_agree(self.replicas, &weights, epoch)?;
        self.network.prepare_eval(&weights)?;
        Ok(weights)
    }

    /// Evaluates a split, sharded over the replicas.
    pub(super) fn evaluate(
        &self,
        split: Option<&DataSource>,
    ) -> anyhow::Result<Option<EvalResult>> {
        let Some(source) = split else {
            return Ok(None);
        };
        let hidden = ProgressBar::hidden();
        let local = evaluate_reporting(
            &self.network.eval,
            source.clone(),
            self.eval_loader.clone(),
            &mut |bad| self.report_bad_files(std::slice::from_ref(bad), &hidden),
        )?;
        Ok(Some(pooled_eval(self.replicas, local)?))
    }
}
