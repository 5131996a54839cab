//! Which of a batch norm's passes its neighbours in the training chain take over.
//! - Its normalisation: a depthwise, pointwise or pooling node after a batch norm reads the
//!   batch norm's raw input and applies the batch's scale, shift and activation as it
//!   loads it (`ops::with_input_prologue`), so the normalised tensor is neither written nor
//!   stored. Other consumers (a standard convolution, a dense layer, another batch norm)
//!   keep the batch norm's own normalise pass.
//! - Its statistics: a 3x3 depthwise node or a GEMM (pointwise, the stem's convolution)
//!   before it leaves the per-chunk mean and squared deviations of its output
//!   (`ops::with_output_stats`), in place of `stats_partial`.
//! - Its backward sums: a 3x3 depthwise, pointwise or pooling node after it sums them over
//!   the input gradient it writes (`ops::with_input_sums`), in place of `backward_partial`.
//! - Its input gradient: a depthwise node before it reads the batch norm's output gradient
//!   and applies the batch norm's input gradient as it loads it
//!   (`ops::with_output_grad_prologue`), in place of `backward_input`. The GEMMs do not:
//!   both a pointwise layer's dX and dW GEMMs read that gradient, and a prologue on their
//!   loads cost more than the pass it saves (as the forward prologue did on dX).

use crate::graph::builder::GraphBuilder;
use crate::graph::chunks::BatchChunks;
use crate::graph::node::Node;
use crate::ops::{
    with_input_prologue, with_input_sums, with_output_grad_prologue, with_output_stats, Activation,
    Dispatch, OpKind, TrainSettings,
};

/// Per node, the activation of the batch norm before it when the node applies that batch
/// norm in its prologue; `None` where it reads its input as stored.
pub(super) fn input_prologues(graph: &GraphBuilder, nodes: &[Node]) -> Vec<Option<Activation>> {
    let mut prologues = vec![None; nodes.len()];
    for (j, pair) in nodes.windows(2).enumerate() {
        let OpKind::BatchNorm(bn) = &pair[0].kind else {
            continue;
        };
        let mut dispatches = forward_dispatches(graph, &pair[1]);
        dispatches.extend(backward_dispatches(graph, &pair[1]));
        let takes = !matches!(pair[1].kind, OpKind::BatchNorm(_))
            && dispatches
                .iter()
                .all(|d| with_input_prologue(d, bn.activation).is_some());
        if takes {
            prologues[j + 1] = Some(bn.activation);
        }
    }
    prologues
}

/// Per node, whether its backward also sums the backward partials of the batch norm before
/// it (`ops::with_input_sums`: the 3x3 depthwise backward, the pointwise dX GEMM or the
/// pooling backward, over the input gradient it writes), so that batch norm runs no
/// `backward_partial` pass. Only where the node takes the batch norm in its prologue and
/// both run over the whole batch at once: a chunked batch norm merges partial sums chunk by
/// chunk of its own.
pub(super) fn input_sums(
    graph: &GraphBuilder,
    nodes: &[Node],
    prologues: &[Option<Activation>],
    chunks: &[BatchChunks],
) -> Vec<bool> {
    let mut sums = vec![false; nodes.len()];
    for i in 1..nodes.len() {
        let Some(activation) = prologues[i] else {
            continue;
        };
        if chunks[i].is_chunked() || chunks[i - 1].is_chunked() {
            continue;
        }
        sums[i] = backward_dispatches(graph, &nodes[i])
            .iter()
            .filter_map(|d| with_input_prologue(d, activation))
            .any(|d| with_input_sums(&d, activation).is_some());
    }
    sums
}

/// Per node, whether its forward also leaves the per-chunk statistics of its output for
/// the batch norm after it (`ops::with_output_stats`: the 3x3 depthwise forward, a forward
/// GEMM), so that
/// batch norm runs no `stats_partial` pass. Only where both run over the whole batch at
/// once, as for `input_sums`.
pub(super) fn output_stats(
    graph: &GraphBuilder,
    nodes: &[Node],
    chunks: &[BatchChunks],
) -> Vec<bool> {
    let mut stats = vec![false; nodes.len()];
    for i in 0..nodes.len().saturating_sub(1) {
        if !matches!(nodes[i + 1].kind, OpKind::BatchNorm(_))
            || chunks[i].is_chunked()
            || chunks[i + 1].is_chunked()
        {
            continue;
        }
        stats[i] = forward_dispatches(graph, &nodes[i])
            .iter()
            .any(|d| with_output_stats(d).is_some());
    }
    stats
}

/// Per node, the activation of the batch norm after it when the node's backward applies
/// that batch norm's input gradient as it loads dY (`ops::with_output_grad_prologue`), so
/// the batch norm runs no `backward_input` pass; `None` elsewhere. Only where both run
/// over the whole batch at once, as for `input_sums`.
pub(super) fn output_grads(
    graph: &GraphBuilder,
    nodes: &[Node],
    chunks: &[BatchChunks],
) -> Vec<Option<Activation>> {
    let mut grads = vec![None; nodes.len()];
    for i in 0..nodes.len().saturating_sub(1) {
        let OpKind::BatchNorm(bn) = &nodes[i + 1].kind else {
            continue;
        };
        if chunks[i].is_chunked() || chunks[i + 1].is_chunked() {
            continue;
        }
        let takes = backward_dispatches(graph, &nodes[i])
            .iter()
            .all(|d| with_output_grad_prologue(d, bn.activation).is_some());
        if takes {
            grads[i] = Some(bn.activation);
        }
    }
    grads
}

/// The training forward dispatches of `node` over the whole batch.
fn forward_dispatches(graph: &GraphBuilder, node: &Node) -> Vec<Dispatch> {
    let (input, output) = shapes(graph, node);
    node.kind
        .forward_train(input, output, &TrainSettings::default())
}

/// The backward dispatches of `node` over the whole batch, with the input gradient.
fn backward_dispatches(graph: &GraphBuilder, node: &Node) -> Vec<Dispatch> {
    let (input, output) = shapes(graph, node);
    node.kind
        .backward(input, output, true, &TrainSettings::default())
}

fn shapes<'g>(graph: &'g GraphBuilder, node: &Node) -> (&'g [usize], &'g [usize]) {
    (
        &graph.tensors[node.input.0].shape,
        &graph.tensors[node.output.0].shape,
    )
}
