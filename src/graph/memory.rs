//! GPU memory of a plan: the report by purpose, and how an inference plan packs its
//! activations into as few buffers as tensors alive at once allow.

use super::builder::GraphBuilder;
use super::forward_pairs::runs_in_previous;
use super::shapes::tensor_bytes;
use crate::ops::Dispatch;

/// Bytes the plan allocated on the GPU, by purpose.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct MemoryReport {
    /// Activation buffers after reuse of dead tensors (includes the input and outputs).
    pub activations: u64,
    /// What activations would take with one buffer per tensor (no reuse).
    pub activations_unshared: u64,
    /// The largest set of activations alive at once (an op's input and output plus
    /// everything still to be read): the least any reuse scheme could allocate.
    pub activations_live_peak: u64,
    pub params: u64,
    /// Gradients, optimizer state and reduction scratch (training plans only).
    pub training: u64,
    /// Uniform blocks, staging and timestamp buffers.
    pub other: u64,
}

impl MemoryReport {
    pub fn total(&self) -> u64 {
        self.activations + self.params + self.training + self.other
    }
}

/// Which buffer each tensor lives in, reusing buffers of tensors no longer needed.
pub(super) struct MemoryPlan {
    pub buffer_of: Vec<usize>,
    pub buffer_bytes: Vec<u64>,
    pub live_peak: u64,
}

/// An inference plan's buffers: the output of an op that only reshapes
/// (`OpKind::only_reshapes`) shares its input's buffer, which lives as long as either is
/// read; where node i runs with the node after it (`pairs[i]`, see `forward_pairs`), the
/// pair is one step from node i's input to the next node's output, and node i's output,
/// which nothing stores, has no buffer of its own.
pub(super) fn plan_memory(graph: &GraphBuilder, pairs: &[Option<Dispatch>]) -> MemoryPlan {
    let bytes: Vec<u64> = graph
        .tensors
        .iter()
        .map(|t| tensor_bytes(&t.shape))
        .collect();
    // The tensor whose buffer holds each tensor.
    let mut storage: Vec<usize> = (0..graph.tensors.len()).collect();
    let mut chain: Vec<[usize; 2]> = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let input = storage[node.input.0];
        if runs_in_previous(pairs, i) {
            continue;
        }
        if node.kind.only_reshapes(&graph.tensors[node.input.0].shape) {
            storage[node.output.0] = input;
        } else if pairs[i].is_some() {
            let last = graph.nodes[i + 1].output.0;
            storage[node.output.0] = last;
            chain.push([input, last]);
        } else {
            chain.push([input, node.output.0]);
        }
    }
    let inputs: Vec<usize> = graph.inputs.iter().map(|t| storage[t.0]).collect();
    let outputs: Vec<usize> = graph.outputs.iter().map(|t| storage[t.0]).collect();
    let mut plan = pack_tensors(&bytes, &chain, &inputs, &outputs);
    plan.buffer_of = storage.iter().map(|&s| plan.buffer_of[s]).collect();
    plan
}

/// The buffers for tensors of `tensor_bytes` bytes that `steps` (`[input, output]`, in the
/// order they run) read and write: a tensor's buffer is reused once its last reader has
/// run. `inputs` (filled before the first step) and `outputs` (read after the last) live
/// throughout.
pub(super) fn pack_tensors(
    tensor_bytes: &[u64],
    steps: &[[usize; 2]],
    inputs: &[usize],
    outputs: &[usize],
) -> MemoryPlan {
    // Position of the last step that reads each tensor.
    let mut last_use = vec![None; tensor_bytes.len()];
    for (i, [input, _]) in steps.iter().enumerate() {
        last_use[*input] = Some(i);
    }
    let pinned = |t: usize| outputs.contains(&t) || inputs.contains(&t);

    let mut buffer_of = vec![usize::MAX; tensor_bytes.len()];
    let mut buffer_bytes: Vec<u64> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let (mut live, mut live_peak) = (0u64, 0u64);
    for &input in inputs {
        buffer_bytes.push(tensor_bytes[input]);
        buffer_of[input] = buffer_bytes.len() - 1;
        live += tensor_bytes[input];
    }
    for (i, &[input, output]) in steps.iter().enumerate() {
        let need = tensor_bytes[output];
        let buffer = take_buffer(&mut free, &mut buffer_bytes, need);
        buffer_of[output] = buffer;
        live += need;
        live_peak = live_peak.max(live);
        // Free the input only after the output is placed: a step never reads and writes
        // the same buffer.
        if last_use[input] == Some(i) && !pinned(input) {
            free.push(buffer_of[input]);
            live -= tensor_bytes[input];
        }
        if last_use[output].is_none() && !pinned(output) {
            free.push(buffer);
            live -= need;
        }
    }
    MemoryPlan {
        buffer_of,
        buffer_bytes,
        live_peak,
    }
}

/// A buffer of at least `need` bytes: the best fit among the `free` ones; otherwise the
/// largest free one, grown; otherwise a new one.
fn take_buffer(free: &mut Vec<usize>, buffer_bytes: &mut Vec<u64>, need: u64) -> usize {
    let best = free
        .iter()
        .enumerate()
        .filter(|(_, &b)| buffer_bytes[b] >= need)
        .min_by_key(|(_, &b)| buffer_bytes[b])
        .or_else(|| {
            free.iter()
                .enumerate()
                .max_by_key(|(_, &b)| buffer_bytes[b])
        })
        .map(|(slot, _)| slot);
    let buffer = match best {
        Some(slot) => free.swap_remove(slot),
        None => {
            buffer_bytes.push(0);
            buffer_bytes.len() - 1
        }
    };
    buffer_bytes[buffer] = buffer_bytes[buffer].max(need);
    buffer
}
