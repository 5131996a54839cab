//! The graph builder: tensors as ids with shapes, ops added by name, shapes checked as the
//! graph is built. `compile` (in `plan`) turns it into a `Plan` that runs on the GPU.

use super::error::GraphError;
use super::node::{Node, ParamInfo, TensorId, TensorInfo};
use crate::ops::{BatchNorm, Conv2d, Dense, Depthwise, GlobalAvgPool, OpKind, Pointwise, Softmax};
use std::collections::HashSet;

/// Builds a graph op by op. Every op checks its input shape when added.
///
/// Tensors are NHWC with the batch first; `compile` plans every buffer and bind group
/// once, and the resulting [`Plan`](super::Plan) runs batches.
/// [`TrainPlan`](super::TrainPlan) compiles the same graph for training (see
/// `examples/custom_graph.rs`).
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
/// let logits = g.dense("fc", x, Dense { out_features: 3, read_only: false })?;
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
    pub(super) tensors: Vec<TensorInfo>,
    pub(super) nodes: Vec<Node>,
    pub(super) params: Vec<ParamInfo>,
    pub(super) inputs: Vec<TensorId>,
    pub(super) outputs: Vec<TensorId>,
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
                layout: spec.layout,
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
}
