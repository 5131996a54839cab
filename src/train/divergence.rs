//! Stopping a run that diverged, before a non-finite network overwrites the last good
//! checkpoint: the loss is checked as it is read back, the weights after each epoch.

use std::path::Path;

use anyhow::bail;

use crate::graph::ParamStore;

/// The error that stops a run whose loss became `loss`; `diverged` names the ranks it
/// came from (of `ranks`), `at` is (epoch from 1, step), `last` the checkpoint that is kept.
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
         {}; lower --lr or check the data",
        what_is_kept(epoch, last)
    )
}

/// What a run stopped in `epoch` (from 1) leaves: every finished epoch wrote `last`, so
/// there is a checkpoint unless the run stopped in its first epoch.
fn what_is_kept(epoch: usize, last: &Path) -> String {
    match epoch {
        0 | 1 => "training stopped in the first epoch, before any checkpoint was written".into(),
        _ => format!(
            "training stopped and the last good checkpoint {} (epoch {}) was kept",
            last.display(),
            epoch - 1
        ),
    }
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
             {}; lower --lr or check the data",
            what_is_kept(epoch, last)
        );
    }
    Ok(())
}
