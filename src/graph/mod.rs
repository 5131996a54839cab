//! The graph builder: tensors as ids with shapes, ops added by name, shapes checked as the
//! graph is built. `compile` turns it into a `Plan` that runs on the GPU; `TrainPlan`
//! compiles the same graph for training.
//!
//! Lower files first: `node`, `error`, `shapes`, `limits` and `buffer_range` hold the
//! shared pieces; `kernel_choice` and `steps` turn dispatches into pre-built steps,
//! `traffic` counting the bytes each one reads and writes; `chunks` and `chunked_steps`
//! split ops over the batch; `params` and `param_buffers` hold weights on the CPU and
//! GPU, `flat` packs tensors into one buffer at aligned offsets; `builder`, `forward_pairs`, `memory` and `plan` make the inference plan (`forward_pairs`: nodes that run in one dispatch with the next), `train_plan` the training
//! one, `replicas` what data-parallel training needs; `dispatch_run` runs a few dispatches
//! on buffers of the caller's own, outside any graph (kernel tests), and `dispatch_plan`
//! compiles a chain of layers given by their dispatches (the int8 network).

mod buffer_range;
mod builder;
mod chunked_steps;
mod chunks;
mod dispatch_plan;
mod dispatch_run;
mod error;
mod flat;
mod forward_pairs;
mod kernel_choice;
mod limits;
mod memory;
mod node;
mod param_buffers;
mod params;
mod plan;
mod replicas;
mod shapes;
mod steps;
mod timestamps;
mod traffic;
mod train_plan;

pub use builder::GraphBuilder;
pub use dispatch_plan::{DispatchPlan, PlannedLayer};
#[doc(hidden)]
pub use dispatch_run::{run_dispatches, SlotData};
pub use error::GraphError;
pub use memory::MemoryReport;
pub use node::{Node, ParamInfo, TensorId, TensorInfo};
pub use param_buffers::ParamBuffers;
pub use params::ParamStore;
pub use plan::{Plan, RunTiming};
pub use replicas::{PendingSum, ReplicaError, Replicas, Solo, StepTiming};
pub use traffic::{Bytes, PhaseTraffic, StepTraffic, TrainTraffic};
pub use train_plan::{argmax, Gradients, RunningMetrics, StepOutput, TrainConfig, TrainPlan};
