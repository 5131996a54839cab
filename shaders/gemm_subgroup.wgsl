// The GEMM of gemm.wgsl for adapters whose subgroups are 8 lanes wide and cheap to
// shuffle (software Vulkan on a CPU, where a subgroup is one SIMD register and every
// memory access is a loop over the lanes). A workgroup is one subgroup and computes a 16x32
// block of C: lane j loads rows j and 8 + j of A and owns columns 4j .. 4j + 3 of the
// block; the A values reach every lane by shuffles, so each lane does 64 multiply-adds
// per step of K while loading 2 values of A and 4 of B. B arrives in 4x4 blocks (4 steps of
// K by the lane's 4 columns), multiplied by matrix-vector products.
//
// Appended to gemm.wgsl (its parameters, bindings, memory accesses and Tile), in a module of
// its own because subgroup operations need a device feature the base kernel must not
// depend on.

const SUBGROUP_LANES: u32 = 8u;
const TILE_ROWS: u32 = 16u;
const TILE_COLS: u32 = 32u;


// acc + 4 steps of K: row `a` (held by lane `src`) times the B rows in the columns of `b`.
fn fma_row4(acc: vec4<f32>, a: vec4<f32>, src: u32, b: mat4x4<f32>) -> vec4<f32> {
    return fma_4k(acc, subgroupShuffle(a, src), b);
}

// The tile's 16 rows + 4 steps of K: rows 0-7 held by lanes 0-7 in `lo`, rows 8-15 in `hi`.
fn fma_rows16(t: Tile, lo: vec4<f32>, hi: vec4<f32>, b: mat4x4<f32>) -> Tile {
    return Tile(fma_row4(t.r0, lo, 0u, b), fma_row4(t.r1, lo, 1u, b), fma_row4(t.r2, lo, 2u, b),
                fma_row4(t.r3, lo, 3u, b), fma_row4(t.r4, lo, 4u, b), fma_row4(t.r5, lo, 5u, b),
                fma_row4(t.r6, lo, 6u, b), fma_row4(t.r7, lo, 7u, b), fma_row4(t.r8, hi, 0u, b),
                fma_row4(t.r9, hi, 1u, b), fma_row4(t.r10, hi, 2u, b), fma_row4(t.r11, hi, 3u, b),
                fma_row4(t.r12, hi, 4u, b), fma_row4(t.r13, hi, 5u, b), fma_row4(t.r14, hi, 6u, b),
                fma_row4(t.r15, hi, 7u, b));
}

// Entry points for the operand layouts (gemm_subgroup_at.wgsl adds one for transposed A).
// The transposition flag is a literal, so the compiler keeps one branch of each load inside
// the loop. The row test returns early (the
// same for every lane, so the subgroup stays whole for the shuffles); lanes past the last
// column computed clamped copies and store nothing. Helpers keep to a single return, and
// the loop stays out of conditionals: both cost lavapipe mask bookkeeping in the loop.
@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = tile_origin(wg, nwg, lane);
    if at.row0 >= p.m { return; }
    let t = accumulate_tile(at, lane, false);
    if at.col < p.n { store_tile(at, t); }
}

// For B stored transposed (contiguous along K), as in dX = dY W^T.
@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_bt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = tile_origin(wg, nwg, lane);
    if at.row0 >= p.m { return; }
    let t = accumulate_tile(at, lane, true);
    if at.col < p.n { store_tile(at, t); }
}

// The same GEMM in 32x32 tiles (`subgroup-32x32`): lane j also loads rows 16 + j and 24 + j,
// and the second 16 rows reuse the lane's B block, so a tile loads 32 values of B per lane
// per 4 steps of K for 512 multiply-adds instead of 256. On lavapipe, where every load is a
// loop over the lanes, that outweighs the accumulators' spills to the CPU's cache.
const TALL_TILE_ROWS: u32 = 32u;

@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_32(@builtin(workgroup_id) wg: vec3<u32>,
                       @builtin(subgroup_invocation_id) lane: u32,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    tall_tile(tile_origin_of(wg, nwg, lane, TALL_TILE_ROWS, TILE_COLS), lane, false);
}

@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_32_bt(@builtin(workgroup_id) wg: vec3<u32>,
                          @builtin(subgroup_invocation_id) lane: u32,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    tall_tile(tile_origin_of(wg, nwg, lane, TALL_TILE_ROWS, TILE_COLS), lane, true);
}

