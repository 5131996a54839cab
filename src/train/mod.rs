//! Training: optimizers and schedules, the trainer loop, checkpoints, metrics and curves.

pub mod curves;
pub mod metrics;
