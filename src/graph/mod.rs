//! The graph builder: tensors as ids with shapes, ops added by name, shapes checked as the
//! graph is built. `compile` turns it into a `Plan` that runs on the GPU.

mod chunked_steps;
mod chunks;
mod kernel_choice;
mod param_buffers;
mod params;
mod plan;
mod replicas;
mod replication;
mod steps;
mod train_plan;

pub use param_buffers::ParamBuffers;
pub use params::ParamStore;
pub use plan::{MemoryReport, Plan, RunTiming};
pub use replicas::{PendingSum, ReplicaError, Replicas, Solo, StepTiming};
pub use train_plan::{argmax, Gradients, RunningMetrics, StepOutput, TrainConfig, TrainPlan};

use crate::gpu::GpuError;
use crate::ops::{
    BatchNorm, Conv2d, Dense, Depthwise, GlobalAvgPool, OpKind, ParamRole, Pointwise, Softmax,
};
use std::collections::HashSet;

/// A tensor in a graph, valid only for the builder that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TensorId(usize);

#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
}

/// A named op, its input and output tensors and the parameters it owns.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub kind: OpKind,
    pub input: TensorId,
    pub output: TensorId,
    /// Indices into `GraphBuilder::params()`, in the op's `params()` order.
    pub params: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct ParamInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: ParamRole,
}

impl ParamInfo {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

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
    #[error(transparent)]
    Gpu(#[from] GpuError),
}

/// Builds a graph op by op. Every op checks its input shape when added.
///
/// Tensors are NHWC with the batch first; `compile` plans every buffer and bind group
/// once, and the resulting [`Plan`] runs batches. [`TrainPlan`] compiles the same graph
/// for training (see `examples/custom_graph.rs`).
///
/// ```
/// use mobilenet_wgpu::ops::{Activation, BatchNorm, Dense, Depthwise, Padding, Pointwise};
/// use mobilenet_wgpu::{Gpu, GraphBuilder, ParamStore};
///
/// // A depthwise separable block and a classifier on 2 images of 8x8x4.
/// let mut g = GraphBuilder::new();
/// let x = g.input("x", &[2, 8, 8, 4]);
/// let dw = Depthwise { kernel: 3, stride: 2, padding: Padding::Symmetric, fused: None };
/// let x = g.depthwise("dw", x, dw)?;
/// let bn = BatchNorm { eps: 1e-5, activation: Activation::Relu };
/// let x = g.batch_norm("dw_bn", x, bn.clone())?;
/// let x = g.pointwise("pw", x, Pointwise { out_channels: 16, fused: None })?;
/// let x = g.batch_norm("pw_bn", x, bn)?;
/// assert_eq!(g.shape(x)?, &[2, 4, 4, 16]);
/// let x = g.global_avg_pool("pool", x)?;
/// let logits = g.dense("fc", x, Dense { out_features: 3 })?;
/// let probs = g.softmax("softmax", logits)?;
/// g.output(probs)?;
///
/// let gpu = Gpu::new()?;
/// let plan = g.compile(&gpu)?;
/// plan.load_params(&ParamStore::initialize(&g, 0))?; // He-normal weights, seeded
/// let outputs = plan.run(&vec![0.5; 2 * 8 * 8 * 4])?;
/// assert_eq!(outputs[0].len(), 2 * 3);
/// let sum: f32 = outputs[0][..3].iter().sum();
/// assert!((sum - 1.0).abs() < 1e-4);
/// # Ok::<(), mobilenet_wgpu::GraphError>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct GraphBuilder {
    tensors: Vec<TensorInfo>,
    nodes: Vec<Node>,
    params: Vec<ParamInfo>,
    inputs: Vec<TensorId>,
    outputs: Vec<TensorId>,
    names: HashSet<String>,
}