// One 32x32 tile, whole (the row test is the same for every lane).
fn tall_tile(at: TileOrigin, lane: u32, b_transposed: bool) {
    if at.row0 < p.m {
        store_tall_tile(at, accumulate_tall_tile(at, lane, b_transposed));
    }
}

// gemm.wgsl's forward_dw on 32x32 tiles: a lane's 32 rows hold whole images, so it runs
// the depthwise layer after this pointwise one on its registers and stores that layer's
// output (see store_dw_group).
@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_32_dw(@builtin(workgroup_id) wg: vec3<u32>,
                          @builtin(subgroup_invocation_id) lane: u32,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    dw_tall_tile(tile_origin_of(wg, nwg, lane, TALL_TILE_ROWS, TILE_COLS), lane, false);
}

// For the pointwise weight stored transposed (`weight_layout` in ops/gemm.rs).
@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_32_dw_bt(@builtin(workgroup_id) wg: vec3<u32>,
                             @builtin(subgroup_invocation_id) lane: u32,
                             @builtin(num_workgroups) nwg: vec3<u32>) {
    dw_tall_tile(tile_origin_of(wg, nwg, lane, TALL_TILE_ROWS, TILE_COLS), lane, true);
}

fn dw_tall_tile(at: TileOrigin, lane: u32, b_transposed: bool) {
    if at.row0 < p.m {
        let t = accumulate_tall_tile(at, lane, b_transposed);
        let taps = dw_group_taps(at.col);
        store_dw_tile(at.row0, at.col, taps, t.upper);
        store_dw_tile(at.row0 + TILE_ROWS, at.col, taps, t.lower);
    }
}

// 16 rows of the tile from row0 through the depthwise layer.
fn store_dw_tile(row0: u32, col: u32, taps: DwGroupTaps, t: Tile) {
    store_dw_rows8(row0, col, taps, t.r0, t.r1, t.r2, t.r3, t.r4, t.r5, t.r6, t.r7);
    store_dw_rows8(row0 + 8u, col, taps, t.r8, t.r9, t.r10, t.r11, t.r12, t.r13, t.r14, t.r15);
}

// forward_subgroup_32_dw on images of 4x4 pixels (`with_depthwise_epilogue`): each 16-row
// half of a lane's tile is one image, so the depthwise layer after this pointwise one runs
// on the lane's registers, its windows written out image row by image row (stride 1, or
// stride 2 with the padding before the image of either 1 or 0 pixels).
@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_32_dw16(@builtin(workgroup_id) wg: vec3<u32>,
                            @builtin(subgroup_invocation_id) lane: u32,
                            @builtin(num_workgroups) nwg: vec3<u32>) {
    dw16_tall_tile(tile_origin_of(wg, nwg, lane, TALL_TILE_ROWS, TILE_COLS), lane, false);
}

@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_32_dw16_bt(@builtin(workgroup_id) wg: vec3<u32>,
                               @builtin(subgroup_invocation_id) lane: u32,
                               @builtin(num_workgroups) nwg: vec3<u32>) {
    dw16_tall_tile(tile_origin_of(wg, nwg, lane, TALL_TILE_ROWS, TILE_COLS), lane, true);
}

fn dw16_tall_tile(at: TileOrigin, lane: u32, b_transposed: bool) {
    if at.row0 < p.m {
        let t = accumulate_tall_tile(at, lane, b_transposed);
        if at.col < p.n {
            let f = dw_filter_taps(at.col);
            let bias = tile_bias(at.col);
            let dw_bias = dw_param4(9u, at.col);
            store_dw_image16(at.row0, at.col, f, dw_bias, activated_tile(t.upper, bias));
            let lower = activated_tile(t.lower, bias);
            store_dw_image16(at.row0 + TILE_ROWS, at.col, f, dw_bias, lower);
        }
    }
}

// The pointwise bias and activation on 16 rows.
fn activated_tile(t: Tile, bias: vec4<f32>) -> Tile {
    return Tile(activate4(t.r0 + bias, p.act), activate4(t.r1 + bias, p.act),
                activate4(t.r2 + bias, p.act), activate4(t.r3 + bias, p.act),
                activate4(t.r4 + bias, p.act), activate4(t.r5 + bias, p.act),
                activate4(t.r6 + bias, p.act), activate4(t.r7 + bias, p.act),
                activate4(t.r8 + bias, p.act), activate4(t.r9 + bias, p.act),
                activate4(t.r10 + bias, p.act), activate4(t.r11 + bias, p.act),
                activate4(t.r12 + bias, p.act), activate4(t.r13 + bias, p.act),
                activate4(t.r14 + bias, p.act), activate4(t.r15 + bias, p.act));
}

