//! How ops talk to the graph's planner: the buffers a dispatch binds (`Slot`), scratch
//! memory, the dispatch itself, grids, and the two-stage reductions several ops share.

use crate::gpu::Shader;

// Slot, ScratchSpec, Dispatch and the ops' forward/backward/scratch/workspace methods are
// how ops talk to the graph's planner: public for the crate's own modules and tests, hidden
// from the documentation, not a stable API.

/// Which buffer a shader binding receives. Op-relative slots (`Param`, `ParamGrad`,
/// `Scratch`) are resolved by the plan against the op's own tensors.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Input,
    Output,
    /// The op's n-th parameter, in `params()` order.
    Param(usize),
    /// The n-th parameter of the op after this one, whose forward this op's dispatch runs
    /// in its epilogue (`with_depthwise_epilogue`).
    EpilogueParam(usize),
    /// Gradient of the loss with respect to the output (read in the backward pass).
    GradOutput,
    /// Gradient with respect to the input (written in the backward pass).
    GradInput,
    /// Gradient of the op's n-th parameter.
    ParamGrad(usize),
    /// The op's n-th scratch buffer, see `ScratchSpec`.
    Scratch(usize),
    /// Class labels of the batch (u32), for the loss.
    Labels,
    /// Per-sample loss, written by the loss.
    Loss,
    /// Running training metrics (loss sum, correct, samples), read back when logged.
    Metrics,
    /// The n-th optimizer state tensor of a parameter.
    OptState(usize),
    /// The optimizer's per-step uniform block (learning rate and friends).
    Hyper,
    /// A placeholder for a binding the dispatch reads only conditionally (e.g. GEMM bias).
    Unused,
    /// Working memory of the forward pass (the stem's unfolded input patches), shared by
    /// all ops and dead after each op; `OpKind::workspace` gives its size.
    Workspace,
    /// The statistics of the batch norm that produced this op's input, when the op applies
    /// that normalisation and activation as it loads the raw input (see `with_input_prologue`).
    InputNorm,
    /// The backward partial sums of that batch norm, when the op's backward computes them
    /// over the input gradient it writes (see `with_input_sums`).
    InputPartials,
    /// The statistics partials of the batch norm after the op, when the op's forward
    /// leaves them as it stores its output (see `with_output_stats`).
    OutputPartials,
    /// The statistics of the batch norm after the op, when the op's backward reads that
    /// batch norm's output gradient and applies its input gradient as it loads it (see
    /// `with_output_grad_prologue`).
    OutputNorm,
    /// The weight-gradient partials another op's sum reads, when a batch norm's finalize
    /// stage runs that sum beside its own work (see `BatchNorm::finalize_beside`).
    BesidePartials,
    /// The weight gradient that sum writes.
    BesideGrad,
}

/// Working memory an op needs beyond its inputs, outputs and parameters.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScratchSpec {
    pub floats: usize,
    /// Persistent scratch survives from the forward to the backward pass (BN statistics);
    /// transient scratch (reduction partials) is only used within one op's dispatches
    /// and may be shared between ops. Persistent scratch may also be bound as a uniform
    /// block (`gpu::GEMM_PROLOGUE_UNIFORM_BYTES`), as the vec4 GEMMs bind the statistics.
    pub persistent: bool,
}

/// One compute dispatch of an op: pipeline, uniform contents (binding 0), the buffers of
/// the other bindings, and the grid size. `bindings` may name more bindings than the entry
/// point uses; the plan binds only those the shader reads (found by naga reflection).
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub shader: Shader,
    pub entry: &'static str,
    pub uniform: Vec<u8>,
    pub bindings: Vec<(u32, Slot)>,
    pub workgroups: [u32; 3],
}

impl Dispatch {
    /// Word `i` of the uniform block.
    pub fn uniform_word(&self, i: usize) -> u32 {
        bytemuck::pod_read_unaligned(&self.uniform[4 * i..4 * i + 4])
    }

    /// Sets word `i` of the uniform block to `value`.
    pub(super) fn set_uniform_word(&mut self, i: usize, value: u32) {
        self.uniform[4 * i..4 * i + 4].copy_from_slice(bytemuck::bytes_of(&value));
    }
}

/// The most workgroups per grid dimension every WebGPU adapter accepts.
const MAX_GROUPS_PER_DIM: u32 = 65535;
/// Must match the default of WG_SIZE in common.wgsl.
pub(super) const LINEAR_WORKGROUP: usize = 64;
/// Rows summed by one invocation in the first stage of a two-stage reduction.
#[doc(hidden)]
pub const REDUCE_CHUNK: usize = 256;

/// Grid for the one-output-per-invocation kernels (see `linear_index` in common.wgsl).
pub(super) fn linear_grid(threads: usize) -> [u32; 3] {
    linear_grid_of(threads, LINEAR_WORKGROUP)
}

/// `linear_grid` for an entry point whose workgroups are `workgroup` invocations wide.
pub(super) fn linear_grid_of(threads: usize, workgroup: usize) -> [u32; 3] {
    let groups = threads.div_ceil(workgroup).max(1) as u32;
    let x = groups.min(MAX_GROUPS_PER_DIM);
    [x, groups.div_ceil(x), 1]
}

pub(super) fn uniform_words(words: &[u32]) -> Vec<u8> {
    bytemuck::cast_slice(words).to_vec()
}

/// Number of REDUCE_CHUNK-row chunks covering `rows`.
pub(super) fn chunks(rows: usize) -> usize {
    rows.div_ceil(REDUCE_CHUNK).max(1)
}

