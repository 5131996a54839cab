//! The training step's dispatch list, built once: forward (batch statistics), loss and
//! metrics, backward and the optimizer update, each phase a range of the steps.

use super::buffers::Buffers;
use super::config::TrainConfig;
use super::layout::Layout;
use crate::gpu::Gpu;
use crate::graph::buffer_range::BufferRange;
use crate::graph::builder::GraphBuilder;
use crate::graph::chunked_steps::ChunkedNode;
use crate::graph::error::GraphError;
use crate::graph::param_buffers::ParamBuffers;
use crate::graph::shapes::tensor_bytes;
use crate::graph::steps::{Step, StepBuilder};
use crate::ops::{accumulate_metrics, cross_entropy, Slot};
use std::ops::Range;

/// Which pass a batch-norm exchange belongs to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum BnPass {
    Forward,
    Backward,
}

/// The compiled steps and where each phase starts and ends.
pub(super) struct Phases {
    pub(super) steps: Vec<Step>,
    pub(super) uniform_bytes: u64,
    pub(super) forward: Range<usize>,
    pub(super) loss_steps: Range<usize>,
    pub(super) backward: Range<usize>,
    pub(super) update: Range<usize>,
    /// Under sync-BN: (step after which, node index, pass) of each batch-norm exchange.
    pub(super) bn_exchanges: Vec<(usize, usize, BnPass)>,
    /// For each node, the step after which its backward dispatches are done.
    pub(super) backward_done: Vec<usize>,
}

pub(super) fn build_phases(
    gpu: &Gpu,
    graph: &GraphBuilder,
    layout: &Layout,
    buffers: &Buffers,
    params: &ParamBuffers,
    config: &TrainConfig,
) -> Result<Phases, GraphError> {
    let phases = PhaseBuilder {
        graph,
        layout,
        buffers,
        params,
        config,
        limit: gpu.binding_limit(),
    };
    let mut bn_exchanges = Vec::new();
    let mut builder = StepBuilder::new(gpu);
    phases.add_forward(&mut builder, &mut bn_exchanges)?;
    let forward = 0..builder.len();
    phases.add_loss(&mut builder)?;
    let loss_steps = forward.end..builder.len();
    let backward_done = phases.add_backward(&mut builder, &mut bn_exchanges)?;
    let backward = loss_steps.end..builder.len();
    phases.add_update(&mut builder)?;
    let update = backward.end..builder.len();
    let (steps, uniform_bytes) = builder.finish()?;
    Ok(Phases {
        steps,
        uniform_bytes,
        forward,
        loss_steps,
        backward,
        update,
        bn_exchanges,
        backward_done,
    })
}

/// What every phase's dispatches bind.
struct PhaseBuilder<'a> {
    graph: &'a GraphBuilder,
    layout: &'a Layout<'a>,
    buffers: &'a Buffers,
    params: &'a ParamBuffers,
    config: &'a TrainConfig,
    limit: u64,
}

