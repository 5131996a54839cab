// The dW kernels of the subgroup GEMM, appended to its vec4 module only (it reads A as vec4s).
//
// dW = X^T dY: A is transposed (contiguous along M), so the roles flip. Lane j owns rows
// 4j .. 4j + 3 of a 32x16 tile, one vec4 of A per step of K, and the 16 columns of B reach
// every lane by shuffles; a lane again loads 6 vec4s per 4 steps of K.
const AT_TILE_ROWS: u32 = 32u;
const AT_TILE_COLS: u32 = 16u;

@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_at(@builtin(workgroup_id) wg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    let split = wg.z % p.splits;
    let row0 = (wg.x + (wg.z / p.splits) * nwg.x) * AT_TILE_ROWS;
    if row0 >= p.m { return; }
    let col0 = wg.y * AT_TILE_COLS;
    let t = accumulate_tile_at(split, row0 + 4u * lane, col0, lane);
    store_tile_at(split, row0 + 4u * lane, col0, t);
}

// Columns 4h' .. 4h' + 3 of B for 4 steps of K, as the rows of the result (one vec4 over K
// per column), from the vec4s `bv` that lanes h, 2 + h, 4 + h, 6 + h loaded.
fn b_columns(bv: vec4<f32>, h: u32) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(subgroupShuffle(bv, h), subgroupShuffle(bv, 2u + h),
                                 subgroupShuffle(bv, 4u + h), subgroupShuffle(bv, 6u + h)));
}

// 4 rows of the transposed A (one vec4, at vec4 index `at`) over 4 steps of K, `step`
// vec4s apart.
fn a_steps4(at: u32, step: u32) -> mat4x4<f32> {
    return mat4x4<f32>(a4_at(at), a4_at(at + step), a4_at(at + 2u * step), a4_at(at + 3u * step));
}

// The prologue applied to 4 steps of A's rows 4g .. 4g + 3, whose scale and shift (channels
// 4g .. 4g + 3 of X) `affine` holds.
fn prologued_steps4(a: mat4x4<f32>, affine: Affine4) -> mat4x4<f32> {
    if p.prologue == 0u {
        return a;
    }
    return mat4x4<f32>(prologued(a[0], affine), prologued(a[1], affine),
                       prologued(a[2], affine), prologued(a[3], affine));
}

// acc (4 rows of one column) + 4 steps of K: A's rows (a vec4 per step) times B's column.
fn fma_col4(acc: vec4<f32>, a: mat4x4<f32>, b: vec4<f32>) -> vec4<f32> {
    return acc + a[0] * b.x + a[1] * b.y + a[2] * b.z + a[3] * b.w;
}

// The lane's 4x16 block, as 16 columns of 4 rows. Lane L loads B's row k + L / 2 at
// columns col0 + 8 (L % 2) .. + 7 (two vec4s); rows past M read the last vec4 of A's rows.
fn accumulate_tile_at(split: u32, row: u32, col0: u32, lane: u32) -> Tile {
    let a_col = min(row, (p.m - 1u) & ~3u) / 4u;
    let affine = row_affine(a_col);
    let a_step = p.a_col_stride / 4u;
    let b_col = col0 + 8u * (lane % 2u);
    let b_lo = min(b_col, p.n - 4u) / 4u;
    let b_hi = min(b_col + 4u, p.n - 4u) / 4u;
    let b_step = p.b_row_stride / 4u;
    let k_first = split * p.k_chunk;
    let k_last = min(k_first + p.k_chunk, p.k);
    var t = Tile();
    for (var kk = k_first; kk < k_last; kk += 4u) {
        let a = prologued_steps4(a_steps4(kk * a_step + a_col, a_step), affine);
        let b_at = (kk + lane / 2u) * b_step;
        let bv_lo = b4_at(b_at + b_lo);
        let bv_hi = b4_at(b_at + b_hi);
        let q0 = b_columns(bv_lo, 0u);
        let q1 = b_columns(bv_hi, 0u);
        let q2 = b_columns(bv_lo, 1u);
        let q3 = b_columns(bv_hi, 1u);
        t.r0 = fma_col4(t.r0, a, q0[0]);
        t.r1 = fma_col4(t.r1, a, q0[1]);
        t.r2 = fma_col4(t.r2, a, q0[2]);
        t.r3 = fma_col4(t.r3, a, q0[3]);
        t.r4 = fma_col4(t.r4, a, q1[0]);
        t.r5 = fma_col4(t.r5, a, q1[1]);
        t.r6 = fma_col4(t.r6, a, q1[2]);
        t.r7 = fma_col4(t.r7, a, q1[3]);
        t.r8 = fma_col4(t.r8, a, q2[0]);
        t.r9 = fma_col4(t.r9, a, q2[1]);
        t.r10 = fma_col4(t.r10, a, q2[2]);
        t.r11 = fma_col4(t.r11, a, q2[3]);
        t.r12 = fma_col4(t.r12, a, q3[0]);
        t.r13 = fma_col4(t.r13, a, q3[1]);
        t.r14 = fma_col4(t.r14, a, q3[2]);
        t.r15 = fma_col4(t.r15, a, q3[3]);
    }
    return t;
}

