//! Every buffer a training plan binds, allocated once from its layout: activations,
//! the two gradient ping-pong buffers, scratch, parameter gradients, optimizer state and
//! the small per-step buffers. Parameter gradients and each optimizer state are flat
//! buffers in one layout over the trainable parameters (`FlatLayout`), so the update is
//! one dispatch.

use super::config::TrainConfig;
use super::layout::Layout;
use crate::gpu::{storage_buffer, uniform_storage_buffer, Gpu};
use crate::graph::buffer_range::BufferRange;
use crate::graph::builder::GraphBuilder;
use crate::graph::flat::FlatLayout;
use crate::graph::node::TensorId;
use crate::graph::param_buffers::ParamBuffers;
use crate::graph::shapes::tensor_bytes;
use crate::ops::{Slot, UpdateRule};
use std::collections::{BTreeMap, HashMap};

/// A GPU tensor read back (or restored) by name: its part of a flat buffer.
pub(super) struct NamedBuffer {
    pub name: String,
    pub shape: Vec<usize>,
    pub range: BufferRange,
}

/// Bytes of the running-metrics buffer: loss sum, correct, samples (f32 each), padded.
pub(super) const METRICS_BYTES: u64 = 16;

/// Every buffer the training steps bind.
pub(super) struct Buffers {
    pub(super) acts: HashMap<TensorId, wgpu::Buffer>,
    pub(super) grads: [wgpu::Buffer; 2],
    pub(super) shared: Vec<wgpu::Buffer>,
    /// Per node, per scratch index: its own buffer when the scratch is persistent.
    pub(super) persistent: Vec<Vec<Option<wgpu::Buffer>>>,
    pub(super) persistent_bytes: u64,
    /// Every trainable parameter's gradient, at the offsets of `param_grads`.
    pub(super) grad_flat: wgpu::Buffer,
    /// One flat buffer per state tensor of the update rule, laid out as `grad_flat`.
    pub(super) state_flat: Vec<wgpu::Buffer>,
    /// By parameter index (so in graph order).
    pub(super) param_grads: BTreeMap<usize, NamedBuffer>,
    pub(super) opt_state: BTreeMap<usize, Vec<NamedBuffer>>,
    pub(super) workspace: wgpu::Buffer,
    pub(super) labels: wgpu::Buffer,
    pub(super) loss: wgpu::Buffer,
    pub(super) metrics: wgpu::Buffer,
    pub(super) unused: wgpu::Buffer,
    pub(super) hyper: wgpu::Buffer,
}

/// The optimizer's state (one flat buffer per kind of state, as the update rule names them)
/// and each trainable parameter's ranges in it; none without an update rule.
fn optimizer_state(
    gpu: &Gpu,
    graph: &GraphBuilder,
    layout: &Layout,
    config: &TrainConfig,
    trainable_layout: &FlatLayout,
) -> (Vec<wgpu::Buffer>, BTreeMap<usize, Vec<NamedBuffer>>) {
    let Some(rule) = &config.update else {
        return (Vec::new(), BTreeMap::new());
    };
    let state_flat: Vec<_> = rule
        .state_names()
        .iter()
        .map(|state| {
            let label = format!("optimizer state {state}");
            storage_buffer(gpu, &label, trainable_layout.bytes())
        })
        .collect();
    let opt_state = opt_state(gpu, graph, layout, rule, trainable_layout, &state_flat);
    (state_flat, opt_state)
}

impl Buffers {
    pub(super) fn allocate(
        gpu: &Gpu,
        graph: &GraphBuilder,
        layout: &Layout,
        config: &TrainConfig,
    ) -> Buffers {
        let acts = activations(gpu, graph, layout);
        let (persistent, persistent_bytes) = persistent_scratch(gpu, layout);
        let trainable_layout =
            FlatLayout::new(layout.trainable.iter().map(|&p| graph.params[p].len()));
        let grad_flat = storage_buffer(gpu, "parameter gradients", trainable_layout.bytes());
        let param_grads = param_grads(graph, layout, &trainable_layout, &grad_flat);
        let (state_flat, opt_state) =
            optimizer_state(gpu, graph, layout, config, &trainable_layout);
        let batch_bytes = layout.batch() as u64 * 4;
        Buffers {
            acts,
            grads: [
                storage_buffer(gpu, "gradient ping", layout.grad_bytes),
                storage_buffer(gpu, "gradient pong", layout.grad_bytes),
            ],
            shared: layout
                .shared_bytes
                .iter()
                .enumerate()
                .map(|(i, &bytes)| storage_buffer(gpu, &format!("scratch {i}"), bytes))
                .collect(),
            persistent,
            persistent_bytes,
            grad_flat,
            state_flat,
            param_grads,
            opt_state,
            workspace: storage_buffer(gpu, "workspace", layout.workspace_bytes),
            labels: storage_buffer(gpu, "labels", batch_bytes),
            loss: storage_buffer(gpu, "loss", batch_bytes),
            metrics: storage_buffer(gpu, "running metrics", METRICS_BYTES),
            unused: uniform_storage_buffer(gpu, "unused binding", 16),
            hyper: gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("optimizer hyper-parameters"),
                size: 32,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        }
    }

    /// What `slot` of node `index`'s dispatches binds.
    pub(super) fn node_slot(
        &self,
        layout: &Layout,
        params: &ParamBuffers,
        graph: &GraphBuilder,
        index: usize,
        slot: Slot,
    ) -> Option<BufferRange> {
        let node = &layout.nodes[index];
        match slot {
            Slot::Param(i) => node
                .params
                .get(i)
                .and_then(|&p| params.range(&graph.params[p].name)),
            Slot::ParamGrad(i) => node
                .params
                .get(i)
                .and_then(|p| self.param_grads.get(p))
                .map(|g| g.range.clone()),
            _ => self.node_buffer(layout, index, slot).map(BufferRange::from),
        }
    }