// The depthwise outputs of the 4x4 image in rows row0 .. row0 + 15 (`x`, pixels row by
// row), stored if the image lies before row M.
fn store_dw_image16(row0: u32, col: u32, f: FilterTaps, bias: vec4<f32>, x: Tile) {
    if row0 >= p.m { return; }
    let z = DwRow();
    let r0 = DwRow(x.r0, x.r1, x.r2, x.r3);
    let r1 = DwRow(x.r4, x.r5, x.r6, x.r7);
    let r2 = DwRow(x.r8, x.r9, x.r10, x.r11);
    let r3 = DwRow(x.r12, x.r13, x.r14, x.r15);
    if p.dw_stride == 1u {
        store_dw_row_s1(row0, col, f, bias, z, r0, r1);
        store_dw_row_s1(row0 + 4u, col, f, bias, r0, r1, r2);
        store_dw_row_s1(row0 + 8u, col, f, bias, r1, r2, r3);
        store_dw_row_s1(row0 + 12u, col, f, bias, r2, r3, z);
        return;
    }
    // Stride 2 (2x2 outputs): output row o reads image rows 2o - pad .. 2o - pad + 2.
    let out = row0 / 4u;
    let pad1 = p.dw_pad_top == 1u;
    store_dw_row_s2(out, col, f, bias, pick_row(r0, z, pad1), pick_row(r1, r0, pad1),
                    pick_row(r2, r1, pad1));
    store_dw_row_s2(out + 2u, col, f, bias, pick_row(r2, r1, pad1), pick_row(r3, r2, pad1),
                    pick_row(z, r3, pad1));
}

fn pick_row(pad0: DwRow, pad1: DwRow, is_pad1: bool) -> DwRow {
    return DwRow(select(pad0.x0, pad1.x0, is_pad1), select(pad0.x1, pad1.x1, is_pad1),
                 select(pad0.x2, pad1.x2, is_pad1), select(pad0.x3, pad1.x3, is_pad1));
}

// The 4 outputs of one image row at stride 1 from the image rows above, at and below it.
fn store_dw_row_s1(out: u32, col: u32, f: FilterTaps, bias: vec4<f32>, a: DwRow, b: DwRow,
                   c: DwRow) {
    let z = vec4<f32>(0.0);
    store_dw_pixel(out, col, bias, window3x3(f, z, a.x0, a.x1, z, b.x0, b.x1, z, c.x0, c.x1));
    store_dw_pixel(out + 1u, col, bias,
                   window3x3(f, a.x0, a.x1, a.x2, b.x0, b.x1, b.x2, c.x0, c.x1, c.x2));
    store_dw_pixel(out + 2u, col, bias,
                   window3x3(f, a.x1, a.x2, a.x3, b.x1, b.x2, b.x3, c.x1, c.x2, c.x3));
    store_dw_pixel(out + 3u, col, bias, window3x3(f, a.x2, a.x3, z, b.x2, b.x3, z, c.x2, c.x3, z));
}

// The 2 outputs of one output row at stride 2 from the 3 image rows its windows read.
fn store_dw_row_s2(out: u32, col: u32, f: FilterTaps, bias: vec4<f32>, a: DwRow, b: DwRow,
                   c: DwRow) {
    let z = vec4<f32>(0.0);
    let pad1 = p.dw_pad_left == 1u;
    store_dw_pixel(out, col, bias,
                   select(window3x3(f, a.x0, a.x1, a.x2, b.x0, b.x1, b.x2, c.x0, c.x1, c.x2),
                          window3x3(f, z, a.x0, a.x1, z, b.x0, b.x1, z, c.x0, c.x1), pad1));
    store_dw_pixel(out + 1u, col, bias,
                   select(window3x3(f, a.x2, a.x3, z, b.x2, b.x3, z, c.x2, c.x3, z),
                          window3x3(f, a.x1, a.x2, a.x3, b.x1, b.x2, b.x3, c.x1, c.x2, c.x3),
                          pad1));
}

// One output pixel of the depthwise layer, stored after its bias and activation.
fn store_dw_pixel(row: u32, col: u32, bias: vec4<f32>, sum: vec4<f32>) {
    store_c_row4(row, col, activate4(sum + bias, p.dw_act));
}

