//! A run's `steps.jsonl`: the training loss, accuracy and learning rate at every read-back
//! of the running metrics (every few dozen steps), for the curves' per-step line.

use std::path::Path;

use super::metrics::{append_line, MetricsError};

/// The file's name in a run directory.
pub use super::run_files::STEPS;

/// One read-back of the running metrics. Only finite losses are logged: a run whose loss
/// is not finite stops there.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepMetrics {
    /// Optimizer steps completed in the run.
    pub step: usize,
    /// Epochs completed, with the fraction of the current one: 1.5 is halfway through the
    /// second epoch, so the epoch records (at 1, 2, ...) sit on the same axis.
    pub epoch: f64,
    /// The learning rate of the last step.
    pub lr: f64,
    /// Mean training loss and accuracy (a fraction) over the steps since the previous record.
    pub loss: f64,
    pub acc: f64,
}

/// Appends one record; a torn last line left by a kill is cut off first.
pub fn append_step(path: &Path, record: &StepMetrics) -> Result<(), MetricsError> {
    let line = serde_json::to_vec(record).map_err(|error| MetricsError::Encode {
        epoch: record.epoch as usize,
        error,
    })?;
    append_line(path, line, |tail| {
        serde_json::from_slice::<StepMetrics>(tail).is_ok()
    })
}

/// The records in step order. A resumed run redoes the steps after its checkpoint, so a
/// record replaces those at or past its step. Lenient, because the file only feeds a
/// picture: a missing or unreadable file is no records, an unreadable line is skipped.
pub fn read_steps(path: &Path) -> Vec<StepMetrics> {
    let Ok(content) = std::fs::read(path) else {
        return Vec::new();
    };
    let mut steps: Vec<StepMetrics> = Vec::new();
    for line in content.split(|&b| b == b'\n') {
        let Ok(record) = serde_json::from_slice::<StepMetrics>(line) else {
            continue;
        };
        while steps.last().is_some_and(|s| s.step >= record.step) {
            steps.pop();
        }
        steps.push(record);
    }
    steps
}