    /// The whole buffer bound to a slot that is not a parameter's.
    fn node_buffer(&self, layout: &Layout, index: usize, slot: Slot) -> Option<wgpu::Buffer> {
        let node = &layout.nodes[index];
        // A node that applies the batch norm before it reads that batch norm's input, and
        // its statistics.
        let prologue = layout.prologues[index].is_some();
        match slot {
            Slot::Input if prologue => self.acts.get(&layout.nodes[index - 1].input).cloned(),
            Slot::InputNorm if prologue => self.node_buffer(layout, index - 1, Slot::Scratch(0)),
            Slot::InputPartials if prologue => {
                self.node_buffer(layout, index - 1, Slot::Scratch(1))
            }
            // The batch norm after this node, whose statistics this node's forward leaves.
            Slot::OutputPartials => self.node_buffer(layout, index + 1, Slot::Scratch(1)),
            // The batch norm after this node, whose input gradient this node's backward
            // applies.
            Slot::OutputNorm => self.node_buffer(layout, index + 1, Slot::Scratch(0)),
            Slot::Input => self.acts.get(&node.input).cloned(),
            Slot::Output => self.acts.get(&node.output).cloned(),
            Slot::GradOutput => Some(self.grads[layout.grad_of[&node.output]].clone()),
            Slot::GradInput => Some(self.grads[layout.grad_of[&node.input]].clone()),
            Slot::Scratch(i) => match self.persistent[index].get(i) {
                Some(Some(buffer)) => Some(buffer.clone()),
                Some(None) => self.shared.get(i).cloned(),
                None => None,
            },
            Slot::Unused => Some(self.unused.clone()),
            Slot::Workspace => Some(self.workspace.clone()),
            _ => None,
        }
    }

    /// The workspace, the labels and per-image losses, the running metrics, the placeholder
    /// binding and the optimizer's hyper-parameters.
    pub(super) fn small_bytes(&self) -> u64 {
        [
            &self.workspace,
            &self.labels,
            &self.loss,
            &self.metrics,
            &self.unused,
            &self.hyper,
        ]
        .iter()
        .map(|b| b.size())
        .sum()
    }

    pub(super) fn training_bytes(&self, layout: &Layout) -> u64 {
        2 * layout.grad_bytes
            + layout.shared_bytes.iter().sum::<u64>()
            + self.persistent_bytes
            + self.grad_flat.size()
            + self.state_flat.iter().map(wgpu::Buffer::size).sum::<u64>()
    }
}

/// Every forward activation, kept for the backward pass.
fn activations(
    gpu: &Gpu,
    graph: &GraphBuilder,
    layout: &Layout,
) -> HashMap<TensorId, wgpu::Buffer> {
    let shape_of = |t: TensorId| graph.tensors[t.0].shape.as_slice();
    layout
        .tensors
        .iter()
        .map(|&t| {
            let label = format!("activation {}", graph.tensors[t.0].name);
            (t, storage_buffer(gpu, &label, tensor_bytes(shape_of(t))))
        })
        .collect()
}

/// Per node, per scratch index, a buffer of its own where the scratch outlives the
/// dispatch; and their total bytes.
fn persistent_scratch(gpu: &Gpu, layout: &Layout) -> (Vec<Vec<Option<wgpu::Buffer>>>, u64) {
    let mut persistent_bytes = 0;
    let persistent = layout
        .scratch_specs
        .iter()
        .zip(layout.nodes)
        .map(|(specs, node)| {
            specs
                .iter()
                .map(|s| {
                    s.persistent.then(|| {
                        let label = format!("{} state", node.name);
                        // Batch-norm statistics, which a GEMM's prologue binds as a uniform.
                        let buffer = uniform_storage_buffer(gpu, &label, s.floats as u64 * 4);
                        persistent_bytes += buffer.size();
                        buffer
                    })
                })
                .collect()
        })
        .collect();
    (persistent, persistent_bytes)
}

/// A gradient per trainable parameter, named like the parameter.
fn param_grads(
    graph: &GraphBuilder,
    layout: &Layout,
    flat: &FlatLayout,
    grad_flat: &wgpu::Buffer,
) -> BTreeMap<usize, NamedBuffer> {
    layout
        .trainable
        .iter()
        .enumerate()
        .map(|(i, &p)| {
            let info = &graph.params[p];
            let grad = NamedBuffer {
                name: info.name.clone(),
                shape: info.shape.clone(),
                range: flat.range(grad_flat, i),
            };
            (p, grad)
        })
        .collect()
}

/// The update rule's state per trainable parameter, named `<parameter>.<state>`, each at
/// its initial value.
fn opt_state(
    gpu: &Gpu,
    graph: &GraphBuilder,
    layout: &Layout,
    rule: &UpdateRule,
    flat: &FlatLayout,
    state_flat: &[wgpu::Buffer],
) -> BTreeMap<usize, Vec<NamedBuffer>> {
    let mut opt_state = BTreeMap::new();
    for (i, &p) in layout.trainable.iter().enumerate() {
        let info = &graph.params[p];
        let states = rule
            .state_names()
            .iter()
            .zip(state_flat)
            .enumerate()
            .map(|(s, (state, buffer))| {
                let range = flat.range(buffer, i);
                let init = vec![rule.state_init(s); info.len()];
                gpu.queue()
                    .write_buffer(buffer, range.offset, bytemuck::cast_slice(&init));
                NamedBuffer {
                    name: format!("{}.{state}", info.name),
                    shape: info.shape.clone(),
                    range,
                }
            })
            .collect();
        opt_state.insert(p, states);
    }
    opt_state
}
