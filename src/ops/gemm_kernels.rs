//! The GEMM's dispatch (gemm.rs) on each of the other GEMM kernels the tuner may pick:
//! gemm_subgroup.wgsl's 16x32 and 32x32 tiles, gemm_subgroup_wide.wgsl's 32x64 ones and
//! gemm_tiled.wgsl's workgroup-memory tiles. They read the same uniform block and bindings
//! and tile C differently, so each mapping picks an entry point and a grid.

use super::gemm::{
    is_chunk_walking, is_depthwise_epilogue, GemmWords, OperandLayout, MAX_GROUPS_PER_DIM,
};
use super::Dispatch;
use crate::gpu::Shader;

/// Rows and columns of C per workgroup of gemm_subgroup.wgsl (TILE_ROWS, TILE_COLS;
/// AT_TILE_ROWS and AT_TILE_COLS of gemm_subgroup_at.wgsl are the same, swapped).
const SUBGROUP_TILE_ROWS: usize = 16;
const SUBGROUP_TILE_COLS: usize = 32;

/// The same GEMM dispatch for gemm_subgroup.wgsl, which reads the same uniform block and
/// bindings but tiles C differently; `None` for dispatches that are not GEMMs.
pub fn subgroup_gemm_dispatch(dispatch: &Dispatch) -> Option<Dispatch> {
    let (words, layout) = gemm_words(dispatch)?;
    let size = words.size();
    if is_depthwise_epilogue(dispatch) {
        return None;
    }
    if is_chunk_walking(dispatch) {
        let entries = ["forward_subgroup_stats", "forward_subgroup_bt_sums"];
        return Some(chunk_walk_dispatch(dispatch, &words, &layout, entries));
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
    let (words, layout) = gemm_words(dispatch)?;
    let size = words.size();
    if is_chunk_walking(dispatch) {
        if !(words.stats_rows as usize).is_multiple_of(TALL_SUBGROUP_TILE_ROWS) {
            return None;
        }
        let entries = ["forward_subgroup_32_stats", "forward_subgroup_32_bt_sums"];
        return Some(chunk_walk_dispatch(dispatch, &words, &layout, entries));
    }
    if is_depthwise_epilogue(dispatch) {
        return Some(Dispatch {
            shader: subgroup_shader(&layout),
            entry: match dispatch.entry {
                "forward_dw" => "forward_subgroup_32_dw",
                "forward_dw_bt" => "forward_subgroup_32_dw_bt",
                "forward_dw16" => "forward_subgroup_32_dw16",
                _ => "forward_subgroup_32_dw16_bt",
            },
            workgroups: subgroup_grid(size, [TALL_SUBGROUP_TILE_ROWS, SUBGROUP_TILE_COLS]),
            ..dispatch.clone()
        });
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
    words: &GemmWords,
    layout: &OperandLayout,
    [stats, sums]: [&'static str; 2],
) -> Dispatch {
    let rows_per_chunk = words.stats_rows as usize;
    Dispatch {
        shader: subgroup_shader(layout),
        entry: if dispatch.entry == "forward_stats" {
            stats
        } else {
            sums
        },
        workgroups: subgroup_grid(words.size(), [rows_per_chunk, SUBGROUP_TILE_COLS]),
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

/// K and N of the GEMMs that gemm_subgroup.wgsl's whole-row lanes take (NARROW_MAX).
const NARROW_MAX: usize = 16;

/// The narrow GEMMs on gemm_subgroup.wgsl's whole-row lanes (`subgroup-rows`), where the
/// operands move as vec4s: the chunk-walking ones (the forward with batch-norm statistics,
/// the dX with backward sums) where K and N are at most 16, one workgroup per chunk of rows
/// and every column; and the weight gradients (A transposed) where M and N are, one
/// workgroup per split of K and all of C. `None` for any other dispatch.
pub fn narrow_subgroup_gemm_dispatch(dispatch: &Dispatch) -> Option<Dispatch> {
    let (words, layout) = gemm_words(dispatch)?;
    let [m, n, k] = [words.m, words.n, words.k].map(|d| d as usize);
    let (entry, narrow, tile) = match (dispatch.entry, layout.a_transposed, layout.b_transposed) {
        ("forward_stats", false, false) => (
            "forward_subgroup_rows_stats",
            k.max(n) <= NARROW_MAX,
            [words.stats_rows as usize, NARROW_MAX],
        ),
        ("forward_bt_sums", false, true) => (
            "forward_subgroup_rows_bt_sums",
            k.max(n) <= NARROW_MAX,
            [words.stats_rows as usize, NARROW_MAX],
        ),
        ("forward", true, false) => (
            "forward_subgroup_rows_at",
            m.max(n) <= NARROW_MAX,
            [NARROW_MAX, NARROW_MAX],
        ),
        _ => return None,
    };
    if !(narrow && layout.vec4) {
        return None;
    }
    Some(Dispatch {
        shader: Shader::GemmSubgroupVec4,
        entry,
        workgroups: subgroup_grid(words.size(), tile),
        ..dispatch.clone()
    })
}

/// Rows and columns of C per workgroup of gemm_subgroup_wide.wgsl (WIDE_TILE_ROWS and
/// WIDE_TILE_COLS; WIDE_AT_TILE_ROWS and WIDE_AT_TILE_COLS are the same, swapped).
const WIDE_TILE_ROWS: usize = 32;
const WIDE_TILE_COLS: usize = 64;

/// The same GEMM dispatch for the wide tiles of gemm_subgroup_wide.wgsl; `None` where it
/// has no entry point (not a GEMM, or scalar accesses).
pub fn wide_subgroup_gemm_dispatch(dispatch: &Dispatch) -> Option<Dispatch> {
    let (words, layout) = gemm_words(dispatch)?;
    if is_chunk_walking(dispatch) || is_depthwise_epilogue(dispatch) {
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
        workgroups: subgroup_grid(words.size(), tile),
        ..dispatch.clone()
    })
}

/// A GEMM dispatch's uniform words and operand layout; `None` for dispatches that are not
/// GEMMs.
fn gemm_words(dispatch: &Dispatch) -> Option<(GemmWords, OperandLayout)> {
    let words = GemmWords::of(dispatch)?;
    Some((words, OperandLayout::of(&words)))
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
    let (words, layout) = gemm_words(dispatch)?;
    let [m, n, splits] = words.size();
    if is_chunk_walking(dispatch) || is_depthwise_epilogue(dispatch) {
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

#[cfg(test)]
mod tests {
    use super::super::gemm::{input_gradient, plain_forward, weight_gradient, Gemm};
    use super::super::Slot;
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
    fn narrow_chunk_walks_take_whole_rows() {
        use super::super::gemm::with_gemm_output_stats;
        let stats = with_gemm_output_stats(&plain_forward(25088, 16, 8)).expect("a forward");
        let narrow = narrow_subgroup_gemm_dispatch(&stats).expect("K and N of 16 or less");
        assert_eq!(narrow.entry, "forward_subgroup_rows_stats");
        // One workgroup per chunk of 256 rows, all 16 columns.
        assert_eq!(narrow.workgroups, [98, 1, 1]);
        let sums = super::super::gemm::with_gemm_input_sums(
            &input_gradient(25088, 8, 16),
            super::super::Activation::Relu,
        )
        .expect("a dX GEMM");
        let narrow = narrow_subgroup_gemm_dispatch(&sums).expect("K and N of 16 or less");
        assert_eq!(narrow.entry, "forward_subgroup_rows_bt_sums");
        let wide = with_gemm_output_stats(&plain_forward(25088, 32, 8)).expect("a forward");
        assert!(narrow_subgroup_gemm_dispatch(&wide).is_none());
    }

    #[test]
    fn narrow_weight_gradients_take_whole_rows() {
        let dw = |fan_in, fan_out| {
            weight_gradient(
                (Slot::Input, fan_in),
                25088,
                fan_in,
                fan_out,
                Slot::Scratch(0),
            )
            .remove(0)
        };
        let narrow = narrow_subgroup_gemm_dispatch(&dw(8, 16)).expect("M and N of 16 or less");
        assert_eq!(narrow.entry, "forward_subgroup_rows_at");
        // One workgroup per split of 1024 rows of K.
        assert_eq!(narrow.workgroups, [1, 1, 25]);
        assert!(narrow_subgroup_gemm_dispatch(&dw(12, 8)).is_some());
        assert!(narrow_subgroup_gemm_dispatch(&dw(32, 16)).is_none());
        assert!(narrow_subgroup_gemm_dispatch(&dw(16, 24)).is_none());
        // A plain forward GEMM of the same size is not a weight gradient.
        assert!(narrow_subgroup_gemm_dispatch(&plain_forward(25088, 16, 8)).is_none());
    }

    #[test]
    fn tall_subgroup_tiles_take_every_operand_layout() {
        let forward = plain_forward(100, 70, 64);
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
        let forward = subgroup_gemm_dispatch(&plain_forward(100, 70, 64)).expect("a GEMM dispatch");
        // Row tiles first (16 rows), then column tiles (32 columns).
        assert_eq!(forward.workgroups, [7, 3, 1]);
        let weight_grad = weight_gradient((Slot::Input, 64), 4096, 64, 128, Slot::Scratch(0));
        let at = subgroup_gemm_dispatch(&weight_grad[0]).expect("a GEMM dispatch");
        // 32-row by 16-column tiles of the [64, 128] gradient, 4 splits of the 4096 rows.
        assert_eq!(at.workgroups, [2, 8, 4]);
    }

    #[test]
    fn wide_tiles_cover_the_output_for_every_vec4_layout() {
        let plain = plain_forward(100, 72, 64);
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
        let scalar = plain_forward(49, 24, 13);
        assert!(wide_subgroup_gemm_dispatch(&scalar).is_none());
    }
}
