// The wide tile of the subgroup GEMM, appended to its vec4 module after gemm_subgroup.wgsl
// (whose TileOrigin, fma_4k and accesses it shares).
//
// On lavapipe a load costs a loop over the 8 lanes whatever its width, and the loads, not
// the multiply-adds, bound gemm_subgroup.wgsl's 16x32 tile (6 vec4 loads per lane per 4
// steps of K for 256 vector multiply-adds). This tile is 32x64: lane j loads rows j,
// 8 + j, 16 + j and 24 + j of A and owns columns 4j .. 4j + 3 and 32 + 4j .. 32 + 4j + 3,
// so 12 loads feed 1024 multiply-adds. Its 64 accumulators do not fit the registers; the
// spills go to the CPU's cache, which is far cheaper than another load loop.
const WIDE_TILE_ROWS: u32 = 32u;
const WIDE_TILE_COLS: u32 = 64u;

// 8 rows of the wide tile, in the two column blocks of the lane: r0-r7 at its first 4
// columns, r8-r15 at the 4 columns 32 further on.
fn fma_rows8(t: Tile, a: vec4<f32>, lo: mat4x4<f32>, hi: mat4x4<f32>) -> Tile {
    var u = t;
    var x = subgroupShuffle(a, 0u);
    u.r0 = fma_4k(u.r0, x, lo);
    u.r8 = fma_4k(u.r8, x, hi);
    x = subgroupShuffle(a, 1u);
    u.r1 = fma_4k(u.r1, x, lo);
    u.r9 = fma_4k(u.r9, x, hi);
    x = subgroupShuffle(a, 2u);
    u.r2 = fma_4k(u.r2, x, lo);
    u.r10 = fma_4k(u.r10, x, hi);
    x = subgroupShuffle(a, 3u);
    u.r3 = fma_4k(u.r3, x, lo);
    u.r11 = fma_4k(u.r11, x, hi);
    x = subgroupShuffle(a, 4u);
    u.r4 = fma_4k(u.r4, x, lo);
    u.r12 = fma_4k(u.r12, x, hi);
    x = subgroupShuffle(a, 5u);
    u.r5 = fma_4k(u.r5, x, lo);
    u.r13 = fma_4k(u.r13, x, hi);
    x = subgroupShuffle(a, 6u);
    u.r6 = fma_4k(u.r6, x, lo);
    u.r14 = fma_4k(u.r14, x, hi);
    x = subgroupShuffle(a, 7u);
    u.r7 = fma_4k(u.r7, x, lo);
    u.r15 = fma_4k(u.r15, x, hi);
    return u;
}

// Rows 8g .. 8g + 7 of the tile, for g = 0 .. 3.
struct WideTile {
    g0: Tile, g1: Tile, g2: Tile, g3: Tile,
}

// As forward_subgroup, on the wide tile.
@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_wide(@builtin(workgroup_id) wg: vec3<u32>,
                         @builtin(subgroup_invocation_id) lane: u32,
                         @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = tile_origin_of(wg, nwg, lane, WIDE_TILE_ROWS, WIDE_TILE_COLS);
    store_wide_tile(at, accumulate_wide_tile(at, lane, false));
}

// For B stored transposed (contiguous along K), as in dX = dY W^T.
@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_wide_bt(@builtin(workgroup_id) wg: vec3<u32>,
                            @builtin(subgroup_invocation_id) lane: u32,
                            @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = tile_origin_of(wg, nwg, lane, WIDE_TILE_ROWS, WIDE_TILE_COLS);
    store_wide_tile(at, accumulate_wide_tile(at, lane, true));
}


fn accumulate_wide_tile(at: TileOrigin, lane: u32, b_transposed: bool) -> WideTile {
    // Out-of-range rows read a clamped, valid row and are not stored; columns past N read
    // clamped columns (load_b4x4) and are not stored either.
    let last_row = p.m - 1u;
    let row = at.row0 + lane;
    let rows = min(vec4<u32>(row, row + 8u, row + 16u, row + 24u), vec4<u32>(last_row));
    let k_first = at.split * p.k_chunk;
    let k_last = min(k_first + p.k_chunk, p.k);
    var t = WideTile();
    for (var kk = k_first; kk < k_last; kk += 4u) {
        let lo = load_b4x4(kk, k_last, at.col, b_transposed);
        let hi = load_b4x4(kk, k_last, at.col + 32u, b_transposed);
        let affine = a_affine(kk, k_last);
        t.g0 = fma_rows8(t.g0, load_a4(rows.x, kk, k_last, affine), lo, hi);
        t.g1 = fma_rows8(t.g1, load_a4(rows.y, kk, k_last, affine), lo, hi);
        t.g2 = fma_rows8(t.g2, load_a4(rows.z, kk, k_last, affine), lo, hi);
        t.g3 = fma_rows8(t.g3, load_a4(rows.w, kk, k_last, affine), lo, hi);
    }
    return t;
}

