//! Pointwise (1x1) convolution: on NHWC data it is the GEMM [N*H*W, Cin] x [Cin, Cout].
//! This module also holds that GEMM, which the dense layer shares.

use super::{
    chunks, fused_bias, fused_bias_slot, nhwc, sum_partials, Activation, Dispatch, Fused,
    ParamRole, ParamSpec, ScratchSpec, Slot, GEMM_ACCUMULATE_WORD, REDUCE_CHUNK,
};
use crate::gpu::Shader;

#[derive(Clone, Debug, PartialEq)]
pub struct Pointwise {
    pub out_channels: usize,
    /// Batchnorm folded in (inference only): bias and activation in the GEMM epilogue.
    pub fused: Fused,
}

/// Invocations per workgroup, and rows and columns of C per invocation; must match LANES,
/// ROWS and COLS in gemm.wgsl.
const GEMM_LANES: usize = 64;
const GEMM_ROWS: usize = 8;
const GEMM_COLS: usize = 8;
const MAX_GROUPS_PER_DIM: usize = 65535;
/// K elements per split when a weight gradient reduces over many rows (split-K).
const K_CHUNK: usize = 1024;

/// Floats between the rows of a weight the GEMM reads as B (rows of K, `cols` = N wide)
/// for a faster read. Rows whose bytes are a multiple of 2 KiB all start in the same few
/// sets of a CPU's L1 cache (one way spans 4 KiB), which a tile walking down K fills with
/// its own lines; 64 more bytes a row spread them over the sets. On lavapipe at 32x32
/// inference the GEMMs with 512 and 1024 columns ran 10-40% faster (performance.md).
pub(super) fn padded_row_stride(cols: usize) -> usize {
    const SET_ALIASING_BYTES: usize = 2048;
    if (cols * 4).is_multiple_of(SET_ALIASING_BYTES) {
        cols + 16
    } else {
        cols
    }
}

/// Dimensions and operand layout of one GEMM: C[m, n] = A[m, k] x B[k, n].
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a_strides: [usize; 2],
    pub b_strides: [usize; 2],
    pub activation: Activation,
    pub has_bias: bool,
    pub accumulate: bool,
    /// A's rows hold zeros from column k up to the next multiple of 4 (im2col pads its
    /// patches), so the vec4 kernel may read A in whole vec4s although k is not a multiple.
    pub a_zero_padded: bool,
    /// >1: C receives `splits` partial [m, n] results, one per chunk of K.
    pub splits: usize,
}

impl Gemm {
    /// Row-major A [m, k] and B [k, n], overwrite C, no bias, no activation.
    pub fn plain(m: usize, n: usize, k: usize) -> Self {
        Gemm {
            m,
            n,
            k,
            a_strides: [k, 1],
            b_strides: [n, 1],
            activation: Activation::None,
            has_bias: false,
            accumulate: false,
            a_zero_padded: false,
            splits: 1,
        }
    }

    /// A multiple of 4, so that the vec4 kernel can take split-K GEMMs.
    fn k_chunk(&self) -> usize {
        self.k.div_ceil(self.splits.max(1)).next_multiple_of(4)
    }

    /// The dispatch, binding A, B, bias and C to the given slots.
    pub fn dispatch(&self, a: Slot, b: Slot, bias: Slot, c: Slot) -> Dispatch {
        // Enough column blocks per workgroup to cover n (a power of two up to all 64 lanes);
        // the remaining lanes take further row blocks.
        let lanes_x = self
            .n
            .div_ceil(GEMM_COLS)
            .next_power_of_two()
            .min(GEMM_LANES);
        let words = [
            self.m,
            self.n,
            self.k,
            self.activation.shader_code() as usize,
            self.a_strides[0],
            self.a_strides[1],
            self.b_strides[0],
            self.b_strides[1],
            self.has_bias as usize,
            self.accumulate as usize,
            self.splits.max(1),
            self.k_chunk(),
            lanes_x,
            self.a_zero_padded as usize,
            0,
            0,
            0,
            0,
            0,
            0,
        ]
        .map(|v| v as u32);
        let row_blocks = self.m.div_ceil(GEMM_ROWS);
        let workgroups = blocked_grid(row_blocks, self.n, lanes_x, self.splits);
        // The vec4 form where the layout allows (transposed A, as in dW, is not one of its
        // entry points in this kernel).
        let layout = OperandLayout::of(&words);
        let (shader, entry) = match (layout.vec4 && !layout.a_transposed, layout.b_transposed) {
            (true, true) => (Shader::GemmVec4, "forward_bt"),
            (true, false) => (Shader::GemmVec4, "forward"),
            (false, _) => (Shader::Gemm, "forward"),
        };
        Dispatch {
            shader,
            entry,
            uniform: bytemuck::cast_slice(&words).to_vec(),
            // Binding 5 (A's batch norm) is bound by `with_input_prologue`.
            bindings: vec![(1, a), (2, b), (3, bias), (4, c), (5, Slot::Unused)],
            workgroups,
        }
    }
}