// The 3x3 filter over one window (row by row, zero in the padding).
fn window3x3(f: FilterTaps, a: vec4<f32>, b: vec4<f32>, c: vec4<f32>, d: vec4<f32>,
             e: vec4<f32>, g: vec4<f32>, h: vec4<f32>, i: vec4<f32>, j: vec4<f32>) -> vec4<f32> {
    return a * f.t0.k0 + b * f.t0.k1 + c * f.t0.k2 + d * f.t1.k0 + e * f.t1.k1 + g * f.t1.k2
        + h * f.t2.k0 + i * f.t2.k1 + j * f.t2.k2;
}

// gemm.wgsl's forward_stats with this kernel's tiles: a workgroup walks one chunk of
// `stats_rows` rows, 16 at a time, for its 32 columns (the subgroup stays whole: every lane
// runs the same tiles).
@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_stats(@builtin(workgroup_id) wg: vec3<u32>,
                          @builtin(subgroup_invocation_id) lane: u32,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let chunk = tile_origin_of(wg, nwg, lane, p.stats_rows, TILE_COLS);
    if chunk.row0 >= p.m { return; }
    let last = min(chunk.row0 + p.stats_rows, p.m);
    var s = Welford();
    for (var row0 = chunk.row0; row0 < last; row0 += TILE_ROWS) {
        let at = TileOrigin(0u, row0, chunk.col);
        let t = accumulate_tile(at, lane, false);
        store_tile(at, t);
        s = welford_tile(s, row0, chunk.row0, last, t);
    }
    store_stats(chunk.row0 / p.stats_rows, chunk.col, s);
}

// gemm.wgsl's forward_bt_sums with this kernel's tiles (see forward_subgroup_stats).
@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_bt_sums(@builtin(workgroup_id) wg: vec3<u32>,
                            @builtin(subgroup_invocation_id) lane: u32,
                            @builtin(num_workgroups) nwg: vec3<u32>) {
    let chunk = tile_origin_of(wg, nwg, lane, p.stats_rows, TILE_COLS);
    if chunk.row0 >= p.m { return; }
    let last = min(chunk.row0 + p.stats_rows, p.m);
    for (var row0 = chunk.row0; row0 < last; row0 += TILE_ROWS) {
        let at = TileOrigin(0u, row0, chunk.col);
        store_tile(at, accumulate_tile(at, lane, true));
    }
    store_sums(chunk.row0 / p.stats_rows, chunk.col, stored_sums(chunk.row0, last, chunk.col));
}

// The same two chunk walks in 32x32 tiles (`subgroup-32x32`); the rows reach the statistics
// and sums in the same order, so the partials are the 16x32 kernel's to the bit.
@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_32_stats(@builtin(workgroup_id) wg: vec3<u32>,
                             @builtin(subgroup_invocation_id) lane: u32,
                             @builtin(num_workgroups) nwg: vec3<u32>) {
    let chunk = tile_origin_of(wg, nwg, lane, p.stats_rows, TILE_COLS);
    if chunk.row0 >= p.m { return; }
    let last = min(chunk.row0 + p.stats_rows, p.m);
    var s = Welford();
    for (var row0 = chunk.row0; row0 < last; row0 += TALL_TILE_ROWS) {
        let at = TileOrigin(0u, row0, chunk.col);
        let t = accumulate_prologued_tall_tile(at, lane);
        store_tall_tile(at, t);
        s = welford_tile(s, row0, chunk.row0, last, t.upper);
        s = welford_tile(s, row0 + TILE_ROWS, chunk.row0, last, t.lower);
    }
    store_stats(chunk.row0 / p.stats_rows, chunk.col, s);
}

@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_32_bt_sums(@builtin(workgroup_id) wg: vec3<u32>,
                               @builtin(subgroup_invocation_id) lane: u32,
                               @builtin(num_workgroups) nwg: vec3<u32>) {
    let chunk = tile_origin_of(wg, nwg, lane, p.stats_rows, TILE_COLS);
    if chunk.row0 >= p.m { return; }
    let last = min(chunk.row0 + p.stats_rows, p.m);
    for (var row0 = chunk.row0; row0 < last; row0 += TALL_TILE_ROWS) {
        let at = TileOrigin(0u, row0, chunk.col);
        store_tall_tile(at, accumulate_tall_tile(at, lane, true));
    }
    store_sums(chunk.row0 / p.stats_rows, chunk.col, stored_sums(chunk.row0, last, chunk.col));
}

