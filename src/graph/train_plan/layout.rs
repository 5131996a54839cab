//! The training chain's shapes and indices, worked out from the graph before any buffer
//! exists: which tensors are kept, which gradient buffer each gradient lives in, scratch
//! sizes and how each node splits the batch.

use crate::gpu::Gpu;
use crate::graph::builder::GraphBuilder;
use crate::graph::chunks::{node_chunks, BatchChunks};
use crate::graph::error::GraphError;
use crate::graph::limits::workspace_entry;
use crate::graph::node::{Node, TensorId};
use crate::graph::shapes::tensor_bytes;
use crate::ops::{Activation, ScratchSpec};
use std::collections::HashMap;

/// The training nodes (those up to the one producing the loss input), checked to form a
/// chain from the graph input.
fn training_chain(graph: &GraphBuilder) -> Result<(usize, TensorId), GraphError> {
    let output = *graph.outputs.first().ok_or(GraphError::NoOutputs)?;
    let last = graph
        .nodes
        .iter()
        .position(|n| n.output == output)
        .ok_or_else(|| GraphError::NotAChain("the first output is the graph input".into()))?;
    let mut expected = graph.inputs[0];
    for node in &graph.nodes[..=last] {
        if node.input != expected {
            return Err(GraphError::NotAChain(format!(
                "op {:?} does not read the previous op's output",
                node.name
            )));
        }
        if node.kind.fused().is_some() {
            return Err(GraphError::NotAChain(format!(
                "op {:?} has batchnorm folded in, which is for inference only; \
                 train the unfolded graph",
                node.name
            )));
        }
        expected = node.output;
    }
    Ok((last + 1, output))
}

/// Which of the two gradient buffers holds each tensor's gradient: each node reads its
/// output's and writes its input's into the other, but for a batch norm whose input
/// gradient the node before it applies (`output_grads`): no pass writes that gradient, so
/// it shares the buffer of the batch norm's output gradient, which the node before reads.
fn gradient_buffers(
    nodes: &[Node],
    output_id: TensorId,
    output_grads: &[Option<Activation>],
) -> HashMap<TensorId, usize> {
    let mut grad_of = HashMap::new();
    grad_of.insert(output_id, 0usize);
    for (i, node) in nodes.iter().enumerate().rev() {
        let buffer = grad_of[&node.output];
        let shared = grad_applied_before(output_grads, i);
        grad_of.insert(node.input, if shared { buffer } else { 1 - buffer });
    }
    grad_of
}

/// Whether node `i` is a batch norm whose input gradient the node before it applies.
fn grad_applied_before(output_grads: &[Option<Activation>], i: usize) -> bool {
    i > 0 && output_grads[i - 1].is_some()
}

/// Shapes and indices of the training chain, worked out before any buffer exists.
pub(super) struct Layout<'g> {
    pub(super) nodes: &'g [Node],
    pub(super) input_id: TensorId,
    pub(super) output_id: TensorId,
    pub(super) input_shape: Vec<usize>,
    pub(super) output_shape: Vec<usize>,
    /// Which of the two gradient buffers holds each tensor's gradient.
    pub(super) grad_of: HashMap<TensorId, usize>,
    /// The tensors stored: the graph input and every node's output, in order, but for the
    /// batch norm outputs that the next node applies in its prologue.
    pub(super) tensors: Vec<TensorId>,
    /// Per node, the activation of the batch norm before it when the node applies that
    /// batch norm as it loads the batch norm's input (see `bn_fusion`).
    pub(super) prologues: Vec<Option<Activation>>,
    /// Per node, whether its backward sums the backward partials of the batch norm before
    /// it, in place of that batch norm's own first backward pass (see `bn_fusion`).
    pub(super) input_sums: Vec<bool>,
    /// Per node, whether its forward leaves the statistics partials of the batch norm
    /// after it, in place of that batch norm's own first forward pass.
    pub(super) output_stats: Vec<bool>,
    /// Per node, the activation of the batch norm after it when the node's backward
    /// applies that batch norm's input gradient as it loads dY (see `bn_fusion`).
    pub(super) output_grads: Vec<Option<Activation>>,
    /// The larger gradient buffer: the largest tensor.
    pub(super) grad_bytes: u64,
    pub(super) scratch_specs: Vec<Vec<ScratchSpec>>,
    /// Transient scratch, shared by index across ops.
    pub(super) shared_bytes: Vec<u64>,
    /// Parameters with gradients, in node order.
    pub(super) trainable: Vec<usize>,
    pub(super) workspace_bytes: u64,
    /// The node whose unfolded patches are still in the workspace when its backward runs,
    /// which then reads them instead of unfolding its input again.
    pub(super) patches_kept: Option<usize>,
    /// How each node splits the batch (one chunk where its tensors fit one binding).
    pub(super) chunks: Vec<BatchChunks>,
}

/// The tensors the step stores: the input and every node's output but those of batch
/// norms whose consumer normalises as it loads (they are never written).
fn stored_tensors(
    input_id: TensorId,
    nodes: &[Node],
    prologues: &[Option<Activation>],
) -> Vec<TensorId> {
    std::iter::once(input_id)
        .chain(
            nodes
                .iter()
                .zip(prologues.iter().skip(1).chain([&None]))
                .filter(|(_, next_prologue)| next_prologue.is_none())
                .map(|(n, _)| n.output),
        )
        .collect()
}