/// The workgroups of gemm.wgsl's blocked kernel for `row_blocks` blocks of rows (8 rows
/// each, or a chunk each in `forward_stats`), `lanes_x` invocations across the columns
/// and the rest down the rows; row blocks past the cap of y continue in z, after the
/// splits.
fn blocked_grid(row_blocks: usize, n: usize, lanes_x: usize, splits: usize) -> [u32; 3] {
    let lanes_y = GEMM_LANES / lanes_x;
    let col_groups = n.div_ceil(GEMM_COLS * lanes_x).max(1);
    let row_groups = row_blocks.div_ceil(lanes_y).max(1);
    let y = row_groups.min(MAX_GROUPS_PER_DIM);
    let z = row_groups.div_ceil(y) * splits.max(1);
    [col_groups as u32, y as u32, z as u32]
}

/// gemm.wgsl's uniform words: M, N, the lanes across N, the split count, and the rows per
/// chunk of the `*_stats` entry points.
const M_WORD: usize = 0;
const N_WORD: usize = 1;
const ACT_WORD: usize = 3;
const HAS_BIAS_WORD: usize = 8;
const SPLITS_WORD: usize = 10;
const LANES_X_WORD: usize = 12;
const STATS_ROWS_WORD: usize = 16;

/// `dispatch` (a forward GEMM whose C a batch norm normalises next) as training runs it:
/// each invocation or subgroup walks one chunk of `REDUCE_CHUNK` rows of C and leaves that
/// chunk's mean and sum of squared deviations of every column in `Slot::OutputPartials`,
/// laid out as the batch norm's own `stats_partial` leaves them (`BatchNorm::partials`);
/// that pass is then not needed. Only for C as the batch norm reads it: whole (no K
/// splits), no bias, activation or accumulation. `None` for any other dispatch.
pub(super) fn with_gemm_output_stats(dispatch: &Dispatch) -> Option<Dispatch> {
    let gemm = matches!(dispatch.shader, Shader::Gemm | Shader::GemmVec4);
    if !gemm || dispatch.entry != "forward" || !plain_output(dispatch) {
        return None;
    }
    // dX of a layer with an odd channel count runs the scalar "forward" too.
    if !dispatch.bindings.contains(&(4, Slot::Output)) {
        return None;
    }
    let mut words: Vec<u32> = bytemuck::pod_collect_to_vec(&dispatch.uniform);
    words[STATS_ROWS_WORD] = REDUCE_CHUNK as u32;
    let mut bindings = dispatch.bindings.clone();
    bindings.push((OUTPUT_PARTIALS_BINDING, Slot::OutputPartials));
    Some(chunk_walking(dispatch, "forward_stats", words, bindings))
}

/// The wide and workgroup-memory tiles have no `*_stats` or `*_sums` entry points.
fn is_chunk_walking(dispatch: &Dispatch) -> bool {
    matches!(dispatch.entry, "forward_stats" | "forward_bt_sums")
}

/// Where gemm.wgsl's `*_stats` and `*_sums` entry points leave the batch norm's partials.
const OUTPUT_PARTIALS_BINDING: u32 = 6;
/// The `*_sums` entry points' batch-norm statistics and the batch norm's raw input.
const SUMS_NORM_BINDING: u32 = 7;
const SUMS_INPUT_BINDING: u32 = 8;
/// gemm.wgsl's uniform word that holds 1 + the `*_sums` batch norm's activation code.
const SUMS_WORD: usize = 17;

/// Whether `dispatch` is a GEMM whose C is stored as computed: whole (no K splits), no bias,
/// activation or accumulation.
fn plain_output(dispatch: &Dispatch) -> bool {
    [ACT_WORD, HAS_BIAS_WORD, GEMM_ACCUMULATE_WORD]
        .iter()
        .all(|&w| dispatch.uniform_word(w) == 0)
        && dispatch.uniform_word(SPLITS_WORD) == 1
}

