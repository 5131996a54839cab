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
use crate::ops::{accumulate_metrics, cross_entropy, Slot, UpdateTensor, UPDATE_TABLE_TENSORS};
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
    if config.settings.synced_replicas <= 1 {
        builder = builder.merging_reductions();
    }
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
    fn node_slot(&self, i: usize, slot: Slot) -> Option<BufferRange> {
        let (layout, params, graph) = (self.layout, self.params, self.graph);
        self.buffers.node_slot(layout, params, graph, i, slot)
    }

    /// Node `i` with its chunks and buffers, for emitting its dispatches.
    fn chunked_node<'a>(
        &'a self,
        i: usize,
        slot: &'a dyn Fn(Slot) -> Option<BufferRange>,
    ) -> ChunkedNode<'a> {
        let node = &self.layout.nodes[i];
        ChunkedNode {
            name: &node.name,
            kind: &node.kind,
            input: &self.graph.tensors[node.input.0].shape,
            output: &self.graph.tensors[node.output.0].shape,
            chunks: &self.layout.chunks[i],
            slot,
            prologue: self.layout.prologues[i],
            normalised_by_next: self.layout.normalised_by_next(i),
            input_sums: self.layout.input_sums[i],
            summed_by_next: self.layout.summed_by_next(i),
            output_stats: self.layout.output_stats[i],
            stats_by_previous: self.layout.stats_by_previous(i),
            output_grad: self.layout.output_grads[i],
            grad_by_previous: self.layout.grad_by_previous(i),
            patches_kept: self.layout.patches_kept == Some(i),
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

    /// The optimizer update: every trainable tensor in as few dispatches as the table
    /// size and the binding limit allow (one for MobileNet).
    fn add_update(&self, builder: &mut StepBuilder) -> Result<(), GraphError> {
        let Some(rule) = &self.config.update else {
            return Ok(());
        };
        let entries = self.update_entries();
        let groups = update_groups(&entries, self.limit);
        for (g, group) in groups.iter().enumerate() {
            let label = match groups.len() {
                1 => format!("update ({} tensors)", group.len()),
                n => format!("update {}/{n} ({} tensors)", g + 1, group.len()),
            };
            let group = &entries[group.clone()];
            let (tensors, param, grad) = update_table(group);
            let buffers = self.buffers;
            let param_flat = self.params.weights();
            let bound = |buffer: &wgpu::Buffer, span: &Range<u64>| BufferRange {
                buffer: buffer.clone(),
                offset: span.start,
                size: Some(span.end - span.start),
            };
            builder.add(&label, &rule.dispatch(&tensors), |slot| match slot {
                Slot::Hyper => Some(buffers.hyper.clone().into()),
                Slot::Param(0) => Some(bound(param_flat, &param)),
                Slot::ParamGrad(0) => Some(bound(&buffers.grad_flat, &grad)),
                // One shader serves every rule: a rule with one state tensor (SGD) binds
                // the placeholder as the second, which it never touches.
                Slot::OptState(s) => Some(match buffers.state_flat.get(s) {
                    Some(state) => bound(state, &grad),
                    None => buffers.unused.clone().into(),
                }),
                _ => None,
            })?;
        }
        Ok(())
    }

    /// Every trainable tensor's place in the flat parameter and gradient buffers.
    fn update_entries(&self) -> Vec<UpdateEntry> {
        let span = |r: &BufferRange| r.offset..r.offset + r.bytes();
        self.layout
            .trainable
            .iter()
            .map(|&p| {
                let info = &self.graph.params[p];
                let param = self
                    .params
                    .range(&info.name)
                    .expect("the training plan checked its parameters against the buffers");
                UpdateEntry {
                    param: span(&param),
                    grad: span(&self.buffers.param_grads[&p].range),
                    len: info.len(),
                    weight_decay: self
                        .config
                        .weight_decay
                        .get(&info.name)
                        .copied()
                        .unwrap_or(0.0),
                }
            })
            .collect()
    }
}

/// A trainable tensor as the update sees it: its bytes in the flat parameter and gradient
/// buffers.
struct UpdateEntry {
    param: Range<u64>,
    grad: Range<u64>,
    len: usize,
    weight_decay: f32,
}

/// Consecutive runs of `entries` that one update dispatch can take: at most a table's
/// worth of tensors, and parameter and gradient spans within one binding.
fn update_groups(entries: &[UpdateEntry], limit: u64) -> Vec<Range<usize>> {
    let mut groups: Vec<Range<usize>> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let fits = groups.last().is_some_and(|group| {
            let first = &entries[group.start];
            group.len() < UPDATE_TABLE_TENSORS
                && entry.param.end.saturating_sub(first.param.start) <= limit
                && entry.grad.end.saturating_sub(first.grad.start) <= limit
        });
        match groups.last_mut() {
            Some(group) if fits => group.end = i + 1,
            _ => groups.push(i..i + 1),
        }
    }
    groups
}

/// The table of one update dispatch and the parameter and gradient spans it binds.
fn update_table(group: &[UpdateEntry]) -> (Vec<UpdateTensor>, Range<u64>, Range<u64>) {
    let span = |of: fn(&UpdateEntry) -> &Range<u64>| {
        let start = group.iter().map(|e| of(e).start).min().unwrap_or(0);
        let end = group.iter().map(|e| of(e).end).max().unwrap_or(start);
        start..end
    };
    let (param, grad) = (span(|e| &e.param), span(|e| &e.grad));
    let tensors = group
        .iter()
        .map(|e| UpdateTensor {
            param_vec4: ((e.param.start - param.start) / 16) as u32,
            grad_vec4: ((e.grad.start - grad.start) / 16) as u32,
            len: e.len as u32,
            weight_decay: e.weight_decay,
        })
        .collect();
    (tensors, param, grad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` tensors of `len` floats, back to back at 256-byte steps in both buffers.
    fn entries(count: usize, len: usize) -> Vec<UpdateEntry> {
        (0..count as u64)
            .map(|i| UpdateEntry {
                param: 4096 + 256 * i..4096 + 256 * i + len as u64 * 4,
                grad: 256 * i..256 * i + len as u64 * 4,
                len,
                weight_decay: i as f32,
            })
            .collect()
    }

    #[test]
    fn a_table_takes_at_most_its_size_and_spans_stay_within_a_binding() {
        let many = entries(UPDATE_TABLE_TENSORS + 44, 16);
        assert_eq!(
            update_groups(&many, u64::MAX),
            [
                0..UPDATE_TABLE_TENSORS,
                UPDATE_TABLE_TENSORS..UPDATE_TABLE_TENSORS + 44
            ]
        );
        // 1 KiB spans: four 256-byte slots, the last tensor's 64 bytes ending inside.
        assert_eq!(update_groups(&entries(9, 16), 1024), [0..4, 4..8, 8..9]);
    }

    #[test]
    fn tensors_are_placed_from_the_start_of_their_group_binding() {
        let group = &entries(6, 16)[2..5];
        let (tensors, param, grad) = update_table(group);
        assert_eq!(param, 4096 + 512..4096 + 1024 + 64);
        assert_eq!(grad, 512..1024 + 64);
        let starts: Vec<_> = tensors
            .iter()
            .map(|t| (t.param_vec4, t.grad_vec4))
            .collect();
        assert_eq!(starts, [(0, 0), (16, 16), (32, 32)]);
        assert_eq!(tensors[1].weight_decay, 3.0);
    }
}