/// Bytes of each shared scratch slot: the largest any node asks for at that index
/// (persistent scratch is each node's own).
fn shared_scratch_bytes(scratch_specs: &[Vec<ScratchSpec>]) -> Vec<u64> {
    let mut shared_bytes: Vec<u64> = Vec::new();
    for specs in scratch_specs {
        for (i, spec) in specs.iter().enumerate().filter(|(_, s)| !s.persistent) {
            if shared_bytes.len() <= i {
                shared_bytes.resize(i + 1, 4);
            }
            shared_bytes[i] = shared_bytes[i].max(spec.floats as u64 * 4);
        }
    }
    shared_bytes
}

/// The last node (in forward order) that writes the workspace, when it does so once: the
/// step's backward pass reaches it before any other writer's, so its patches are still there
/// (the forward pass of a batch split into chunks leaves only the last chunk's).
fn last_workspace_writer<'a>(
    nodes: &[Node],
    shape_of: &impl Fn(TensorId) -> &'a [usize],
    chunks: &[BatchChunks],
) -> Option<usize> {
    let writer = nodes
        .iter()
        .rposition(|n| n.kind.workspace(shape_of(n.input), shape_of(n.output)) > 0)?;
    (!chunks[writer].is_chunked()).then_some(writer)
}

impl<'g> Layout<'g> {
    pub(super) fn new(graph: &'g GraphBuilder, gpu: &Gpu) -> Result<Layout<'g>, GraphError> {
        let (node_count, output_id) = training_chain(graph)?;
        let nodes = &graph.nodes[..node_count];
        let input_id = graph.inputs[0];
        let shape_of = |t: TensorId| graph.tensors[t.0].shape.as_slice();
        let (chunks, workspace_bytes) = node_chunks(gpu, graph, nodes, true)?;
        let output_grads = super::bn_fusion::output_grads(graph, nodes, &chunks);
        let grad_of = gradient_buffers(nodes, output_id, &output_grads);
        let prologues = super::bn_fusion::input_prologues(graph, nodes);
        let tensors = stored_tensors(input_id, nodes, &prologues);
        let grad_bytes = tensors
            .iter()
            .map(|&t| tensor_bytes(shape_of(t)))
            .max()
            .unwrap_or(4);
        let scratch_specs: Vec<_> = nodes
            .iter()
            .map(|n| n.kind.scratch(shape_of(n.input), shape_of(n.output)))
            .collect();
        let shared_bytes = shared_scratch_bytes(&scratch_specs);
        let trainable = nodes
            .iter()
            .flat_map(|n| n.params.iter().copied())
            .filter(|&p| graph.params[p].role.trainable())
            .collect();
        let input_sums = super::bn_fusion::input_sums(graph, nodes, &prologues, &chunks);
        let output_stats = super::bn_fusion::output_stats(graph, nodes, &chunks);
        let patches_kept = last_workspace_writer(nodes, &shape_of, &chunks);
        Ok(Layout {
            nodes,
            input_id,
            output_id,
            input_shape: shape_of(input_id).to_vec(),
            output_shape: shape_of(output_id).to_vec(),
            grad_of,
            tensors,
            prologues,
            input_sums,
            output_stats,
            output_grads,
            grad_bytes,
            scratch_specs,
            shared_bytes,
            trainable,
            workspace_bytes,
            patches_kept,
            chunks,
        })
    }

    pub(super) fn batch(&self) -> usize {
        self.input_shape[0]
    }

    /// Whether node `i` is a batch norm whose normalisation the next node applies.
    pub(super) fn normalised_by_next(&self, i: usize) -> bool {
        self.prologues.get(i + 1).is_some_and(Option::is_some)
    }

    /// Whether node `i` is a batch norm whose backward partial sums the next node's
    /// backward computes.
    pub(super) fn summed_by_next(&self, i: usize) -> bool {
        self.input_sums.get(i + 1).copied().unwrap_or(false)
    }

    /// Whether node `i` is a batch norm whose statistics partials the node before it
    /// leaves.
    pub(super) fn stats_by_previous(&self, i: usize) -> bool {
        i > 0 && self.output_stats[i - 1]
    }

    /// Whether node `i` is a batch norm whose input gradient the node before it applies.
    pub(super) fn grad_by_previous(&self, i: usize) -> bool {
        grad_applied_before(&self.output_grads, i)
    }

    /// The activation and gradient tensors, which ops may bind in chunks: each must fit
    /// one buffer.
    pub(super) fn tensor_buffers(&self, graph: &GraphBuilder) -> Vec<(String, Vec<usize>, u64)> {
        self.tensors
            .iter()
            .map(|&t| {
                let info = &graph.tensors[t.0];
                (
                    info.name.clone(),
                    info.shape.clone(),
                    tensor_bytes(&info.shape),
                )
            })
            .collect()
    }

    /// The buffers ops bind whole, which must fit one binding: reduction scratch and the
    /// workspace (sized for the largest chunk).
    pub(super) fn scratch_buffers(&self) -> Vec<(String, Vec<usize>, u64)> {
        let mut sizes = Vec::new();
        for (i, &bytes) in self.shared_bytes.iter().enumerate() {
            sizes.push((
                format!("reduction scratch {i}"),
                vec![(bytes / 4) as usize],
                bytes,
            ));
        }
        sizes.push(workspace_entry(self.workspace_bytes));
        sizes
    }
}
