//! GPU memory of a plan: the report by purpose, and how an inference plan packs its
//! activations into as few buffers as tensors alive at once allow.

use super::builder::GraphBuilder;
use super::node::TensorId;
use super::shapes::tensor_bytes;

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

pub(super) fn plan_memory(graph: &GraphBuilder) -> MemoryPlan {
    let tensor_count = graph.tensors.len();
    // Position of the last op that reads each tensor; outputs and the input live forever.
    let mut last_use = vec![None; tensor_count];
    for (i, node) in graph.nodes.iter().enumerate() {
        last_use[node.input.0] = Some(i);
    }
    let pinned = |t: TensorId| graph.outputs.contains(&t) || graph.inputs.contains(&t);

    let mut buffer_of = vec![usize::MAX; tensor_count];
    let mut buffer_bytes: Vec<u64> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let (mut live, mut live_peak) = (0u64, 0u64);
    for &input in &graph.inputs {
        buffer_bytes.push(tensor_bytes(&graph.tensors[input.0].shape));
        buffer_of[input.0] = buffer_bytes.len() - 1;
        live += tensor_bytes(&graph.tensors[input.0].shape);
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        let need = tensor_bytes(&graph.tensors[node.output.0].shape);
        // Best fit among free buffers; otherwise grow the largest free one; otherwise a new one.
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
        buffer_of[node.output.0] = buffer;
        live += need;
        live_peak = live_peak.max(live);
        // Free the input only after the output is placed: an op never reads and writes
        // the same buffer.
        if last_use[node.input.0] == Some(i) && !pinned(node.input) {
            free.push(buffer_of[node.input.0]);
            live -= tensor_bytes(&graph.tensors[node.input.0].shape);
        }
        if last_use[node.output.0].is_none() && !pinned(node.output) {
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
