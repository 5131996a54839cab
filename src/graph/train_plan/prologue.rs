//! Which batch norms of the training chain hand their normalisation to the next node: a
//! depthwise, pointwise or pooling node after a batch norm reads the batch norm's raw input
//! and applies the batch's scale, shift and activation as it loads it (`ops::
//! with_input_prologue`), so the normalised tensor is neither written nor stored. Other
//! consumers (a standard convolution, a dense layer, another batch norm) keep the batch
//! norm's own normalise pass.

use crate::graph::builder::GraphBuilder;
use crate::graph::chunks::BatchChunks;
use crate::graph::node::Node;
use crate::ops::{with_input_prologue, with_input_sums, Activation, OpKind, TrainSettings};

/// Per node, the activation of the batch norm before it when the node applies that batch
/// norm in its prologue; `None` where it reads its input as stored.
pub(super) fn input_prologues(graph: &GraphBuilder, nodes: &[Node]) -> Vec<Option<Activation>> {
    let shape = |node: &Node| {
        let of = |t: crate::graph::node::TensorId| graph.tensors[t.0].shape.clone();
        (of(node.input), of(node.output))
    };
    let mut prologues = vec![None; nodes.len()];
    for (j, pair) in nodes.windows(2).enumerate() {
        let OpKind::BatchNorm(bn) = &pair[0].kind else {
            continue;
        };
        let (input, output) = shape(&pair[1]);
        let settings = TrainSettings::default();
        let kind = &pair[1].kind;
        let mut dispatches = kind.forward_train(&input, &output, &settings);
        dispatches.extend(kind.backward(&input, &output, true, &settings));
        let takes = !matches!(kind, OpKind::BatchNorm(_))
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
/// it (`ops::with_input_sums`: the 3x3 depthwise backward, over the input gradient it
/// writes), so that batch norm runs no `backward_partial` pass. Only where the node takes
/// the batch norm in its prologue and both run over the whole batch at once: a chunked
/// batch norm merges partial sums chunk by chunk of its own.
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
        let node = &nodes[i];
        let (input, output) = (
            &graph.tensors[node.input.0].shape,
            &graph.tensors[node.output.0].shape,
        );
        let settings = TrainSettings::default();
        sums[i] = node
            .kind
            .backward(input, output, true, &settings)
            .iter()
            .filter_map(|d| with_input_prologue(d, activation))
            .any(|d| with_input_sums(&d).is_some());
    }
    sums
}