/// `dispatch` (dX = dY W^T of a layer whose input is a batch norm's output, with
/// `activation`) as training runs it: like `with_gemm_output_stats`, one chunk of
/// `REDUCE_CHUNK` rows per invocation or subgroup, summing the batch norm's backward
/// partials over the dX it stores (dX is the gradient of that batch norm's output) into
/// `Slot::InputPartials`, laid out as the batch norm's own `backward_partial` leaves them;
/// that pass is then not needed. It reads the batch norm's raw input and statistics
/// (`Slot::Input`, `Slot::InputNorm`). `None` for any other dispatch.
pub(super) fn with_gemm_input_sums(
    dispatch: &Dispatch,
    activation: Activation,
) -> Option<Dispatch> {
    let input_gradient = dispatch.bindings.contains(&(1, Slot::GradOutput))
        && dispatch.bindings.contains(&(4, Slot::GradInput));
    let entry_point = match dispatch.shader {
        Shader::GemmVec4 => "forward_bt",
        Shader::Gemm => "forward",
        _ => return None,
    };
    if !input_gradient || dispatch.entry != entry_point || !plain_output(dispatch) {
        return None;
    }
    let mut words: Vec<u32> = bytemuck::pod_collect_to_vec(&dispatch.uniform);
    words[STATS_ROWS_WORD] = REDUCE_CHUNK as u32;
    words[SUMS_WORD] = activation.shader_code() + 1;
    let mut bindings = dispatch.bindings.clone();
    bindings.extend([
        (OUTPUT_PARTIALS_BINDING, Slot::InputPartials),
        (SUMS_NORM_BINDING, Slot::InputNorm),
        (SUMS_INPUT_BINDING, Slot::Input),
    ]);
    Some(chunk_walking(dispatch, "forward_bt_sums", words, bindings))
}

/// `dispatch` as an entry point that walks one chunk of `REDUCE_CHUNK` rows per
/// invocation (gemm.wgsl's `*_stats` and `*_sums`).
fn chunk_walking(
    dispatch: &Dispatch,
    entry: &'static str,
    words: Vec<u32>,
    bindings: Vec<(u32, Slot)>,
) -> Dispatch {
    let [m, n, lanes_x] = [M_WORD, N_WORD, LANES_X_WORD].map(|w| dispatch.uniform_word(w) as usize);
    Dispatch {
        entry,
        uniform: bytemuck::cast_slice(&words).to_vec(),
        bindings,
        workgroups: blocked_grid(chunks(m), n, lanes_x, 1),
        ..dispatch.clone()
    }
}

/// Rows and columns of C per workgroup of gemm_subgroup.wgsl (TILE_ROWS, TILE_COLS;
/// AT_TILE_ROWS and AT_TILE_COLS of gemm_subgroup_at.wgsl are the same, swapped).
const SUBGROUP_TILE_ROWS: usize = 16;
const SUBGROUP_TILE_COLS: usize = 32;

/// How a GEMM's operands can be read, from its uniform words.
struct OperandLayout {
    /// Whole aligned vec4s (the `*Vec4` modules, gemm_vec4.wgsl).
    vec4: bool,
    a_transposed: bool,
    b_transposed: bool,
}

impl OperandLayout {
    fn of(words: &[u32]) -> OperandLayout {
        let (n, k) = (words[1], words[2]);
        let (a_strides, b_strides) = ([words[4], words[5]], [words[6], words[7]]);
        let a_transposed = a_strides[0] == 1 && a_strides[1] != 1;
        let b_transposed = b_strides[0] == 1 && b_strides[1] != 1;
        // Every operand contiguous along one of its dimensions, sizes and strides keeping
        // vec4s aligned; K may be short of a multiple of 4 where A is zero-padded.
        let k_in_vec4s = k.is_multiple_of(4) || (words[13] != 0 && !a_transposed && !b_transposed);
        let vec4 = words[11].is_multiple_of(4)
            && k_in_vec4s
            && n.is_multiple_of(4)
            && !(a_transposed && b_transposed)
            && vec4_operand(a_strides, a_transposed)
            && vec4_operand(b_strides, b_transposed);
        OperandLayout {
            vec4,
            a_transposed,
            b_transposed,
        }
    }
}

/// The same GEMM dispatch for gemm_subgroup.wgsl, which reads the same uniform block and
/// bindings but tiles C differently; `None` for dispatches that are not GEMMs.
pub fn subgroup_gemm_dispatch(dispatch: &Dispatch) -> Option<Dispatch> {
    let (size, layout) = gemm_shape(dispatch)?;
    if is_chunk_walking(dispatch) {
        let entries = ["forward_subgroup_stats", "forward_subgroup_bt_sums"];
        return Some(chunk_walk_dispatch(dispatch, size, &layout, entries));
    }
    let entry = match (layout.vec4, layout.a_transposed, layout.b_transposed) {
        (true, true, false) => "forward_subgroup_at",
        (true, false, true) => "forward_subgroup_bt",
        _ => "forward_subgroup",
    };
    // forward_subgroup_at lays its tile out the other way round.
    let (tile_rows, tile_cols) = if entry == "forward_subgroup_at" {
        (SUBGROUP_TILE_COLS, SUBGROUP_TILE_ROWS)
    } else {
        (SUBGROUP_TILE_ROWS, SUBGROUP_TILE_COLS)
    };
    Some(Dispatch {
        shader: subgroup_shader(&layout),
        entry,
        workgroups: subgroup_grid(size, [tile_rows, tile_cols]),
        ..dispatch.clone()
    })
}

