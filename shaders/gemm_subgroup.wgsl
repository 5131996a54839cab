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

// The forward GEMM with batch-norm statistics on narrow layers (`subgroup-rows`): K and N at
// most 16, as in a narrow network's first layers (the default job's stem and first
// pointwise layer, at 8 and 16 channels), where a 32-column tile leaves half or more of its
// lanes idle. A workgroup walks one chunk of `stats_rows` rows; lane j computes rows j,
// 8 + j, ... whole, all their columns, with B (at most 16x16) and the prologue's scale and
// shift loaded once per workgroup, so no lane idles and A needs no shuffles. Each lane
// keeps the Welford statistics of its rows, merged across the lanes with Chan's formula at
// the end. Where N is 8 or less (the stem's 8 channels, the dX of a layer on 8), the lanes
// compute, store and sum only the first 8 columns: each entry point walks its rows in one
// of two loops, chosen by N, whose `cols16` is a literal, so the other 8 columns' code
// folds away in the narrow one.
const NARROW_MAX: u32 = 16u;

// C's 16 columns (or fewer) of one row, in groups of 4.
struct Row16 {
    g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>,
}

// B's rows k .. k + 3 at the 4 column groups.
struct Strip4 {
    g0: mat4x4<f32>, g1: mat4x4<f32>, g2: mat4x4<f32>, g3: mat4x4<f32>,
}

// All of B (K at most 16), and the prologue's scale and shift of A's 4 steps of K.
struct NarrowOperands {
    s0: Strip4, s1: Strip4, s2: Strip4, s3: Strip4,
    a0: Affine4, a1: Affine4, a2: Affine4, a3: Affine4,
}

fn narrow_strip(k: u32, b_transposed: bool) -> Strip4 {
    return Strip4(load_b4x4(k, p.k, 0u, b_transposed), load_b4x4(k, p.k, 4u, b_transposed),
                  load_b4x4(k, p.k, 8u, b_transposed), load_b4x4(k, p.k, 12u, b_transposed));
}

fn narrow_operands(b_transposed: bool) -> NarrowOperands {
    return NarrowOperands(narrow_strip(0u, b_transposed), narrow_strip(4u, b_transposed),
                          narrow_strip(8u, b_transposed), narrow_strip(12u, b_transposed),
                          a_affine(0u, p.k), a_affine(4u, p.k), a_affine(8u, p.k),
                          a_affine(12u, p.k));
}

// `y` after 4 steps of K; columns 8 .. 15 only where `cols16` (zero otherwise).
fn narrow_step(y: Row16, a: vec4<f32>, b: Strip4, cols16: bool) -> Row16 {
    if !cols16 {
        return Row16(fma_4k(y.g0, a, b.g0), fma_4k(y.g1, a, b.g1), y.g2, y.g3);
    }
    return Row16(fma_4k(y.g0, a, b.g0), fma_4k(y.g1, a, b.g1), fma_4k(y.g2, a, b.g2),
                 fma_4k(y.g3, a, b.g3));
}

// Row `row` of C before the epilogue.
fn narrow_row(row: u32, o: NarrowOperands, prologue: u32, cols16: bool) -> Row16 {
    var y = narrow_step(Row16(), load_a4_as(row, 0u, p.k, o.a0, prologue), o.s0, cols16);
    if p.k > 4u {
        y = narrow_step(y, load_a4_as(row, 4u, p.k, o.a1, prologue), o.s1, cols16);
    }
    if p.k > 8u {
        y = narrow_step(y, load_a4_as(row, 8u, p.k, o.a2, prologue), o.s2, cols16);
    }
    if p.k > 12u {
        y = narrow_step(y, load_a4_as(row, 12u, p.k, o.a3, prologue), o.s3, cols16);
    }
    return y;
}

// Row `row` of C (of K split `split`): its first 8 columns unless `cols16`.
fn store_row16(split: u32, row: u32, y: Row16, cols16: bool) {
    store_row(split, row, 0u, tile_bias(0u), y.g0);
    store_row(split, row, 4u, tile_bias(4u), y.g1);
    if cols16 {
        store_row(split, row, 8u, tile_bias(8u), y.g2);
        store_row(split, row, 12u, tile_bias(12u), y.g3);
    }
}

