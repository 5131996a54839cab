//! Training: optimizers and schedules, the trainer loop, evaluation, checkpoints,
//! metrics and curves.

pub mod checkpoint;
pub mod curves;
pub mod dataset;
pub mod evaluate;
pub mod metrics;
mod network;
pub mod optim;
pub mod run_lock;
pub mod schedule;
pub mod trainer;

pub use dataset::{DataOptions, DatasetKind};
pub use optim::{OptimizerConfig, OptimizerKind};
pub use schedule::{Schedule, ScheduleKind, ScheduleName};
pub use trainer::{train, TrainOptions, TrainSummary};
