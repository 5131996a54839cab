//! Stopping a run that diverged, before a non-finite network overwrites the last good
//! checkpoint: the loss is checked as it is read back, the weights after each epoch.

use std::path::Path;

use anyhow::bail;

use crate::graph::ParamStore;

/// The error that stops a run whose loss became `loss`; `diverged` names the ranks it
/// came from (of `ranks`), `at` is (epoch, step), `last` the checkpoint that is kept.
pub(super) fn diverged_loss(
    loss: f64,
    diverged: &[usize],
    ranks: usize,
    (epoch, step): (usize, usize),
    lr: f64,
    last: &Path,
) -> anyhow::Error {
    let ranks = match ranks {
        1 => String::new(),
        _ => format!(" on rank(s) {diverged:?}"),
    };
    anyhow::anyhow!(
        "the loss became {loss}{ranks} at epoch {epoch} by step {step} (learning rate {lr:.4}); \
         training stopped and the last good checkpoint {} was kept; lower --lr or check the data",
        last.display()
    )
}

/// Batch norm can keep the loss finite while the weights have already overflowed.
pub(super) fn check_finite(
    weights: &ParamStore,
    epoch: usize,
    lr: f64,
    last: &Path,
) -> anyhow::Result<()> {
    if let Some((name, _, _)) = weights
        .iter()
        .find(|(_, _, v)| v.iter().any(|x| !x.is_finite()))
    {
        bail!(
            "the weights became non-finite in epoch {epoch} (first: {name}; learning rate {lr:.4}); \
             training stopped and the last good checkpoint {} was kept; lower --lr or check the data",
            last.display()
        );
    }
    Ok(())
}