// `s` after the 16 rows of `t` from row0 (those before `last`).
fn welford_tile(s: Welford, row0: u32, first: u32, last: u32, t: Tile) -> Welford {
    let w = welford_rows8(s, row0, first, last, t.r0, t.r1, t.r2, t.r3, t.r4, t.r5, t.r6, t.r7);
    return welford_rows8(w, row0 + 8u, first, last, t.r8, t.r9, t.r10, t.r11, t.r12, t.r13,
                         t.r14, t.r15);
}

// Where a lane's part of the tile lies: its K split, the tile's first row, the lane's first
// column. z enumerates the K splits and, beyond them, rows past the 65535-workgroup cap of x
// (row tiles come first, so the tiles sharing a strip of B run back to back).
struct TileOrigin {
    split: u32, row0: u32, col: u32,
}

fn tile_origin(wg: vec3<u32>, nwg: vec3<u32>, lane: u32) -> TileOrigin {
    return tile_origin_of(wg, nwg, lane, TILE_ROWS, TILE_COLS);
}

// The same for tiles of `rows` x `cols` (gemm_subgroup_wide.wgsl's too).
fn tile_origin_of(wg: vec3<u32>, nwg: vec3<u32>, lane: u32, rows: u32, cols: u32) -> TileOrigin {
    let split = wg.z % p.splits;
    return TileOrigin(split, (wg.x + (wg.z / p.splits) * nwg.x) * rows, wg.y * cols + 4u * lane);
}

// The lane's 16x4 block of C before the epilogue.
fn accumulate_tile(at: TileOrigin, lane: u32, b_transposed: bool) -> Tile {
    // Out-of-range rows read a clamped, valid row and are simply not stored.
    let last_row = p.m - 1u;
    let a_lo_row = min(at.row0 + lane, last_row);
    let a_hi_row = min(at.row0 + SUBGROUP_LANES + lane, last_row);
    let col = at.col;
    let k_first = at.split * p.k_chunk;
    let k_last = min(k_first + p.k_chunk, p.k);
    var t = Tile();
    for (var kk = k_first; kk < k_last; kk += 4u) {
        let affine = a_affine(kk, k_last);
        let a_lo = load_a4(a_lo_row, kk, k_last, affine);
        let a_hi = load_a4(a_hi_row, kk, k_last, affine);
        let b = load_b4x4(kk, k_last, col, b_transposed);
        t = fma_rows16(t, a_lo, a_hi, b);
    }
    return t;
}

// Steps of 4 K that share one load of the prologue's scale and shift (one vec4 each per
// lane, SUBGROUP_LANES of them, handed round by shuffles).
const AFFINE_STEPS: u32 = SUBGROUP_LANES;

// The prologue's scale and shift of A's columns k + 4 * lane .. + 3: lane j holds those of
// the j-th step of 4 K from k. lavapipe loads a uniform at an index that varies in a loop
// lane by lane, so loading them once per AFFINE_STEPS steps instead of every step made the
// training step's 13 forward GEMMs about 5% faster at 224/8 (performance.md).
fn lane_affine(k: u32, k_last: u32, lane: u32) -> Affine4 {
    return a_affine(min(k + 4u * lane, k_last - 1u), k_last);
}

// Step `i`'s scale and shift, from the lane that holds them.
fn step_affine(held: Affine4, i: u32) -> Affine4 {
    return Affine4(subgroupShuffle(held.scale, i), subgroupShuffle(held.shift, i));
}

// A 32x32 tile: rows row0 .. row0 + 15 in `upper`, the next 16 in `lower`.
struct TallTile {
    upper: Tile, lower: Tile,
}

// The lane's 32x4 block of C before the epilogue (accumulate_tile's, twice as tall).
fn accumulate_tall_tile(at: TileOrigin, lane: u32, b_transposed: bool) -> TallTile {
    let rows = tall_rows(at, lane);
    let col = at.col;
    let k_first = at.split * p.k_chunk;
    let k_last = min(k_first + p.k_chunk, p.k);
    var t = TallTile();
    for (var kk = k_first; kk < k_last; kk += 4u) {
        t = tall_step(t, rows, kk, k_last, col, a_affine(kk, k_last), b_transposed, p.prologue);
    }
    return t;
}

