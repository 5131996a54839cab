//! A compiled training graph: forward (batch-statistics BN), softmax cross-entropy,
//! backward and optimizer update, all pre-built and run as one submit per step.
//!
//! Every forward activation is kept for the backward pass, except the output of a batch
//! norm whose next node applies it as it loads the batch norm's input (`bn_fusion`), which
//! is never written; activation gradients live in two ping-pong buffers (the graph is a
//! chain, so only two are alive at a time).
//!
//! Compiling goes `layout` (shapes, chunks), `buffers` (allocation), `phases` (the
//! dispatch list) and `replication` (data-parallel exchanges), put together in `build`;
//! `step` runs a step, `readback` reads its results back and `traffic` counts what a step
//! reads and writes.

mod bn_fusion;
mod buffers;
mod build;
mod config;
mod layout;
mod phases;
mod readback;
mod replication;
mod results;
mod step;
mod traffic;

pub use build::TrainPlan;
pub use config::TrainConfig;
pub use results::{argmax, Gradients, RunningMetrics, StepOutput};
