//! Everything that can go wrong building, compiling or running a graph.

use super::node::TensorId;
use crate::gpu::GpuError;

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("op {op:?} ({kind}) cannot take input of shape {input:?}: {reason}")]
    Shape {
        op: String,
        kind: &'static str,
        input: Vec<usize>,
        reason: String,
    },
    #[error("an op named {0:?} already exists in this graph; op names must be unique")]
    DuplicateName(String),
    #[error("tensor id {0:?} does not belong to this graph")]
    UnknownTensor(TensorId),
    #[error("the graph needs exactly one input, it has {0}")]
    InputCount(usize),
    #[error("the graph has no outputs; mark at least one with GraphBuilder::output")]
    NoOutputs,
    #[error(
        "tensor {tensor:?} {shape:?} needs {bytes} bytes, more than this adapter's \
         {limit_name} of {limit} bytes; the largest batch that fits is {max_batch}"
    )]
    TooLarge {
        tensor: String,
        shape: Vec<usize>,
        bytes: u64,
        limit: u64,
        /// Which of the adapter's limits: max_storage_buffer_binding_size for tensors an op
        /// binds whole (training), max_buffer_size for those it may bind in chunks.
        limit_name: &'static str,
        max_batch: usize,
    },
    #[error(
        "op {op:?}: {samples} sample(s), the fewest a chunk of its batch may hold, need \
         {bytes} bytes in one binding, more than this adapter's {limit}; lower the resolution \
         or width"
    )]
    ChunkTooLarge {
        op: String,
        samples: usize,
        bytes: u64,
        limit: u64,
    },
    #[error("op {op:?} cannot run over chunks of the batch: {reason}")]
    Chunking { op: String, reason: String },
    #[error("no parameter named {0:?} in this graph")]
    UnknownParam(String),
    #[error("parameter problems: {}", .0.join("; "))]
    Params(Vec<String>),
    #[error("input has {got} values; shape {shape:?} needs {expected}")]
    InputLength {
        got: usize,
        expected: usize,
        shape: Vec<usize>,
    },
    #[error("op {op:?}: shader entry {entry} reads binding {binding} ({}), which this plan cannot provide", slot.as_deref().unwrap_or("no slot given"))]
    Binding {
        op: String,
        entry: String,
        binding: u32,
        slot: Option<String>,
    },
    #[error("training needs a chain of ops from the input to the loss; {0}")]
    NotAChain(String),
    #[error("labels: {0}")]
    Labels(String),
    #[error("data-parallel training: {0}")]
    Replicas(String),
    /// A `DispatchPlan`'s layers name a tensor it does not have.
    #[error("layer {layer:?} names tensor {tensor}; the plan has {count}")]
    UnknownPlanTensor {
        layer: String,
        tensor: usize,
        count: usize,
    },
    #[error(transparent)]
    Gpu(#[from] GpuError),
}