impl GraphBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn new_tensor(&mut self, name: &str, shape: Vec<usize>) -> TensorId {
        self.tensors.push(TensorInfo {
            name: name.to_string(),
            shape,
        });
        TensorId(self.tensors.len() - 1)
    }

    /// Declares the graph input: NHWC `[batch, height, width, channels]` for images, or
    /// `[batch, features]`. The first dimension is the batch.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> TensorId {
        let id = self.new_tensor(name, shape.to_vec());
        self.inputs.push(id);
        id
    }

    /// Adds an op reading `input`; its parameters are named `<name>.<suffix>`.
    pub fn add(
        &mut self,
        name: &str,
        kind: OpKind,
        input: TensorId,
    ) -> Result<TensorId, GraphError> {
        let input_shape = self.tensor(input)?.shape.clone();
        if self.names.contains(name) {
            return Err(GraphError::DuplicateName(name.to_string()));
        }
        let output_shape = kind
            .output_shape(&input_shape)
            .map_err(|reason| GraphError::Shape {
                op: name.to_string(),
                kind: kind.type_name(),
                input: input_shape.clone(),
                reason,
            })?;
        let mut params = Vec::new();
        for spec in kind.params(&input_shape) {
            self.params.push(ParamInfo {
                name: format!("{name}.{}", spec.suffix),
                shape: spec.shape,
                role: spec.role,
            });
            params.push(self.params.len() - 1);
        }
        let output = self.new_tensor(name, output_shape);
        self.names.insert(name.to_string());
        self.nodes.push(Node {
            name: name.to_string(),
            kind,
            input,
            output,
            params,
        });
        Ok(output)
    }

    pub fn conv2d(&mut self, name: &str, x: TensorId, op: Conv2d) -> Result<TensorId, GraphError> {
        self.add(name, OpKind::Conv2d(op), x)
    }

    pub fn depthwise(
        &mut self,
        name: &str,
        x: TensorId,
        op: Depthwise,
    ) -> Result<TensorId, GraphError> {
        self.add(name, OpKind::Depthwise(op), x)
    }

    pub fn pointwise(
        &mut self,
        name: &str,
        x: TensorId,
        op: Pointwise,
    ) -> Result<TensorId, GraphError> {
        self.add(name, OpKind::Pointwise(op), x)
    }

    pub fn batch_norm(
        &mut self,
        name: &str,
        x: TensorId,
        op: BatchNorm,
    ) -> Result<TensorId, GraphError> {
        self.add(name, OpKind::BatchNorm(op), x)
    }

    pub fn global_avg_pool(&mut self, name: &str, x: TensorId) -> Result<TensorId, GraphError> {
        self.add(name, OpKind::GlobalAvgPool(GlobalAvgPool), x)
    }

    pub fn dense(&mut self, name: &str, x: TensorId, op: Dense) -> Result<TensorId, GraphError> {
        self.add(name, OpKind::Dense(op), x)
    }

    pub fn softmax(&mut self, name: &str, x: TensorId) -> Result<TensorId, GraphError> {
        self.add(name, OpKind::Softmax(Softmax), x)
    }

    /// Marks a tensor as a graph output: it is kept and read back after each run.
    pub fn output(&mut self, id: TensorId) -> Result<(), GraphError> {
        self.tensor(id)?;
        if !self.outputs.contains(&id) {
            self.outputs.push(id);
        }
        Ok(())
    }

    pub fn tensor(&self, id: TensorId) -> Result<&TensorInfo, GraphError> {
        self.tensors.get(id.0).ok_or(GraphError::UnknownTensor(id))
    }

    pub fn shape(&self, id: TensorId) -> Result<&[usize], GraphError> {
        Ok(&self.tensor(id)?.shape)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn params(&self) -> &[ParamInfo] {
        &self.params
    }

    pub fn inputs(&self) -> &[TensorId] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[TensorId] {
        &self.outputs
    }

    /// Plans buffers, builds bind groups and the dispatch list on `gpu`.
    pub fn compile(&self, gpu: &crate::gpu::Gpu) -> Result<Plan, GraphError> {
        Plan::compile(self, gpu)
    }
}