/// Rows of C per workgroup of gemm_subgroup.wgsl's 32x32 entry points (TALL_TILE_ROWS).
const TALL_SUBGROUP_TILE_ROWS: usize = 32;

/// The same GEMM on the subgroup GEMM's 32x32 tiles (`forward_subgroup_32*`); `None` for
/// dispatches those entry points do not cover (both operands transposed, chunks of
/// batch-norm rows that are not whole tiles, and anything that is not a GEMM).
pub fn tall_subgroup_gemm_dispatch(dispatch: &Dispatch) -> Option<Dispatch> {
    let (size, layout) = gemm_shape(dispatch)?;
    if is_chunk_walking(dispatch) {
        let rows_per_chunk = dispatch.uniform_word(STATS_ROWS_WORD) as usize;
        if !rows_per_chunk.is_multiple_of(TALL_SUBGROUP_TILE_ROWS) {
            return None;
        }
        let entries = ["forward_subgroup_32_stats", "forward_subgroup_32_bt_sums"];
        return Some(chunk_walk_dispatch(dispatch, size, &layout, entries));
    }
    if !matches!(dispatch.entry, "forward" | "forward_bt") {
        return None;
    }
    // dW's 32x32 tile (gemm_subgroup_at.wgsl) is the 32x16 one with twice the columns.
    let (entry, tile_cols) = match (layout.vec4, layout.a_transposed, layout.b_transposed) {
        (true, true, true) => return None,
        (true, true, false) => ("forward_subgroup_32_at", 2 * SUBGROUP_TILE_ROWS),
        (true, false, true) => ("forward_subgroup_32_bt", SUBGROUP_TILE_COLS),
        _ => ("forward_subgroup_32", SUBGROUP_TILE_COLS),
    };
    Some(Dispatch {
        shader: subgroup_shader(&layout),
        entry,
        workgroups: subgroup_grid(size, [TALL_SUBGROUP_TILE_ROWS, tile_cols]),
        ..dispatch.clone()
    })
}

/// A chunk-walking GEMM (`forward_stats` or `forward_bt_sums`) on the subgroup entry point
/// of its kind in `[stats, sums]`: one workgroup per chunk of rows and strip of columns.
fn chunk_walk_dispatch(
    dispatch: &Dispatch,
    size: [usize; 3],
    layout: &OperandLayout,
    [stats, sums]: [&'static str; 2],
) -> Dispatch {
    let rows_per_chunk = dispatch.uniform_word(STATS_ROWS_WORD) as usize;
    Dispatch {
        shader: subgroup_shader(layout),
        entry: if dispatch.entry == "forward_stats" {
            stats
        } else {
            sums
        },
        workgroups: subgroup_grid(size, [rows_per_chunk, SUBGROUP_TILE_COLS]),
        ..dispatch.clone()
    }
}

fn subgroup_shader(layout: &OperandLayout) -> Shader {
    if layout.vec4 {
        Shader::GemmSubgroupVec4
    } else {
        Shader::GemmSubgroup
    }
}

/// Rows and columns of C per workgroup of gemm_subgroup_wide.wgsl (WIDE_TILE_ROWS and
/// WIDE_TILE_COLS; WIDE_AT_TILE_ROWS and WIDE_AT_TILE_COLS are the same, swapped).
const WIDE_TILE_ROWS: usize = 32;
const WIDE_TILE_COLS: usize = 64;

/// The same GEMM dispatch for the wide tiles of gemm_subgroup_wide.wgsl; `None` where it
/// has no entry point (not a GEMM, or scalar accesses).
pub fn wide_subgroup_gemm_dispatch(dispatch: &Dispatch) -> Option<Dispatch> {
    let (size, layout) = gemm_shape(dispatch)?;
    if is_chunk_walking(dispatch) {
        return None;
    }
    let (entry, tile) = match (layout.vec4, layout.a_transposed, layout.b_transposed) {
        (false, _, _) | (true, true, true) => return None,
        (true, true, false) => ("forward_subgroup_wide_at", [WIDE_TILE_COLS, WIDE_TILE_ROWS]),
        (true, false, true) => ("forward_subgroup_wide_bt", [WIDE_TILE_ROWS, WIDE_TILE_COLS]),
        (true, false, false) => ("forward_subgroup_wide", [WIDE_TILE_ROWS, WIDE_TILE_COLS]),
    };
    Some(Dispatch {
        shader: Shader::GemmSubgroupVec4,
        entry,
        workgroups: subgroup_grid(size, tile),
        ..dispatch.clone()
    })
}

/// A GEMM dispatch's [m, n, splits] and operand layout, from its uniform words; `None` for
/// dispatches that are not GEMMs.
fn gemm_shape(dispatch: &Dispatch) -> Option<([usize; 3], OperandLayout)> {
    if !matches!(dispatch.shader, Shader::Gemm | Shader::GemmVec4) {
        return None;
    }
    let words: &[u32] = bytemuck::try_cast_slice(&dispatch.uniform).ok()?;
    let size = [words[0] as usize, words[1] as usize, words[10] as usize];
    Some((size, OperandLayout::of(words)))
}

/// The workgroups of a subgroup GEMM over [m, n] in `splits` K chunks. Row tiles vary
/// fastest, so the tiles that share a strip of B run one after another and find it in
/// cache; rows past the cap of x continue in z, after the splits.
pub(super) fn subgroup_grid(
    [m, n, splits]: [usize; 3],
    [tile_rows, tile_cols]: [usize; 2],
) -> [u32; 3] {
    let row_groups = m.div_ceil(tile_rows).max(1);
    let x = row_groups.min(MAX_GROUPS_PER_DIM);
    let z = row_groups.div_ceil(x) * splits.max(1);
    [x as u32, n.div_ceil(tile_cols).max(1) as u32, z as u32]
}

/// Height of a tile of gemm_tiled.wgsl (its width is always TILED_TILE_COLS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileRows {
    /// 64x64, 4x4 per invocation.
    R64,
    /// 128x64, 8x4 per invocation.
    R128,
}

