//! The GEMM behind the pointwise (1x1) convolution, the dense layer and the stem after
//! im2col, C = act(A B + bias), as gemm.wgsl computes it: its uniform block, its dispatch,
//! the training forms that leave batch norm's reductions in the epilogue, and the weight
//! and input gradients built from it. gemm_kernels.rs maps the same dispatch onto the
//! other GEMM kernels.

use super::REDUCE_CHUNK;
use super::SUM_PARTIALS_ACCUMULATE_WORD;
use super::{chunks, sum_partials, Activation, Dispatch, GpuLayout, ScratchSpec, Slot};
use crate::gpu::Shader;

/// Invocations per workgroup, and rows and columns of C per invocation; must match LANES,
/// ROWS and COLS in gemm.wgsl.
const GEMM_LANES: usize = 64;
const GEMM_ROWS: usize = 8;
const GEMM_COLS: usize = 8;
pub(super) const MAX_GROUPS_PER_DIM: usize = 65535;
/// K elements per split when a weight gradient reduces over many rows (split-K).
const K_CHUNK: usize = 1024;

/// gemm.wgsl's uniform block `GemmParams`, field for field (a test checks the names and
/// offsets against the shader), which every GEMM kernel reads. The dispatch transforms
/// below read and change a GEMM dispatch through it, never by a word's index.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct GemmWords {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    /// The epilogue's activation code.
    pub act: u32,
    pub a_row_stride: u32,
    pub a_col_stride: u32,
    pub b_row_stride: u32,
    pub b_col_stride: u32,
    pub has_bias: u32,
    /// Add the product to C (chunked batches' weight gradients, `accumulating`).
    pub accumulate: u32,
    pub splits: u32,
    pub k_chunk: u32,
    /// The blocked kernel's invocations across N.
    pub lanes_x: u32,
    pub a_zero_padded: u32,
    /// 0: A as stored; else 1 + the activation code of A's batch norm, applied on load.
    pub prologue: u32,
    /// A's channel is its row (dW = X^T dY reads X transposed).
    pub prologue_rows: u32,
    /// The `*_stats` and `*_sums` entry points: rows per chunk of the batch norm's partials.
    pub stats_rows: u32,
    /// The `*_sums` entry points: 1 + the activation code of the batch norm whose output's
    /// gradient C is.
    pub sums: u32,
    pub pad: [u32; 2],
    /// The `forward_*_dw` entry points (`with_depthwise_epilogue`): the depthwise layer
    /// after this one, its images' height and width in and out, stride, padding before
    /// the first row and column, and activation code.
    pub dw_in_h: u32,
    pub dw_in_w: u32,
    pub dw_out_h: u32,
    pub dw_out_w: u32,
    pub dw_stride: u32,
    pub dw_pad_top: u32,
    pub dw_pad_left: u32,
    pub dw_act: u32,
}

impl GemmWords {
    /// The words of a GEMM dispatch (gemm.wgsl, either access form); `None` for any other.
    pub(super) fn of(dispatch: &Dispatch) -> Option<GemmWords> {
        if !matches!(dispatch.shader, Shader::Gemm | Shader::GemmVec4) {
            return None;
        }
        bytemuck::try_pod_read_unaligned(&dispatch.uniform).ok()
    }

    pub(super) fn uniform(&self) -> Vec<u8> {
        bytemuck::bytes_of(self).to_vec()
    }

    /// C's [m, n] and the K split count.
    pub(super) fn size(&self) -> [usize; 3] {
        [self.m, self.n, self.splits].map(|v| v as usize)
    }

    /// A's (row, column) strides.
    pub(super) fn a_strides(&self) -> [u32; 2] {
        [self.a_row_stride, self.a_col_stride]
    }

    /// B's (row, column) strides.
    pub(super) fn b_strides(&self) -> [u32; 2] {
        [self.b_row_stride, self.b_col_stride]
    }

    /// C stored as computed: whole (no K splits), no bias, activation or accumulation.
    fn plain_output(&self) -> bool {
        self.act == 0 && self.has_bias == 0 && self.accumulate == 0 && self.splits == 1
    }
}