// Welford statistics of a lane's rows at the 4 column groups, and how many rows.
struct Welford16 {
    count: f32, g0: Welford, g1: Welford, g2: Welford, g3: Welford,
}

// `s` after one more row, `y` (its first 8 columns unless `cols16`).
fn welford16_add(s: Welford16, y: Row16, cols16: bool) -> Welford16 {
    let count = u32(s.count) + 1u;
    if !cols16 {
        return Welford16(f32(count), welford_add(s.g0, y.g0, count),
                         welford_add(s.g1, y.g1, count), s.g2, s.g3);
    }
    return Welford16(f32(count), welford_add(s.g0, y.g0, count), welford_add(s.g1, y.g1, count),
                     welford_add(s.g2, y.g2, count), welford_add(s.g3, y.g3, count));
}

// The Welford statistics of lane `lane`'s rows of the chunk [row0, last), stored as computed.
fn stats_rows(row0: u32, last: u32, lane: u32, o: NarrowOperands, cols16: bool) -> Welford16 {
    var s = Welford16();
    for (var row = row0 + lane; row < last; row += SUBGROUP_LANES) {
        let y = narrow_row(row, o, p.prologue, cols16);
        store_row16(0u, row, y, cols16);
        s = welford16_add(s, y, cols16);
    }
    return s;
}

@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_rows_stats(@builtin(workgroup_id) wg: vec3<u32>,
                               @builtin(subgroup_invocation_id) lane: u32,
                               @builtin(num_workgroups) nwg: vec3<u32>) {
    let chunk = tile_origin_of(wg, nwg, lane, p.stats_rows, NARROW_MAX);
    if chunk.row0 >= p.m { return; }
    let last = min(chunk.row0 + p.stats_rows, p.m);
    let o = narrow_operands(false);
    var s: Welford16;
    if p.n > 8u {
        s = stats_rows(chunk.row0, last, lane, o, true);
    } else {
        s = stats_rows(chunk.row0, last, lane, o, false);
    }
    let merged = lanes_merged(s, lane);
    if lane == 0u {
        let at = chunk.row0 / p.stats_rows;
        store_stats(at, 0u, merged.g0);
        store_stats(at, 4u, merged.g1);
        store_stats(at, 8u, merged.g2);
        store_stats(at, 12u, merged.g3);
    }
}

// The dX GEMM with the backward sums of the batch norm before the layer
// (forward_subgroup_32_bt_sums) on the same whole-row lanes: each lane sums its rows'
// terms as it stores them, and the lanes' sums are added at the end.
@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_rows_bt_sums(@builtin(workgroup_id) wg: vec3<u32>,
                                 @builtin(subgroup_invocation_id) lane: u32,
                                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let chunk = tile_origin_of(wg, nwg, lane, p.stats_rows, NARROW_MAX);
    if chunk.row0 >= p.m { return; }
    let last = min(chunk.row0 + p.stats_rows, p.m);
    let o = narrow_operands(true);
    let norm = NarrowNorm(sums_norm4(0u), sums_norm4(4u), sums_norm4(8u), sums_norm4(12u));
    var s: Sums16;
    if p.n > 8u {
        s = sums_rows(chunk.row0, last, lane, o, norm, true);
    } else {
        s = sums_rows(chunk.row0, last, lane, o, norm, false);
    }
    let total = Sums16(lanes_summed(s.g0), lanes_summed(s.g1), lanes_summed(s.g2),
                       lanes_summed(s.g3));
    if lane == 0u {
        let at = chunk.row0 / p.stats_rows;
        store_sums(at, 0u, total.g0);
        store_sums(at, 4u, total.g1);
        store_sums(at, 8u, total.g2);
        store_sums(at, 12u, total.g3);
    }
}

// The batch norm's normalisation at the 4 column groups.
struct NarrowNorm {
    g0: BnNorm4, g1: BnNorm4, g2: BnNorm4, g3: BnNorm4,
}

// A lane's backward sums at the 4 column groups.
struct Sums16 {
    g0: BnSums, g1: BnSums, g2: BnSums, g3: BnSums,
}