// Each Tile from fma_rows8 holds 8 rows at the lane's two column blocks, 32 apart.
fn store_wide_tile(at: TileOrigin, t: WideTile) {
    store_rows8(at.split, at.row0, at.col, at.col + 32u, t.g0);
    store_rows8(at.split, at.row0 + 8u, at.col, at.col + 32u, t.g1);
    store_rows8(at.split, at.row0 + 16u, at.col, at.col + 32u, t.g2);
    store_rows8(at.split, at.row0 + 24u, at.col, at.col + 32u, t.g3);
}

// dW = X^T dY on a 64x32 tile (gemm_subgroup_at.wgsl's 32x16 doubled both ways): lane j
// owns rows 4j .. 4j + 3 and 32 + 4j .. 32 + 4j + 3 (one vec4 of the transposed A per step
// of K for each), and the 32 columns of B reach every lane by shuffles: lane L loads B's
// row k + L / 2 at columns 16 (L % 2) .. + 15. Again 12 loads per 1024 multiply-adds.
const WIDE_AT_TILE_ROWS: u32 = 64u;
const WIDE_AT_TILE_COLS: u32 = 32u;

@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_wide_at(@builtin(workgroup_id) wg: vec3<u32>,
                            @builtin(subgroup_invocation_id) lane: u32,
                            @builtin(num_workgroups) nwg: vec3<u32>) {
    let split = wg.z % p.splits;
    let row0 = (wg.x + (wg.z / p.splits) * nwg.x) * WIDE_AT_TILE_ROWS + 4u * lane;
    let col0 = wg.y * WIDE_AT_TILE_COLS;
    let t = accumulate_wide_tile_at(split, row0, col0, lane);
    store_tile_at(split, row0, col0, t.g0);
    store_tile_at(split, row0, col0 + 16u, t.g1);
    store_tile_at(split, row0 + 32u, col0, t.g2);
    store_tile_at(split, row0 + 32u, col0 + 16u, t.g3);
}

// g0, g1: rows 4j .. 4j + 3 at columns col0 .. + 15 and col0 + 16 .. + 31; g2, g3: the
// same columns of rows 32 + 4j .. 32 + 4j + 3. Rows past M read the last vec4 of A's rows
// and columns past N the last vec4 of B's, and are not stored.
fn accumulate_wide_tile_at(split: u32, row: u32, col0: u32, lane: u32) -> WideTile {
    let last_vec4 = (p.m - 1u) & ~3u;
    let a_lo = min(row, last_vec4) / 4u;
    let a_hi = min(row + 32u, last_vec4) / 4u;
    let lo_affine = row_affine(a_lo);
    let hi_affine = row_affine(a_hi);
    let a_step = p.a_col_stride / 4u;
    let b_cols = b_vec4s16(col0, lane);
    let b_step = p.b_row_stride / 4u;
    let k_first = split * p.k_chunk;
    let k_last = min(k_first + p.k_chunk, p.k);
    var t = WideTile();
    for (var kk = k_first; kk < k_last; kk += 4u) {
        let lo = prologued_steps4(a_steps4(kk * a_step + a_lo, a_step), lo_affine);
        let hi = prologued_steps4(a_steps4(kk * a_step + a_hi, a_step), hi_affine);
        let bv = b_row16((kk + lane / 2u) * b_step, b_cols);
        // Columns col0 + 4q .. + 3 (loaded by even lanes), then col0 + 16 + 4q .. (odd).
        let even = columns16(bv, 0u);
        t.g0 = fma_cols16(t.g0, lo, even);
        t.g2 = fma_cols16(t.g2, hi, even);
        let odd = columns16(bv, 1u);
        t.g1 = fma_cols16(t.g1, lo, odd);
        t.g3 = fma_cols16(t.g3, hi, odd);
    }
    return t;
}
