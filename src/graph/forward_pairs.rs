//! Inference nodes that run in one dispatch with the node after them
//! (`OpKind::forward_with_next`: a pointwise layer and a 3x3 depthwise layer on images of
//! at most 2x2 pixels, or 4x4 where the adapter runs the subgroup tiles). The memory plan then gives the first node's output no buffer of
//! its own, and the plan runs the pair's dispatch in the first node's place.

use super::builder::GraphBuilder;
use super::chunks::BatchChunks;
use super::node::TensorId;
use crate::gpu::Gpu;
use crate::ops::{Dispatch, KernelCaps};

/// For each node, the dispatch that runs it and the node after it, where their ops have
/// one, that next node is the only reader of this node's output (which is no graph
/// output), and neither node is split into chunks of the batch.
pub(super) fn forward_pairs(
    gpu: &Gpu,
    graph: &GraphBuilder,
    chunks: &[BatchChunks],
) -> Vec<Option<Dispatch>> {
    let caps = KernelCaps::of(gpu);
    let nodes = &graph.nodes;
    let shape = |t: TensorId| graph.tensors[t.0].shape.as_slice();
    let mut pairs: Vec<Option<Dispatch>> = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let taken = runs_in_previous(&pairs, i);
        let pair = nodes.get(i + 1).filter(|next| {
            let only_reader = next.input == node.output
                && !graph.outputs.contains(&node.output)
                && nodes.iter().filter(|n| n.input == node.output).count() == 1;
            !taken && only_reader && !chunks[i].is_chunked() && !chunks[i + 1].is_chunked()
        });
        pairs.push(pair.and_then(|next| {
            node.kind.forward_with_next(
                shape(node.input),
                shape(node.output),
                &next.kind,
                shape(next.output),
                &caps,
            )
        }));
    }
    pairs
}

/// Whether node `i` runs in the dispatch of the node before it.
pub(super) fn runs_in_previous(pairs: &[Option<Dispatch>], i: usize) -> bool {
    i > 0 && pairs[i - 1].is_some()
}