// 4 columns (as vec4s over the lane's 4 rows) turned into 4 rows of C.
fn store_block_at(split: u32, row: u32, col: u32, c0: vec4<f32>, c1: vec4<f32>, c2: vec4<f32>,
                  c3: vec4<f32>) {
    if col >= p.n {
        return;
    }
    let rows = transpose(mat4x4<f32>(c0, c1, c2, c3));
    let bias = tile_bias(col);
    store_row(split, row, col, bias, rows[0]);
    store_row(split, row + 1u, col, bias, rows[1]);
    store_row(split, row + 2u, col, bias, rows[2]);
    store_row(split, row + 3u, col, bias, rows[3]);
}

// dW on a 32x32 tile (`subgroup-32x32`): the 32x16 tile above with 32 columns, lane L
// loading B's row k + L / 2 at columns 16 (L % 2) .. + 15 as the wide tile does, so a lane
// makes 8 vec4 loads per 4 steps of K for 512 multiply-adds. Each output sums over K in the
// same order as in the 32x16 tile.
@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_32_at(@builtin(workgroup_id) wg: vec3<u32>,
                          @builtin(subgroup_invocation_id) lane: u32,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    let split = wg.z % p.splits;
    let row0 = (wg.x + (wg.z / p.splits) * nwg.x) * AT_TILE_ROWS;
    if row0 >= p.m { return; }
    let row = row0 + 4u * lane;
    let col0 = wg.y * 2u * AT_TILE_COLS;
    let t = accumulate_32_tile_at(split, row, col0, lane);
    store_tile_at(split, row, col0, t.left);
    store_tile_at(split, row, col0 + AT_TILE_COLS, t.right);
}

// The lane's 4x32 block: columns col0 .. + 15 on the left, col0 + 16 .. + 31 on the right.
struct ColumnPair {
    left: Tile, right: Tile,
}

fn accumulate_32_tile_at(split: u32, row: u32, col0: u32, lane: u32) -> ColumnPair {
    let a_col = min(row, (p.m - 1u) & ~3u) / 4u;
    let affine = row_affine(a_col);
    let a_step = p.a_col_stride / 4u;
    let b_cols = b_vec4s16(col0, lane);
    let b_step = p.b_row_stride / 4u;
    let k_first = split * p.k_chunk;
    let k_last = min(k_first + p.k_chunk, p.k);
    var t = ColumnPair();
    for (var kk = k_first; kk < k_last; kk += 4u) {
        let a = prologued_steps4(a_steps4(kk * a_step + a_col, a_step), affine);
        let bv = b_row16((kk + lane / 2u) * b_step, b_cols);
        t.left = fma_cols16(t.left, a, columns16(bv, 0u));
        t.right = fma_cols16(t.right, a, columns16(bv, 1u));
    }
    return t;
}

// The vec4 indices of B's columns col0 + 16 (L % 2) + 4q, q = 0 .. 3, that lane L loads in
// a row; columns past N read the last vec4 of B's row.
fn b_vec4s16(col0: u32, lane: u32) -> vec4<u32> {
    let b_col = col0 + 16u * (lane % 2u);
    return min(vec4<u32>(b_col) + vec4<u32>(0u, 4u, 8u, 12u), vec4<u32>(p.n - 4u)) / 4u;
}

// The 4 vec4s of B's row (starting at vec4 index `row_at`) at the vec4 indices `cols`.
fn b_row16(row_at: u32, cols: vec4<u32>) -> mat4x4<f32> {
    return mat4x4<f32>(b4_at(row_at + cols.x), b4_at(row_at + cols.y), b4_at(row_at + cols.z),
                       b4_at(row_at + cols.w));
}

// 16 columns of B over 4 steps of K, as 4 blocks from b_columns: those of the vec4s `bv`
// that the lanes with L % 2 == h loaded.
struct Columns16 {
    q0: mat4x4<f32>, q1: mat4x4<f32>, q2: mat4x4<f32>, q3: mat4x4<f32>,
}