/// How a GEMM's weight (its B, [k, n]) is stored for a GEMM of `rows` rows of A: dense
/// unless it is `read_only` (an inference graph's; training's gradients, optimizer states
/// and checkpoints are dense), then as it reads fastest. Where the rows fill one row of
/// the 32x32 subgroup tiles (17 to 32 rows: MobileNet's 1x1-pixel layers and classifier at
/// batch 32), each workgroup streams its 32 columns of B once down the whole of K, and
/// stored transposed those columns are one contiguous run instead of 4 rows of K 128 bytes
/// wide per step, a page apart: on lavapipe the K = 1024 GEMMs at 32 rows took 1.0-1.1 ms
/// instead of 1.5-1.6, and lost 8-13% at 8 and 16 rows (the 16x32 tile) and at 49
/// (performance.md).
/// Elsewhere rows are padded where `padded_row_stride` says.
pub(super) fn weight_layout(read_only: bool, rows: usize, n: usize) -> GpuLayout {
    const ONE_ROW_OF_TALL_TILES: std::ops::RangeInclusive<usize> = 17..=32;
    if !read_only {
        return GpuLayout::Dense;
    }
    if ONE_ROW_OF_TALL_TILES.contains(&rows) {
        return GpuLayout::Transposed;
    }
    match padded_row_stride(n) {
        stride if stride == n => GpuLayout::Dense,
        stride => GpuLayout::PaddedRows(stride),
    }
}

/// Floats between the rows of a weight the GEMM reads as B (rows of K, `cols` = N wide)
/// for a faster read. Rows whose bytes are a multiple of 2 KiB all start in the same few
/// sets of a CPU's L1 cache (one way spans 4 KiB), which a tile walking down K fills with
/// its own lines; 64 more bytes a row spread them over the sets. On lavapipe at 32x32
/// inference the GEMMs with 512 and 1024 columns ran 10-40% faster (performance.md).
fn padded_row_stride(cols: usize) -> usize {
    const SET_ALIASING_BYTES: usize = 2048;
    if (cols * 4).is_multiple_of(SET_ALIASING_BYTES) {
        cols + 16
    } else {
        cols
    }
}

/// The (row, column) strides of a [k, n] weight held in `layout`, as the GEMM reads B.
pub(super) fn weight_strides(layout: GpuLayout, k: usize, n: usize) -> [usize; 2] {
    match layout {
        GpuLayout::Dense => [n, 1],
        GpuLayout::PaddedRows(stride) => [stride, 1],
        GpuLayout::Transposed => [1, k],
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
        let words = GemmWords {
            m: self.m as u32,
            n: self.n as u32,
            k: self.k as u32,
            act: self.activation.shader_code(),
            a_row_stride: self.a_strides[0] as u32,
            a_col_stride: self.a_strides[1] as u32,
            b_row_stride: self.b_strides[0] as u32,
            b_col_stride: self.b_strides[1] as u32,
            has_bias: self.has_bias as u32,
            accumulate: self.accumulate as u32,
            splits: self.splits.max(1) as u32,
            k_chunk: self.k_chunk() as u32,
            lanes_x: lanes_x as u32,
            a_zero_padded: self.a_zero_padded as u32,
            ..GemmWords::default()
        };
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
            uniform: words.uniform(),
            // Binding 5 (A's batch norm) is bound by `with_input_prologue`.
            bindings: vec![(1, a), (2, b), (3, bias), (4, c), (5, Slot::Unused)],
            workgroups,
        }
    }
}

/// How a GEMM's operands can be read, from its uniform words.
pub(super) struct OperandLayout {
    /// Whole aligned vec4s (the `*Vec4` modules, gemm_vec4.wgsl).
    pub vec4: bool,
    pub a_transposed: bool,
    pub b_transposed: bool,
}