// The backward sums of lane `lane`'s rows of dX in the chunk [row0, last), stored as
// computed.
fn sums_rows(row0: u32, last: u32, lane: u32, o: NarrowOperands, norm: NarrowNorm,
             cols16: bool) -> Sums16 {
    var s = Sums16();
    for (var row = row0 + lane; row < last; row += SUBGROUP_LANES) {
        let y = narrow_row(row, o, p.prologue, cols16);
        store_row16(0u, row, y, cols16);
        s = sums16_add(s, row, y, norm, cols16);
    }
    return s;
}

// `s` after row `row` of dX, `y` (stored as computed: no bias or activation), its first 8
// columns unless `cols16`.
fn sums16_add(s: Sums16, row: u32, y: Row16, norm: NarrowNorm, cols16: bool) -> Sums16 {
    let act = p.sums - 1u;
    if !cols16 {
        return Sums16(bn_sums_add(s.g0, y.g0, load_sums_input4(row, 0u), norm.g0, act),
                      bn_sums_add(s.g1, y.g1, load_sums_input4(row, 4u), norm.g1, act),
                      s.g2, s.g3);
    }
    return Sums16(bn_sums_add(s.g0, y.g0, load_sums_input4(row, 0u), norm.g0, act),
                  bn_sums_add(s.g1, y.g1, load_sums_input4(row, 4u), norm.g1, act),
                  bn_sums_add(s.g2, y.g2, load_sums_input4(row, 8u), norm.g2, act),
                  bn_sums_add(s.g3, y.g3, load_sums_input4(row, 12u), norm.g3, act));
}

// The 8 lanes' sums added (every lane ends with the same), in pairs, then pairs of pairs.
fn lanes_summed(s: BnSums) -> BnSums {
    var t = s;
    for (var mask = 1u; mask < SUBGROUP_LANES; mask <<= 1u) {
        t = BnSums(t.dz + subgroupShuffleXor(t.dz, mask),
                   t.dz_centred + subgroupShuffleXor(t.dz_centred, mask));
    }
    return t;
}

// The 8 lanes' statistics merged (every lane ends with the same), pairs of lanes, then
// pairs of pairs, each pair merged lower lane first.
fn lanes_merged(s: Welford16, lane: u32) -> Welford16 {
    var m = s;
    for (var mask = 1u; mask < SUBGROUP_LANES; mask <<= 1u) {
        let other = Welford16(subgroupShuffleXor(m.count, mask),
                              welford_shuffled(m.g0, mask), welford_shuffled(m.g1, mask),
                              welford_shuffled(m.g2, mask), welford_shuffled(m.g3, mask));
        let upper = (lane & mask) != 0u;
        let a = select_welford16(m, other, upper);
        let b = select_welford16(other, m, upper);
        m = Welford16(a.count + b.count, chan(a.g0, a.count, b.g0, b.count),
                      chan(a.g1, a.count, b.g1, b.count), chan(a.g2, a.count, b.g2, b.count),
                      chan(a.g3, a.count, b.g3, b.count));
    }
    return m;
}

fn welford_shuffled(s: Welford, mask: u32) -> Welford {
    return Welford(subgroupShuffleXor(s.mean, mask), subgroupShuffleXor(s.m2, mask));
}

// `a` where `pick_b` is false, else `b`.
fn select_welford16(a: Welford16, b: Welford16, pick_b: bool) -> Welford16 {
    return Welford16(select(a.count, b.count, pick_b), select_welford(a.g0, b.g0, pick_b),
                     select_welford(a.g1, b.g1, pick_b), select_welford(a.g2, b.g2, pick_b),
                     select_welford(a.g3, b.g3, pick_b));
}

fn select_welford(a: Welford, b: Welford, pick_b: bool) -> Welford {
    return Welford(select(a.mean, b.mean, pick_b), select(a.m2, b.m2, pick_b));
}

// Chan's merge of the statistics of `na` and `nb` values (either may be none).
fn chan(a: Welford, na: f32, b: Welford, nb: f32) -> Welford {
    let n = na + nb;
    let d = b.mean - a.mean;
    let fb = select(0.0, nb / n, n > 0.0);
    return Welford(a.mean + d * fb, a.m2 + b.m2 + d * d * (na * fb));
}