fn columns16(bv: mat4x4<f32>, h: u32) -> Columns16 {
    return Columns16(b_columns(bv[0], h), b_columns(bv[1], h), b_columns(bv[2], h),
                     b_columns(bv[3], h));
}

// The lane's 4 rows `a` times 16 columns.
fn fma_cols16(t: Tile, a: mat4x4<f32>, c: Columns16) -> Tile {
    return Tile(fma_col4(t.r0, a, c.q0[0]), fma_col4(t.r1, a, c.q0[1]),
                fma_col4(t.r2, a, c.q0[2]), fma_col4(t.r3, a, c.q0[3]),
                fma_col4(t.r4, a, c.q1[0]), fma_col4(t.r5, a, c.q1[1]),
                fma_col4(t.r6, a, c.q1[2]), fma_col4(t.r7, a, c.q1[3]),
                fma_col4(t.r8, a, c.q2[0]), fma_col4(t.r9, a, c.q2[1]),
                fma_col4(t.r10, a, c.q2[2]), fma_col4(t.r11, a, c.q2[3]),
                fma_col4(t.r12, a, c.q3[0]), fma_col4(t.r13, a, c.q3[1]),
                fma_col4(t.r14, a, c.q3[2]), fma_col4(t.r15, a, c.q3[3]));
}

fn store_tile_at(split: u32, row: u32, col0: u32, t: Tile) {
    store_block_at(split, row, col0, t.r0, t.r1, t.r2, t.r3);
    store_block_at(split, row, col0 + 4u, t.r4, t.r5, t.r6, t.r7);
    store_block_at(split, row, col0 + 8u, t.r8, t.r9, t.r10, t.r11);
    store_block_at(split, row, col0 + 12u, t.r12, t.r13, t.r14, t.r15);
}

// dW = X^T dY of a narrow layer (`subgroup-rows`): C is at most 16x16 (M the layer's input
// channels or the stem's patch, N its output channels) and K the batch's pixels, split into
// chunks of k_chunk as every dW GEMM is. Where the 32-row tiles leave three quarters of
// their lanes idle on such a C, here a workgroup takes one chunk and lane j its pixels
// j, 8 + j, ...: each adds its pixel's outer product x dy to all of C, and the lanes' sums
// are added by shuffles at the end. A lane loads a pixel's X (through the prologue) and dY
// once, as whole vec4s, and needs no shuffles in the loop. As in the forward, M and N of 8
// or less take loops whose `rows16` and `cols16` are literals false.
@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_rows_at(@builtin(workgroup_id) wg: vec3<u32>,
                            @builtin(subgroup_invocation_id) lane: u32) {
    let split = wg.z;
    let k_first = split * p.k_chunk;
    let k_last = min(k_first + p.k_chunk, p.k);
    var c: Outer16;
    if p.m > 8u && p.n > 8u {
        c = outer_rows(k_first, k_last, lane, true, true);
    } else if p.m > 8u {
        c = outer_rows(k_first, k_last, lane, true, false);
    } else if p.n > 8u {
        c = outer_rows(k_first, k_last, lane, false, true);
    } else {
        c = outer_rows(k_first, k_last, lane, false, false);
    }
    let total = outer_lanes_summed(c);
    if lane == 0u {
        store_outer16(split, total);
    }
}

// C's rows 4g .. 4g + 3, each its 16 columns (or fewer).
struct Outer4 {
    r0: Row16, r1: Row16, r2: Row16, r3: Row16,
}

// All of C: rows 0 .. 15 in groups of 4.
struct Outer16 {
    g0: Outer4, g1: Outer4, g2: Outer4, g3: Outer4,
}

// The prologue's scale and shift of X's 4 channel groups.
struct RowAffines {
    g0: Affine4, g1: Affine4, g2: Affine4, g3: Affine4,
}

// X's channels of one pixel, as 4 groups of 4.
struct Pixel16 {
    g0: vec4<f32>, g1: vec4<f32>, g2: vec4<f32>, g3: vec4<f32>,
}