impl PhaseBuilder<'_> {
    fn node_slot(&self, i: usize, slot: Slot) -> Option<wgpu::Buffer> {
        let (layout, params, graph) = (self.layout, self.params, self.graph);
        self.buffers.node_slot(layout, params, graph, i, slot)
    }

    /// Node `i` with its chunks and buffers, for emitting its dispatches.
    fn chunked_node<'a>(
        &'a self,
        i: usize,
        slot: &'a dyn Fn(Slot) -> Option<wgpu::Buffer>,
    ) -> ChunkedNode<'a> {
        let node = &self.layout.nodes[i];
        ChunkedNode {
            name: &node.name,
            kind: &node.kind,
            input: &self.graph.tensors[node.input.0].shape,
            output: &self.graph.tensors[node.output.0].shape,
            chunks: &self.layout.chunks[i],
            limit: self.limit,
            slot,
            prologue: self.layout.prologues[i],
            normalised_by_next: self.layout.normalised_by_next(i),
        }
    }

    /// Whether node `i` pools its batch-norm partial sums with the other replicas.
    fn syncs_bn(&self, i: usize) -> bool {
        let node = &self.layout.nodes[i];
        let input = self.graph.tensors[node.input.0].shape.as_slice();
        self.config.settings.synced_replicas > 1 && node.kind.bn_partials(input).is_some()
    }

    fn add_forward(
        &self,
        builder: &mut StepBuilder,
        bn_exchanges: &mut Vec<(usize, usize, BnPass)>,
    ) -> Result<(), GraphError> {
        for i in 0..self.layout.nodes.len() {
            let slot = |slot| self.node_slot(i, slot);
            let partials_done = self
                .chunked_node(i, &slot)
                .forward(builder, &self.config.settings)?;
            if self.syncs_bn(i) {
                bn_exchanges.push((partials_done, i, BnPass::Forward));
            }
        }
        Ok(())
    }

    /// Cross-entropy on [batch, classes] logits and the running metrics; nothing for
    /// other outputs (those train from a given output gradient).
    fn add_loss(&self, builder: &mut StepBuilder) -> Result<(), GraphError> {
        let (layout, buffers) = (self.layout, self.buffers);
        let (output_id, output_shape) = (layout.output_id, &layout.output_shape);
        if output_shape.len() != 2 {
            return Ok(());
        }
        // The logits' gradient lives in a buffer sized for the largest tensor, which may
        // exceed one binding: bind the logits' part.
        let logits_grad = BufferRange {
            buffer: buffers.grads[layout.grad_of[&output_id]].clone(),
            offset: 0,
            size: Some(tensor_bytes(output_shape).next_multiple_of(16)),
        };
        let loss_slot = |slot| match slot {
            Slot::Input => buffers.acts.get(&output_id).cloned().map(BufferRange::from),
            Slot::Labels => Some(buffers.labels.clone().into()),
            Slot::Loss => Some(buffers.loss.clone().into()),
            Slot::GradInput => Some(logits_grad.clone()),
            Slot::Metrics => Some(buffers.metrics.clone().into()),
            _ => None,
        };
        let (rows, cols) = (output_shape[0], output_shape[1]);
        let batch = layout.batch();
        builder.add("loss", &cross_entropy(rows, cols, batch), loss_slot)?;
        builder.add("metrics", &accumulate_metrics(rows, cols, batch), loss_slot)
    }

    /// Adds the backward dispatches, last node first; returns, for each node, the step
    /// after which its backward dispatches are done.
    fn add_backward(
        &self,
        builder: &mut StepBuilder,
        bn_exchanges: &mut Vec<(usize, usize, BnPass)>,
    ) -> Result<Vec<usize>, GraphError> {
        let mut backward_done = vec![0; self.layout.nodes.len()];
        for i in (0..self.layout.nodes.len()).rev() {
            let input_grad = i > 0 || self.config.input_grad;
            let slot = |slot| self.node_slot(i, slot);
            let partials_done =
                self.chunked_node(i, &slot)
                    .backward(builder, input_grad, &self.config.settings)?;
            if self.syncs_bn(i) {
                bn_exchanges.push((partials_done, i, BnPass::Backward));
            }
            backward_done[i] = builder.len();
        }
        Ok(backward_done)
    }

    fn add_update(&self, builder: &mut StepBuilder) -> Result<(), GraphError> {
        let Some(rule) = &self.config.update else {
            return Ok(());
        };
        let buffers = self.buffers;
        for &p in &self.layout.trainable {
            let info = &self.graph.params[p];
            let decay = self
                .config
                .weight_decay
                .get(&info.name)
                .copied()
                .unwrap_or(0.0);
            let states = &buffers.opt_state[&p];
            builder.add(
                &format!("update {}", info.name),
                &rule.dispatch(info.len(), decay),
                |slot| match slot {
                    Slot::Hyper => Some(buffers.hyper.clone()),
                    Slot::Param(0) => self.params.buffer(&info.name).cloned(),
                    Slot::ParamGrad(0) => Some(buffers.param_grads[&p].buffer.clone()),
                    Slot::OptState(s) => states.get(s).map(|b| b.buffer.clone()),
                    _ => None,
                },
            )?;
        }
        Ok(())
    }
}