impl OperandLayout {
    pub(super) fn of(words: &GemmWords) -> OperandLayout {
        let (a_strides, b_strides) = (words.a_strides(), words.b_strides());
        let a_transposed = a_strides[0] == 1 && a_strides[1] != 1;
        let b_transposed = b_strides[0] == 1 && b_strides[1] != 1;
        // Every operand contiguous along one of its dimensions, sizes and strides keeping
        // vec4s aligned; K may be short of a multiple of 4 where A is zero-padded.
        let k_in_vec4s = words.k.is_multiple_of(4)
            || (words.a_zero_padded != 0 && !a_transposed && !b_transposed);
        let vec4 = words.k_chunk.is_multiple_of(4)
            && k_in_vec4s
            && words.n.is_multiple_of(4)
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

/// Whether a [rows, cols] operand with these (row, column) strides reads as aligned vec4s
/// along its contiguous dimension.
fn vec4_operand(strides: [u32; 2], transposed: bool) -> bool {
    if transposed {
        strides[1].is_multiple_of(4)
    } else {
        strides[1] == 1 && strides[0].is_multiple_of(4)
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

/// `dispatch` (a forward GEMM whose C a batch norm normalises next) as training runs it:
/// each invocation or subgroup walks one chunk of `REDUCE_CHUNK` rows of C and leaves that
/// chunk's mean and sum of squared deviations of every column in `Slot::OutputPartials`,
/// laid out as the batch norm's own `stats_partial` leaves them (`BatchNorm::partials`);
/// that pass is then not needed. Only for C as the batch norm reads it: whole (no K
/// splits), no bias, activation or accumulation. `None` for any other dispatch.
pub(super) fn with_gemm_output_stats(dispatch: &Dispatch) -> Option<Dispatch> {
    let words = GemmWords::of(dispatch)?;
    if dispatch.entry != "forward" || !words.plain_output() {
        return None;
    }
    // dX of a layer with an odd channel count runs the scalar "forward" too.
    if !dispatch.bindings.contains(&(4, Slot::Output)) {
        return None;
    }
    let words = GemmWords {
        stats_rows: REDUCE_CHUNK as u32,
        ..words
    };
    let mut bindings = dispatch.bindings.clone();
    bindings.push((OUTPUT_PARTIALS_BINDING, Slot::OutputPartials));
    Some(chunk_walking(dispatch, "forward_stats", words, bindings))
}

/// The wide and workgroup-memory tiles have no `*_stats` or `*_sums` entry points.
pub(super) fn is_chunk_walking(dispatch: &Dispatch) -> bool {
    matches!(dispatch.entry, "forward_stats" | "forward_bt_sums")
}

/// Whether `dispatch` runs the depthwise layer after it in its epilogue
/// (`with_depthwise_epilogue`).
pub(super) fn is_depthwise_epilogue(dispatch: &Dispatch) -> bool {
    GemmWords::of(dispatch).is_some()
        && matches!(
            dispatch.entry,
            "forward_dw" | "forward_dw_bt" | "forward_dw16" | "forward_dw16_bt"
        )
}

/// Where gemm.wgsl's `*_stats` and `*_sums` entry points leave the batch norm's partials.
const OUTPUT_PARTIALS_BINDING: u32 = 6;
/// The `*_sums` entry points' batch-norm statistics and the batch norm's raw input.
const SUMS_NORM_BINDING: u32 = 7;
const SUMS_INPUT_BINDING: u32 = 8;

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
    let words = GemmWords::of(dispatch)?;
    let entry_point = match dispatch.shader {
        Shader::GemmVec4 => "forward_bt",
        _ => "forward",
    };
    if !input_gradient || dispatch.entry != entry_point || !words.plain_output() {
        return None;
    }
    let words = GemmWords {
        stats_rows: REDUCE_CHUNK as u32,
        sums: activation.shader_code() + 1,
        ..words
    };
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
    words: GemmWords,
    bindings: Vec<(u32, Slot)>,
) -> Dispatch {
    let [m, n, lanes_x] = [words.m, words.n, words.lanes_x].map(|v| v as usize);
    Dispatch {
        entry,
        uniform: words.uniform(),
        bindings,
        workgroups: blocked_grid(chunks(m), n, lanes_x, 1),
        ..dispatch.clone()
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

/// The same dispatch adding to its output instead of overwriting it, for the dispatches
/// that write parameter gradients (the GEMM, `sum_partials`): a plan that splits the batch
/// adds each later chunk's share. `None` for any other dispatch.
#[doc(hidden)]
pub fn accumulating(dispatch: &Dispatch) -> Option<Dispatch> {
    if let Some(words) = GemmWords::of(dispatch) {
        let words = GemmWords {
            accumulate: 1,
            ..words
        };
        return Some(Dispatch {
            uniform: words.uniform(),
            ..dispatch.clone()
        });
    }
    if !matches!(
        (dispatch.shader, dispatch.entry),
        (Shader::Reduce, "sum_partials" | "sum_partials4")
    ) {
        return None;
    }
    let mut dispatch = dispatch.clone();
    dispatch.set_uniform_word(SUM_PARTIALS_ACCUMULATE_WORD, 1);
    Some(dispatch)
}

/// The forward GEMM of a layer without bias, X [m, k] times the weight [k, n]: the tests'
/// plain GEMM.
#[cfg(test)]
pub(super) fn plain_forward(m: usize, n: usize, k: usize) -> Dispatch {
    Gemm::plain(m, n, k).dispatch(Slot::Input, Slot::Param(0), Slot::Unused, Slot::Output)
}

#[cfg(test)]
mod tests {
    use super::super::column_sum;
    use super::super::gemm_kernels::{
        subgroup_gemm_dispatch, tiled_gemm_dispatch, wide_subgroup_gemm_dispatch, TileRows,
    };
    use super::*;

    #[test]
    fn the_forward_gemm_leaves_its_batch_norms_statistics_one_chunk_per_invocation() {
        let forward = plain_forward(1000, 72, 64);
        let stats = with_gemm_output_stats(&forward).expect("a plain forward GEMM");
        assert_eq!(
            (stats.shader, stats.entry),
            (Shader::GemmVec4, "forward_stats")
        );
        assert!(stats.bindings.contains(&(6, Slot::OutputPartials)));
        assert_eq!(
            GemmWords::of(&stats).map(|w| w.stats_rows),
            Some(REDUCE_CHUNK as u32)
        );
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
        assert_eq!(GemmWords::of(&sums).map(|w| w.sums), Some(3));
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
        let forward = plain_forward(1000, 72, 64);
        assert!(with_gemm_input_sums(&forward, Activation::Relu).is_none());
        let weight_grad = weight_gradient((Slot::Input, 64), 4096, 64, 128, Slot::Scratch(0));
        assert!(with_gemm_input_sums(&weight_grad[0], Activation::Relu).is_none());
    }

    #[test]
    fn accumulating_gemms_and_partial_sums_add_to_their_output() {
        let weight_grad = weight_gradient((Slot::Input, 64), 4096, 64, 128, Slot::Scratch(0));
        assert_eq!(weight_grad.len(), 2, "a split dW GEMM and its sum");
        let gemm = accumulating(&weight_grad[0]).expect("the GEMM accumulates");
        let words = GemmWords::of(&gemm).expect("a GEMM");
        assert_eq!(words.accumulate, 1);
        assert_eq!(
            GemmWords {
                accumulate: 0,
                ..words
            },
            GemmWords::of(&weight_grad[0]).expect("a GEMM"),
            "only the accumulate word changes"
        );
        for len in [4096, 4098] {
            let sum = sum_partials(Slot::Scratch(0), Slot::Output, 3, len);
            assert_eq!(sum.uniform_word(SUM_PARTIALS_ACCUMULATE_WORD), 0);
            let added = accumulating(&sum).expect("sum_partials accumulates");
            assert_eq!(added.uniform_word(SUM_PARTIALS_ACCUMULATE_WORD), 1);
        }
        let column = column_sum(Slot::Input, Slot::Scratch(0), Slot::Output, 10, 4);
        assert!(accumulating(&column[0]).is_none());
    }

    /// gemm.wgsl's `GemmParams` and `GemmWords` name the same words in the same places.
    #[test]
    fn the_words_match_the_shaders_uniform_block() {
        use super::super::dispatch::{check_words_against_shader, field_offsets};
        let fields = field_offsets!(GemmWords;
            m, n, k, act, a_row_stride, a_col_stride, b_row_stride, b_col_stride, has_bias,
            accumulate, splits, k_chunk, lanes_x, a_zero_padded, prologue, prologue_rows,
            stats_rows, sums, dw_in_h, dw_in_w, dw_out_h, dw_out_w, dw_stride, dw_pad_top,
            dw_pad_left, dw_act);
        for shader in [Shader::Gemm, Shader::GemmVec4, Shader::GemmSubgroupVec4] {
            let size = std::mem::size_of::<GemmWords>();
            check_words_against_shader(shader, "GemmParams", &fields, size);
        }
    }
}