// Lane `lane`'s sum of x dy over its pixels of the chunk [k_first, k_last).
fn outer_rows(k_first: u32, k_last: u32, lane: u32, rows16: bool, cols16: bool) -> Outer16 {
    let last = (p.m + 3u) / 4u - 1u;
    let groups = RowAffines(row_affine(0u), row_affine(min(1u, last)), row_affine(min(2u, last)),
                            row_affine(min(3u, last)));
    let a_step = p.a_col_stride / 4u;
    let b_step = p.b_row_stride / 4u;
    var c = Outer16();
    for (var kk = k_first + lane; kk < k_last; kk += SUBGROUP_LANES) {
        let x = pixel16(kk * a_step, groups, rows16);
        let dy = dy_row16(kk * b_step, cols16);
        c.g0 = outer4_add(c.g0, x.g0, dy, cols16);
        c.g1 = outer4_add(c.g1, x.g1, dy, cols16);
        if rows16 {
            c.g2 = outer4_add(c.g2, x.g2, dy, cols16);
            c.g3 = outer4_add(c.g3, x.g3, dy, cols16);
        }
    }
    return c;
}

// X's channels at vec4 `at` on (through the prologue); groups past M (rounded up to a
// multiple of 4: the stem's patch rows are padded with zeros) repeat the last.
fn pixel16(at: u32, affine: RowAffines, rows16: bool) -> Pixel16 {
    let last = (p.m + 3u) / 4u - 1u;
    var x = Pixel16(prologued(a4_at(at), affine.g0),
                    prologued(a4_at(at + min(1u, last)), affine.g1), vec4<f32>(0.0),
                    vec4<f32>(0.0));
    if rows16 {
        x.g2 = prologued(a4_at(at + min(2u, last)), affine.g2);
        x.g3 = prologued(a4_at(at + min(3u, last)), affine.g3);
    }
    return x;
}

// dY's columns at vec4 `at` on; groups past N repeat the last.
fn dy_row16(at: u32, cols16: bool) -> Row16 {
    let last = p.n / 4u - 1u;
    var y = Row16(b4_at(at), b4_at(at + min(1u, last)), vec4<f32>(0.0), vec4<f32>(0.0));
    if cols16 {
        y.g2 = b4_at(at + min(2u, last));
        y.g3 = b4_at(at + min(3u, last));
    }
    return y;
}

// `c` (rows 4g .. 4g + 3) plus the outer product of those rows' x and dy.
fn outer4_add(c: Outer4, x: vec4<f32>, dy: Row16, cols16: bool) -> Outer4 {
    return Outer4(row16_add(c.r0, x.x, dy, cols16), row16_add(c.r1, x.y, dy, cols16),
                  row16_add(c.r2, x.z, dy, cols16), row16_add(c.r3, x.w, dy, cols16));
}

fn row16_add(r: Row16, x: f32, dy: Row16, cols16: bool) -> Row16 {
    if !cols16 {
        return Row16(r.g0 + x * dy.g0, r.g1 + x * dy.g1, r.g2, r.g3);
    }
    return Row16(r.g0 + x * dy.g0, r.g1 + x * dy.g1, r.g2 + x * dy.g2, r.g3 + x * dy.g3);
}

// The 8 lanes' C added (every lane ends with the same), in pairs, then pairs of pairs.
fn outer_lanes_summed(c: Outer16) -> Outer16 {
    var t = c;
    for (var mask = 1u; mask < SUBGROUP_LANES; mask <<= 1u) {
        t = Outer16(outer4_shuffled_add(t.g0, mask), outer4_shuffled_add(t.g1, mask),
                    outer4_shuffled_add(t.g2, mask), outer4_shuffled_add(t.g3, mask));
    }
    return t;
}

fn outer4_shuffled_add(c: Outer4, mask: u32) -> Outer4 {
    return Outer4(row16_shuffled_add(c.r0, mask), row16_shuffled_add(c.r1, mask),
                  row16_shuffled_add(c.r2, mask), row16_shuffled_add(c.r3, mask));
}

fn row16_shuffled_add(r: Row16, mask: u32) -> Row16 {
    return Row16(r.g0 + subgroupShuffleXor(r.g0, mask), r.g1 + subgroupShuffleXor(r.g1, mask),
                 r.g2 + subgroupShuffleXor(r.g2, mask), r.g3 + subgroupShuffleXor(r.g3, mask));
}

// Split `split`'s C (store_row leaves out rows past M and columns past N).
fn store_outer16(split: u32, c: Outer16) {
    store_outer4(split, 0u, c.g0);
    store_outer4(split, 4u, c.g1);
    store_outer4(split, 8u, c.g2);
    store_outer4(split, 12u, c.g3);
}

fn store_outer4(split: u32, row0: u32, c: Outer4) {
    store_row16(split, row0, c.r0, true);
    store_row16(split, row0 + 1u, c.r1, true);
    store_row16(split, row0 + 2u, c.r2, true);
    store_row16(split, row0 + 3u, c.r3, true);
}
