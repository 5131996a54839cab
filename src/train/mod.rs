//! Training: optimizers and schedules, the trainer loop, evaluation, checkpoints,
//! metrics and curves.

pub mod checkpoint;
pub mod curves;
pub mod dataset;
pub mod evaluate;
pub mod launch;
pub mod metrics;
#[cfg(feature = "mpi")]
pub mod mpi;
mod network;
pub mod optim;
pub mod replicas;
pub mod run_lock;
pub mod schedule;
pub mod trainer;

pub use dataset::{DataOptions, DatasetKind};
pub use launch::Launch;
pub use optim::{OptimizerConfig, OptimizerKind};
pub use replicas::{ParallelOptions, DEFAULT_BUCKET_BYTES};
pub use schedule::{Schedule, ScheduleKind, ScheduleName};
pub use trainer::{train, train_replicated, TrainOptions, TrainSummary};
