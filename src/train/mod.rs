//! Training: optimizers and schedules, the trainer loop, evaluation, checkpoints,
//! metrics and curves.
//!
//! The loop (`trainer`) drives a `Run` (`run`) through its steps: `resume`, `epoch`,
//! `epoch_end`, `record`, with `console` printing, `divergence` stopping a run whose
//! numbers are no longer finite, and `run_events` logging to TensorBoard (the event file
//! format is `tensorboard`). `network` holds what runs on the GPU, `replicas` the
//! collectives of a data-parallel run. The run's pictures are `curves` (from `metrics`
//! and the per-step log, `steps`) and `confusion`, drawn through `plot`.

pub mod confusion;
mod console;
pub mod curves;
pub mod dataset;
mod divergence;
mod epoch;
mod epoch_end;
mod epoch_line;
mod epoch_metrics;
pub mod evaluate;
pub mod launch;
pub mod metrics;
#[cfg(feature = "mpi")]
pub mod mpi;
mod network;
pub mod optim;
mod options;
mod parallel;
mod plot;
mod record;
pub mod replicas;
mod resume;
mod run;
mod run_events;
mod run_files;
pub mod run_lock;
pub mod schedule;
pub mod steps;
pub mod tensorboard;
pub mod trainer;

/// Run checkpoints are a weight-file format; kept reachable here, where trainers look.
pub use crate::weights::checkpoint;
pub use dataset::{DataOptions, DatasetKind};
pub use launch::Launch;
pub use optim::{OptimizerConfig, OptimizerKind};
pub use options::{TrainOptions, DEFAULT_LOG_EVERY};
pub use parallel::{ParallelOptions, DEFAULT_BUCKET_BYTES};
pub use schedule::{Schedule, ScheduleKind, ScheduleName};
pub use trainer::{train, train_replicated, TrainSummary};