const TILED_TILE_COLS: usize = 64;

/// The same GEMM dispatch for gemm_tiled.wgsl (workgroup-memory tiles); `None` for
/// dispatches that are not GEMMs.
pub fn tiled_gemm_dispatch(dispatch: &Dispatch, rows: TileRows) -> Option<Dispatch> {
    let ([m, n, splits], layout) = gemm_shape(dispatch)?;
    if is_chunk_walking(dispatch) {
        return None;
    }
    let vec4 = dispatch.shader == Shader::GemmVec4;
    let (shader, tile_rows) = match (rows, vec4) {
        (TileRows::R64, false) => (Shader::GemmTiled64, 64),
        (TileRows::R64, true) => (Shader::GemmTiled64Vec4, 64),
        (TileRows::R128, false) => (Shader::GemmTiled128, 128),
        (TileRows::R128, true) => (Shader::GemmTiled128Vec4, 128),
    };
    let row_groups = m.div_ceil(tile_rows).max(1);
    let y = row_groups.min(MAX_GROUPS_PER_DIM);
    let z = row_groups.div_ceil(y) * splits.max(1);
    Some(Dispatch {
        shader,
        entry: if layout.b_transposed {
            "tiled_bt"
        } else {
            "tiled"
        },
        workgroups: [
            n.div_ceil(TILED_TILE_COLS).max(1) as u32,
            y as u32,
            z as u32,
        ],
        ..dispatch.clone()
    })
}

/// Whether a [rows, cols] operand with these (row, column) strides reads as aligned vec4s
/// along its contiguous dimension.
fn vec4_operand(strides: [u32; 2], transposed: bool) -> bool {
    if transposed {
        strides[1].is_multiple_of(4)
    } else {
        strides[1] == 1 && strides[0].is_multiple_of(4)
    }
}

fn weight_grad_splits(rows: usize) -> usize {
    rows.div_ceil(K_CHUNK).max(1)
}

/// dW = X^T dY for a [rows, fan_in] input `x` and [rows, fan_out] output gradient, into
/// `ParamGrad(0)`; split over rows through `partials` when there are many.
pub(super) fn weight_gradient(
    (x, x_row_stride): (Slot, usize),
    rows: usize,
    fan_in: usize,
    fan_out: usize,
    partials: Slot,
) -> Vec<Dispatch> {
    let splits = weight_grad_splits(rows);
    let gemm = Gemm {
        a_strides: [1, x_row_stride],
        splits,
        ..Gemm::plain(fan_in, fan_out, rows)
    };
    if splits == 1 {
        return vec![gemm.dispatch(x, Slot::GradOutput, Slot::Unused, Slot::ParamGrad(0))];
    }
    vec![
        gemm.dispatch(x, Slot::GradOutput, Slot::Unused, partials),
        sum_partials(partials, Slot::ParamGrad(0), splits, fan_in * fan_out),
    ]
}