/// reduce.wgsl's word that, set, makes `sum_partials` add to `out` (`accumulating`).
pub(super) const SUM_PARTIALS_ACCUMULATE_WORD: usize = 4;

/// reduce.wgsl's bindings of `sum_partials`: the partials, and what they sum to.
pub(super) const SUM_PARTIALS_BINDINGS: [u32; 2] = [1, 2];

/// reduce.wgsl's stage 2: `out[c] = sum_s partials[s, c]` over `parts` partials of `len`,
/// 4 values per invocation where `len` divides by 4 (`sum_partials4`).
pub(super) fn sum_partials(partials: Slot, out: Slot, parts: usize, len: usize) -> Dispatch {
    let (entry, cols) = if len.is_multiple_of(4) {
        ("sum_partials4", len / 4)
    } else {
        ("sum_partials", len)
    };
    let words = [parts, cols, REDUCE_CHUNK, parts, 0, 0, 0, 0].map(|v| v as u32);
    Dispatch {
        shader: Shader::Reduce,
        entry,
        uniform: uniform_words(&words),
        bindings: vec![
            (SUM_PARTIALS_BINDINGS[0], partials),
            (SUM_PARTIALS_BINDINGS[1], out),
        ],
        workgroups: linear_grid(cols),
    }
}

/// Column sums of a [rows, cols] tensor into `out`, through `partials` (two stages).
pub(super) fn column_sum(
    input: Slot,
    partials: Slot,
    out: Slot,
    rows: usize,
    cols: usize,
) -> [Dispatch; 2] {
    let parts = chunks(rows);
    let words = [rows, cols, REDUCE_CHUNK, parts, 0, 0, 0, 0].map(|v| v as u32);
    [
        Dispatch {
            shader: Shader::Reduce,
            entry: "column_partial",
            uniform: uniform_words(&words),
            bindings: vec![(1, input), (2, partials)],
            workgroups: linear_grid(parts * cols),
        },
        sum_partials(partials, out, parts, cols),
    ]
}

/// Training hyper-parameters the ops themselves need.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainSettings {
    /// Weight of the batch statistic in the running-statistics update (PyTorch's
    /// convention: 0.1 there; Keras' momentum 0.99 is 0.01 here).
    pub bn_momentum: f32,
    /// Replicas whose batches batch norm pools its statistics over (sync-BN); 1: each
    /// replica normalises with its own batch's. Above 1 the plan exchanges each BN's
    /// partial sums with the other replicas between the dispatches of `BatchNorm::SYNC_AFTER`.
    pub synced_replicas: usize,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            bn_momentum: 0.1,
            synced_replicas: 1,
        }
    }
}

/// Checks a `*Words` struct against the uniform block `block` of `shader`'s source, parsed
/// by naga: every field (name, byte offset) is a member at the same offset, every member
/// the fields leave out is padding (`pad*`), and the sizes agree.
#[cfg(test)]
pub(super) fn check_words_against_shader(
    shader: Shader,
    block: &str,
    fields: &[(&str, usize)],
    size: usize,
) {
    let module = naga::front::wgsl::parse_str(&shader.source())
        .unwrap_or_else(|e| panic!("{shader} does not parse: {e}"));
    let (_, params) = module
        .types
        .iter()
        .find(|(_, ty)| ty.name.as_deref() == Some(block))
        .unwrap_or_else(|| panic!("{shader} has no {block}"));
    let naga::TypeInner::Struct { members, span } = &params.inner else {
        panic!("{shader}'s {block} is not a struct");
    };
    assert_eq!(*span as usize, size, "{shader}: the size of {block}");
    for (name, offset) in fields {
        let member = members
            .iter()
            .find(|m| m.name.as_deref() == Some(*name))
            .unwrap_or_else(|| panic!("{shader}'s {block} has no `{name}`"));
        assert_eq!(member.offset as usize, *offset, "{shader}: `{name}`");
    }
    for member in members {
        let name = member.name.as_deref().unwrap_or("");
        assert!(
            name.starts_with("pad") || fields.iter().any(|(n, _)| *n == name),
            "{shader}: {block}'s `{name}` has no field"
        );
    }
}

/// `[(name, byte offset)]` of the named fields of a struct, for `check_words_against_shader`.
#[cfg(test)]
macro_rules! field_offsets {
    ($ty:ty; $($field:ident),+ $(,)?) => {
        [$((stringify!($field), std::mem::offset_of!($ty, $field))),+]
    };
}
#[cfg(test)]
pub(super) use field_offsets;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_covers_more_than_one_dimension_allows() {
        let grid = linear_grid(64 * 70000);
        assert_eq!(grid[0], 65535);
        assert!(grid[0] as usize * grid[1] as usize * 64 >= 64 * 70000);
    }

    #[test]
    fn partials_sum_four_values_per_invocation_where_the_length_allows() {
        let vec4 = sum_partials(Slot::Scratch(0), Slot::Output, 3, 4096);
        assert_eq!(vec4.entry, "sum_partials4");
        assert_eq!([vec4.uniform_word(0), vec4.uniform_word(1)], [3, 1024]);
        assert_eq!(vec4.workgroups, linear_grid(1024));
        let scalar = sum_partials(Slot::Scratch(0), Slot::Output, 3, 4098);
        assert_eq!(scalar.entry, "sum_partials");
        assert_eq!(scalar.uniform_word(1), 4098);
    }
}