// The rows of A lane `lane` loads for a 32x32 tile (past the last row: the last row, whose
// results are not stored).
fn tall_rows(at: TileOrigin, lane: u32) -> vec4<u32> {
    return min(vec4<u32>(at.row0 + lane) + vec4<u32>(0u, 8u, 16u, 24u), vec4<u32>(p.m - 1u));
}

// `t` + 4 steps of K from kk: rows `rows` of A (as lanes 0-7 hold them), after the
// prologue `prologue` (prologued_as), times B.
fn tall_step(t: TallTile, rows: vec4<u32>, kk: u32, k_last: u32, col: u32, affine: Affine4,
             b_transposed: bool, prologue: u32) -> TallTile {
    let a0 = load_a4_as(rows.x, kk, k_last, affine, prologue);
    let a1 = load_a4_as(rows.y, kk, k_last, affine, prologue);
    let a2 = load_a4_as(rows.z, kk, k_last, affine, prologue);
    let a3 = load_a4_as(rows.w, kk, k_last, affine, prologue);
    let b = load_b4x4(kk, k_last, col, b_transposed);
    return TallTile(fma_rows16(t.upper, a0, a1, b), fma_rows16(t.lower, a2, a3, b));
}

// accumulate_tall_tile (B as stored) with the prologue's scale and shift loaded once per
// AFFINE_STEPS steps: the forward GEMMs with batch-norm statistics, whose A is the raw
// output of the batch norm before them. (The 16x32 tile, which the tuner picks for few of
// them, loads them every step.) ReLU, the default activation, gets a loop of its own, in
// which the prologue code is a literal: its activation is one `max` per vec4 of A, where
// the loop for any code selects among ReLU, ReLU6 and none, about half the prologue's
// cost (performance.md, 2026-12-07, late morning). The branch between the loops is on a
// uniform, so lavapipe runs one of them.
fn accumulate_prologued_tall_tile(at: TileOrigin, lane: u32) -> TallTile {
    var t: TallTile;
    if p.prologue == ACT_RELU + 1u {
        t = prologued_tall_loop(at, lane, ACT_RELU + 1u);
    } else {
        t = prologued_tall_loop(at, lane, p.prologue);
    }
    return t;
}

fn prologued_tall_loop(at: TileOrigin, lane: u32, prologue: u32) -> TallTile {
    let rows = tall_rows(at, lane);
    let k_last = min(p.k_chunk, p.k);
    var t = TallTile();
    for (var k0 = 0u; k0 < k_last; k0 += 4u * AFFINE_STEPS) {
        let held = lane_affine(k0, k_last, lane);
        let steps = min(AFFINE_STEPS, (k_last - k0 + 3u) / 4u);
        for (var i = 0u; i < steps; i++) {
            t = tall_step(t, rows, k0 + 4u * i, k_last, at.col, step_affine(held, i), false,
                          prologue);
        }
    }
    return t;
}

fn store_tall_tile(at: TileOrigin, t: TallTile) {
    if at.col >= p.n { return; }
    store_tile(at, t.upper);
    store_tile(TileOrigin(at.split, at.row0 + TILE_ROWS, at.col), t.lower);
}

fn store_tile(at: TileOrigin, t: Tile) {
    let split = at.split;
    let row0 = at.row0;
    let col = at.col;
    let bias = tile_bias(col);
    store_row(split, row0, col, bias, t.r0);
    store_row(split, row0 + 1u, col, bias, t.r1);
    store_row(split, row0 + 2u, col, bias, t.r2);
    store_row(split, row0 + 3u, col, bias, t.r3);
    store_row(split, row0 + 4u, col, bias, t.r4);
    store_row(split, row0 + 5u, col, bias, t.r5);
    store_row(split, row0 + 6u, col, bias, t.r6);
    store_row(split, row0 + 7u, col, bias, t.r7);
    store_row(split, row0 + 8u, col, bias, t.r8);
    store_row(split, row0 + 9u, col, bias, t.r9);
    store_row(split, row0 + 10u, col, bias, t.r10);
    store_row(split, row0 + 11u, col, bias, t.r11);
    store_row(split, row0 + 12u, col, bias, t.r12);
    store_row(split, row0 + 13u, col, bias, t.r13);
    store_row(split, row0 + 14u, col, bias, t.r14);
    store_row(split, row0 + 15u, col, bias, t.r15);
}