/// Scratch for `weight_gradient`'s partials.
pub(super) fn weight_gradient_scratch(rows: usize, fan_in: usize, fan_out: usize) -> ScratchSpec {
    let splits = weight_grad_splits(rows);
    ScratchSpec {
        floats: if splits > 1 {
            splits * fan_in * fan_out
        } else {
            1
        },
        persistent: false,
    }
}

/// dX = dY W^T for weights W [fan_in, fan_out], into `GradInput`.
pub(super) fn input_gradient(rows: usize, fan_in: usize, fan_out: usize) -> Dispatch {
    let gemm = Gemm {
        b_strides: [1, fan_out],
        ..Gemm::plain(rows, fan_in, fan_out)
    };
    gemm.dispatch(
        Slot::GradOutput,
        Slot::Param(0),
        Slot::Unused,
        Slot::GradInput,
    )
}

impl Pointwise {
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let [n, h, w, _] = nhwc(input)?;
        if self.out_channels == 0 {
            return Err("output channels must be positive".into());
        }
        Ok(vec![n, h, w, self.out_channels])
    }

    pub fn params(&self, input: &[usize]) -> Vec<ParamSpec> {
        let cin = input[3];
        let weight = ParamSpec::new(
            "weight",
            vec![cin, self.out_channels],
            ParamRole::Weight {
                fan_in: cin,
                depthwise: false,
            },
        )
        .with_row_stride(self.weight_row_stride());
        std::iter::once(weight)
            .chain(fused_bias(self.fused, self.out_channels))
            .collect()
    }

    pub fn mult_adds(&self, input: &[usize], output: &[usize]) -> u64 {
        output.iter().map(|&d| d as u64).product::<u64>() * input[3] as u64
    }

    fn rows(input: &[usize]) -> usize {
        input[0] * input[1] * input[2]
    }

    /// Floats between the rows of the weight on the GPU. Inference pads them where
    /// `padded_row_stride` says (its weights are only read); training keeps them dense,
    /// as its gradients, optimizer states and checkpoints are.
    fn weight_row_stride(&self) -> usize {
        match self.fused {
            Some(_) => padded_row_stride(self.out_channels),
            None => self.out_channels,
        }
    }

    #[doc(hidden)]
    pub fn forward(&self, input: &[usize], _output: &[usize]) -> Vec<Dispatch> {
        let gemm = Gemm {
            activation: self.fused.unwrap_or(Activation::None),
            has_bias: self.fused.is_some(),
            b_strides: [self.weight_row_stride(), 1],
            ..Gemm::plain(Self::rows(input), self.out_channels, input[3])
        };
        vec![gemm.dispatch(
            Slot::Input,
            Slot::Param(0),
            fused_bias_slot(self.fused),
            Slot::Output,
        )]
    }

    #[doc(hidden)]
    pub fn scratch(&self, input: &[usize], _output: &[usize]) -> Vec<ScratchSpec> {
        vec![weight_gradient_scratch(
            Self::rows(input),
            input[3],
            self.out_channels,
        )]
    }

    #[doc(hidden)]
    pub fn backward(&self, input: &[usize], _output: &[usize], input_grad: bool) -> Vec<Dispatch> {
        let rows = Self::rows(input);
        let mut dispatches = Vec::new();
        if input_grad {
            dispatches.push(input_gradient(rows, input[3], self.out_channels));
        }
        dispatches.extend(weight_gradient(
            (Slot::Input, input[3]),
            rows,
            input[3],
            self.out_channels,
            Slot::Scratch(0),
        ));
        dispatches
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernels(gemm: Gemm) -> [(Shader, &'static str); 2] {
        let plain = gemm.dispatch(Slot::Input, Slot::Param(0), Slot::Unused, Slot::Output);
        let subgroup = subgroup_gemm_dispatch(&plain).expect("a GEMM dispatch");
        [
            (plain.shader, plain.entry),
            (subgroup.shader, subgroup.entry),
        ]
    }

    // The vec4 kernels are where the speed is: every GEMM MobileNet runs must pick them.
    #[test]
    fn mobilenet_gemms_take_the_vec4_kernels() {
        // Forward pointwise [N*H*W, 64] x [64, 128].
        assert_eq!(
            kernels(Gemm::plain(2048, 128, 64)),
            [
                (Shader::GemmVec4, "forward"),
                (Shader::GemmSubgroupVec4, "forward_subgroup")
            ]
        );
        // dX = dY W^T.
        let input_grad = input_gradient(2048, 64, 128);
        assert_eq!(input_grad.shader, Shader::GemmVec4);
        assert_eq!(input_grad.entry, "forward_bt");
        let subgroup = subgroup_gemm_dispatch(&input_grad).expect("a GEMM dispatch");
        assert_eq!(subgroup.entry, "forward_subgroup_bt");
        // dW = X^T dY, split over rows: the subgroup kernel has a vec4 entry for it.
        let weight_grad = weight_gradient((Slot::Input, 64), 4096, 64, 128, Slot::Scratch(0));
        let subgroup = subgroup_gemm_dispatch(&weight_grad[0]).expect("a GEMM dispatch");
        assert_eq!(
            (subgroup.shader, subgroup.entry),
            (Shader::GemmSubgroupVec4, "forward_subgroup_at")
        );
        // The stem: K = 27 read from zero-padded rows of 28.
        let stem = Gemm {
            a_strides: [28, 1],
            a_zero_padded: true,
            ..Gemm::plain(512, 32, 27)
        };
        assert_eq!(
            kernels(stem)[1],
            (Shader::GemmSubgroupVec4, "forward_subgroup")
        );
    }

    #[test]
    fn tall_subgroup_tiles_take_every_operand_layout() {
        let forward = Gemm::plain(100, 70, 64).dispatch(
            Slot::Input,
            Slot::Param(0),
            Slot::Unused,
            Slot::Output,
        );
        let tall = tall_subgroup_gemm_dispatch(&forward).expect("a plain GEMM");
        assert_eq!(tall.entry, "forward_subgroup_32");
        // 32-row tiles (4 of them for 100 rows), then 32-column tiles (3 for 70 columns).
        assert_eq!(tall.workgroups, [4, 3, 1]);
        let input_grad = input_gradient(2048, 64, 128);
        let tall = tall_subgroup_gemm_dispatch(&input_grad).expect("dX is a plain GEMM");
        assert_eq!(tall.entry, "forward_subgroup_32_bt");
        let weight_grad = weight_gradient((Slot::Input, 64), 4096, 64, 128, Slot::Scratch(0));
        let tall = tall_subgroup_gemm_dispatch(&weight_grad[0]).expect("dW is a plain GEMM");
        assert_eq!(tall.entry, "forward_subgroup_32_at");
        // dW's C is 64x128: 2 row tiles of 32, 4 column tiles of 32.
        assert_eq!(tall.workgroups[..2], [2, 4]);
    }

    #[test]
    fn unaligned_gemms_fall_back_to_scalar_accesses() {
        // 10 classes: N is not a multiple of 4.
        assert_eq!(
            kernels(Gemm::plain(32, 10, 256)),
            [
                (Shader::Gemm, "forward"),
                (Shader::GemmSubgroup, "forward_subgroup")
            ]
        );
        // K = 27 without the zero padding.
        assert_eq!(kernels(Gemm::plain(512, 32, 27))[1].0, Shader::GemmSubgroup);
        // 13 input channels: rows of A are not vec4-aligned.
        assert_eq!(kernels(Gemm::plain(49, 24, 13))[0].0, Shader::Gemm);
    }

    #[test]
    fn subgroup_tiles_cover_the_output() {
        let forward = subgroup_gemm_dispatch(&Gemm::plain(100, 70, 64).dispatch(
            Slot::Input,
            Slot::Param(0),
            Slot::Unused,
            Slot::Output,
        ))
        .expect("a GEMM dispatch");
        // Row tiles first (16 rows), then column tiles (32 columns).
        assert_eq!(forward.workgroups, [7, 3, 1]);
        let weight_grad = weight_gradient((Slot::Input, 64), 4096, 64, 128, Slot::Scratch(0));
        let at = subgroup_gemm_dispatch(&weight_grad[0]).expect("a GEMM dispatch");
        // 32-row by 16-column tiles of the [64, 128] gradient, 4 splits of the 4096 rows.
        assert_eq!(at.workgroups, [2, 8, 4]);
    }

    #[test]
    fn the_forward_gemm_leaves_its_batch_norms_statistics_one_chunk_per_invocation() {
        let forward = Gemm::plain(1000, 72, 64).dispatch(
            Slot::Input,
            Slot::Param(0),
            Slot::Unused,
            Slot::Output,
        );
        let stats = with_gemm_output_stats(&forward).expect("a plain forward GEMM");
        assert_eq!(
            (stats.shader, stats.entry),
            (Shader::GemmVec4, "forward_stats")
        );
        assert!(stats.bindings.contains(&(6, Slot::OutputPartials)));
        assert_eq!(stats.uniform_word(STATS_ROWS_WORD), REDUCE_CHUNK as u32);
        // 72 columns: 16 lanes of 8 across, 4 lanes down, each one chunk of 256 rows; the
        // 4 chunks of 1000 rows fill one workgroup.
        assert_eq!(stats.workgroups, [1, 1, 1]);
        let subgroup = subgroup_gemm_dispatch(&stats).expect("a GEMM dispatch");
        assert_eq!(subgroup.entry, "forward_subgroup_stats");
        // A workgroup per chunk and 32 columns.
        assert_eq!(subgroup.workgroups, [4, 3, 1]);
        // The wide and workgroup-memory tiles have no such entry point.
        assert!(wide_subgroup_gemm_dispatch(&stats).is_none());
        assert!(tiled_gemm_dispatch(&stats, TileRows::R64).is_none());
        // Only C as the batch norm reads it: not a folded layer's, not dX's, not split.
        let folded = Gemm {
            activation: Activation::Relu,
            has_bias: true,
            ..Gemm::plain(1000, 72, 64)
        };
        let folded = folded.dispatch(Slot::Input, Slot::Param(0), Slot::Param(1), Slot::Output);
        assert!(with_gemm_output_stats(&folded).is_none());
        assert!(with_gemm_output_stats(&input_gradient(1000, 64, 72)).is_none());
        let weight_grad = weight_gradient((Slot::Input, 64), 4096, 64, 128, Slot::Scratch(0));
        assert!(with_gemm_output_stats(&weight_grad[0]).is_none());
    }

    #[test]
    fn the_input_gradient_gemm_sums_its_batch_norms_backward_partials() {
        let dx = input_gradient(1000, 64, 72);
        let sums = with_gemm_input_sums(&dx, Activation::Relu6).expect("a dX GEMM");
        assert_eq!(
            (sums.shader, sums.entry),
            (Shader::GemmVec4, "forward_bt_sums")
        );
        // ReLU6's code plus one.
        assert_eq!(sums.uniform_word(SUMS_WORD), 3);
        for binding in [
            (6, Slot::InputPartials),
            (7, Slot::InputNorm),
            (8, Slot::Input),
        ] {
            assert!(sums.bindings.contains(&binding), "{binding:?}");
        }
        let subgroup = subgroup_gemm_dispatch(&sums).expect("a GEMM dispatch");
        assert_eq!(subgroup.entry, "forward_subgroup_bt_sums");
        // A workgroup per chunk of 256 rows and 32 of the 64 columns.
        assert_eq!(subgroup.workgroups, [4, 2, 1]);
        assert!(wide_subgroup_gemm_dispatch(&sums).is_none());
        // 13 channels: the scalar kernel, B transposed through its strides.
        let odd = with_gemm_input_sums(&input_gradient(50, 13, 8), Activation::Relu);
        assert_eq!(odd.expect("a dX GEMM").shader, Shader::Gemm);
        // Not the forward GEMM, nor dW.
        let forward = Gemm::plain(1000, 72, 64).dispatch(
            Slot::Input,
            Slot::Param(0),
            Slot::Unused,
            Slot::Output,
        );
        assert!(with_gemm_input_sums(&forward, Activation::Relu).is_none());
        let weight_grad = weight_gradient((Slot::Input, 64), 4096, 64, 128, Slot::Scratch(0));
        assert!(with_gemm_input_sums(&weight_grad[0], Activation::Relu).is_none());
    }

    #[test]
    fn wide_tiles_cover_the_output_for_every_vec4_layout() {
        let plain = Gemm::plain(100, 72, 64).dispatch(
            Slot::Input,
            Slot::Param(0),
            Slot::Unused,
            Slot::Output,
        );
        let wide = wide_subgroup_gemm_dispatch(&plain).expect("a vec4 GEMM");
        assert_eq!(
            (wide.shader, wide.entry),
            (Shader::GemmSubgroupVec4, "forward_subgroup_wide")
        );
        // 32-row by 64-column tiles of [100, 72].
        assert_eq!(wide.workgroups, [4, 2, 1]);
        let input_grad = input_gradient(100, 64, 128);
        let wide = wide_subgroup_gemm_dispatch(&input_grad).expect("a vec4 GEMM");
        assert_eq!(wide.entry, "forward_subgroup_wide_bt");
        // dW = X^T dY: 64-row by 32-column tiles of the [64, 128] gradient, 4 splits.
        let weight_grad = weight_gradient((Slot::Input, 64), 4096, 64, 128, Slot::Scratch(0));
        let wide = wide_subgroup_gemm_dispatch(&weight_grad[0]).expect("a vec4 GEMM");
        assert_eq!(wide.entry, "forward_subgroup_wide_at");
        assert_eq!(wide.workgroups, [1, 4, 4]);
        // No entry for scalar accesses.
        let scalar = Gemm::plain(49, 24, 13).dispatch(
            Slot::Input,
            Slot::Param(0),
            Slot::Unused,
            Slot::Output,
        );
        assert!(wide_subgroup_gemm_dispatch(&scalar).is_none());
    }
}
