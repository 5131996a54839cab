// The GEMM behind pointwise (1x1) convolution and the dense layer:
//   C[m, n] = act(sum_k A[m, k] * B[k, n] + bias[n])   (+ C[m, n] when accumulating)
// A and B are addressed through row/column strides, so the backward pass can reuse this
// kernel on transposed operands without copying them. With `splits` > 1 the K range is cut
// into chunks of `k_chunk` and each chunk writes its own [m, n] partial (split-K: weight
// gradients reduce over N*H*W rows); reduce.wgsl then sums the partials in order.
//
// Each invocation keeps an 8x8 block of C in registers (8 rows, two vec4s of columns, in
// a struct with named members: indexing a private array would put it in memory) and
// streams K four steps at a time; no workgroup memory, because barriers are expensive on
// software rasterisers such as lavapipe. The 64 invocations of a workgroup are laid out as
// `lanes_x` column blocks by 64 / `lanes_x` row blocks, chosen per GEMM so that narrow
// outputs keep every lane busy.
//
// The element accesses sit between the ACCESS markers: this file's version takes any
// strides and sizes; gemm_vec4.wgsl replaces it for operands that are contiguous along K
// (A), N or K (B) and N (C), so that whole vec4s move. gemm_subgroup.wgsl appends the
// kernel for CPU adapters, which shares the accesses.
//
// In training, A may be the raw output of a batch-norm layer's input (`prologue` != 0):
// the batch norm and its activation are applied as A is loaded, with the per-channel scale
// and shift its stats_finalize left in the layer's statistics (bn_act.wgsl), so the
// normalised tensor is never written. A's channel is its column (the forward GEMM) or,
// with `prologue_rows`, its row (dW = X^T dY reads X transposed).

struct GemmParams {
    m: u32, n: u32, k: u32, act: u32,
    a_row_stride: u32, a_col_stride: u32, b_row_stride: u32, b_col_stride: u32,
    has_bias: u32, accumulate: u32, splits: u32, k_chunk: u32,
    lanes_x: u32, a_zero_padded: u32,
    // 0: A as stored; else 1 + the activation code of A's batch norm, applied on load.
    prologue: u32, prologue_rows: u32,
    // The *_stats entry points: rows per chunk of the next batch norm's statistics.
    // The *_sums entry points: 1 + the activation code of the batch norm whose output's
    // gradient C is.
    stats_rows: u32, sums: u32, pad1: u32, pad2: u32,
    // The forward_*_dw entry points: the 3x3 depthwise layer after this pointwise one, on
    // images of dw_in_h x dw_in_w pixels (at most 2x2) to dw_out_h x dw_out_w, its
    // activation code.
    dw_in_h: u32, dw_in_w: u32, dw_out_h: u32, dw_out_w: u32,
    dw_stride: u32, dw_pad_top: u32, dw_pad_left: u32, dw_act: u32,
}

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
// The *_stats entry points: per chunk of `stats_rows` rows, the mean and the sum of squared
// deviations of each column of C, laid out as bn_act.wgsl's stats_partial leaves them
// ([chunk][mean | m2][n]), for the batch norm that C feeds.
@group(0) @binding(6) var<storage, read_write> output_partials: array<f32>;
// The *_sums entry points (C = dX of a layer after a batch norm): that batch norm's
// statistics, [7][n] (bn_act.wgsl's `stats`); its raw input is binding 8, in ACCESS. They
// leave the batch norm's backward partials in binding 6, as its backward_partial would.
@group(0) @binding(7) var<storage, read> sums_norm: array<f32>;

// The scale and shift of 4 channels of A's batch norm (zero where there is no prologue).
struct Affine4 {
    scale: vec4<f32>, shift: vec4<f32>,
}

// Values of A after the prologue's normalisation and activation, if there is one.
fn prologued(v: vec4<f32>, affine: Affine4) -> vec4<f32> {
    return prologued_as(v, affine, p.prologue);
}

// `prologued` with the prologue code (0: none, else the activation + 1) given: a literal
// there compiles to that activation's arithmetic alone (see accumulate_prologued_tall_tile).
fn prologued_as(v: vec4<f32>, affine: Affine4, prologue: u32) -> vec4<f32> {
    if prologue == 0u {
        return v;
    }
    return activate4(v * affine.scale + affine.shift, prologue - 1u);
}

const LANES: u32 = 64u;
const ROWS: u32 = 8u;
const COLS: u32 = 8u;

// One element of C: bias, accumulation and activation; elements outside C are skipped.
fn store_c(split: u32, row: u32, col: u32, sum: f32) {
    if row >= p.m || col >= p.n {
        return;
    }
    var value = sum;
    if p.has_bias != 0u {
        value += bias[col];
    }
    let out_index = split * p.m * p.n + row * p.n + col;
    if p.accumulate != 0u {
        value += c[out_index];
    }
    c[out_index] = activate(value, p.act);
}

// Four adjacent columns of one row of C.
fn store_c4(split: u32, row: u32, col: u32, sum: vec4<f32>) {
    store_c(split, row, col, sum.x);
    store_c(split, row, col + 1u, sum.y);
    store_c(split, row, col + 2u, sum.z);
    store_c(split, row, col + 3u, sum.w);
}

// B[k, col..col+4] at row offset `b_off`, for precomputed (clamped) column offsets.
fn load_b4(b_off: u32, cols: vec4<u32>) -> vec4<f32> {
    return vec4<f32>(b[b_off + cols.x], b[b_off + cols.y], b[b_off + cols.z], b[b_off + cols.w]);
}

// ACCESS BEGIN
// Batch-norm statistics of A's producer, [7][channels] (bn_act.wgsl's `stats`).
@group(0) @binding(5) var<storage, read> prologue_stats: array<f32>;
// The *_sums entry points: the raw input of the batch norm before this layer, [m][n].
@group(0) @binding(8) var<storage, read> sums_input: array<f32>;

// Indices of elements row, col .. col + 3 of an [m][n] tensor (C's shape), clamped into
// the row, and which of those columns lie inside N.
fn row_indices4(row: u32, col: u32) -> vec4<u32> {
    return row * p.n + min(vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
}

fn inside_n4(col: u32) -> vec4<bool> {
    return vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.n);
}

// sums_input[row, col .. col + 3], zero past N.
fn load_sums_input4(row: u32, col: u32) -> vec4<f32> {
    let at = row_indices4(row, col);
    let x = vec4<f32>(sums_input[at.x], sums_input[at.y], sums_input[at.z], sums_input[at.w]);
    return select(vec4<f32>(0.0), x, inside_n4(col));
}

// C[row, col .. col + 3] as stored, zero past N.
fn load_c_row4(row: u32, col: u32) -> vec4<f32> {
    let at = row_indices4(row, col);
    return select(vec4<f32>(0.0), vec4<f32>(c[at.x], c[at.y], c[at.z], c[at.w]), inside_n4(col));
}

// The prologue's scale and shift of A's columns k .. k + 3 (along K; loaded once per step
// of K for all the rows an invocation loads).
fn a_affine(k: u32, k_last: u32) -> Affine4 {
    if p.prologue == 0u || p.prologue_rows != 0u {
        return Affine4();
    }
    let ks = min(vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.k - 1u));
    let scale = ks;
    let shift = p.k + ks;
    return Affine4(
        vec4<f32>(prologue_stats[scale.x], prologue_stats[scale.y], prologue_stats[scale.z],
                  prologue_stats[scale.w]),
        vec4<f32>(prologue_stats[shift.x], prologue_stats[shift.y], prologue_stats[shift.z],
                  prologue_stats[shift.w]));
}

// A[row, k .. k + 3] after the prologue, zero from `k_last` on. With `prologue_rows` the
// row is the channel, whose scale and shift are loaded here.
fn load_a4(row: u32, k: u32, k_last: u32, affine: Affine4) -> vec4<f32> {
    return load_a4_as(row, k, k_last, affine, p.prologue);
}

// load_a4 with the prologue code given (prologued_as).
fn load_a4_as(row: u32, k: u32, k_last: u32, affine: Affine4, prologue: u32) -> vec4<f32> {
    let ks = vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u);
    let at = row * p.a_row_stride + min(ks, vec4<u32>(k_last - 1u)) * p.a_col_stride;
    var v = vec4<f32>(a[at.x], a[at.y], a[at.z], a[at.w]);
    if p.prologue_rows != 0u {
        v = prologued_as(v, Affine4(vec4<f32>(prologue_stats[row]),
                                    vec4<f32>(prologue_stats[p.m + row])), prologue);
    } else {
        v = prologued_as(v, affine, prologue);
    }
    return select(vec4<f32>(0.0), v, ks < vec4<u32>(k_last));
}

// B[k + t, col .. col + 3] as column t, for t = 0 .. 3, clamped into B (A is zero wherever
// a clamped value would count). The strides say whether B is transposed.
fn load_b4x4(k: u32, k_last: u32, col: u32, b_transposed: bool) -> mat4x4<f32> {
    let cols = min(vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u)) * p.b_col_stride;
    let rows = min(vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(k_last - 1u)) * p.b_row_stride;
    return mat4x4<f32>(load_b4(rows.x, cols), load_b4(rows.y, cols), load_b4(rows.z, cols),
                       load_b4(rows.w, cols));
}

// The bias of the lane's 4 columns when store_row adds it; store_c adds it here.
fn tile_bias(col: u32) -> vec4<f32> {
    return vec4<f32>(0.0);
}

// Row `row` of C at columns col .. col + 3, through store_c's epilogue and bounds checks.
fn store_row(split: u32, row: u32, col: u32, bias: vec4<f32>, sum: vec4<f32>) {
    store_c4(split, row, col, sum);
}

// The forward_*_dw entry points: the depthwise layer's weights [3][3][n] and bias [n].
@group(0) @binding(9) var<storage, read> dw_weight: array<f32>;
@group(0) @binding(10) var<storage, read> dw_bias: array<f32>;

// Tap `tap` (ky * 3 + kx) of the depthwise filter, or its bias (`tap` 9), at columns
// col .. col + 3 (clamped into C: lanes past N store nothing).
fn dw_param4(tap: u32, col: u32) -> vec4<f32> {
    let cols = min(vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
    if tap == 9u {
        return vec4<f32>(dw_bias[cols.x], dw_bias[cols.y], dw_bias[cols.z], dw_bias[cols.w]);
    }
    let at = tap * p.n + cols;
    return vec4<f32>(dw_weight[at.x], dw_weight[at.y], dw_weight[at.z], dw_weight[at.w]);
}

// Row `row` of C at columns col .. col + 3 as given (those inside N).
fn store_c_row4(row: u32, col: u32, value: vec4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        if col + j < p.n {
            c[row * p.n + col + j] = value[j];
        }
    }
}
// ACCESS END

// 16 vec4s of C (a subgroup lane's 16x4 block, a register-blocked invocation's 8 rows by
// two column vec4s); a struct with named members stays in registers
// where an indexed array would go to memory.
struct Tile {
    r0: vec4<f32>, r1: vec4<f32>, r2: vec4<f32>, r3: vec4<f32>,
    r4: vec4<f32>, r5: vec4<f32>, r6: vec4<f32>, r7: vec4<f32>,
    r8: vec4<f32>, r9: vec4<f32>, r10: vec4<f32>, r11: vec4<f32>,
    r12: vec4<f32>, r13: vec4<f32>, r14: vec4<f32>, r15: vec4<f32>,
}

// acc + 4 steps of K: the row's 4 values of A times the B rows in the columns of `b`.
fn fma_4k(acc: vec4<f32>, a: vec4<f32>, b: mat4x4<f32>) -> vec4<f32> {
    return acc + a.x * b[0] + a.y * b[1] + a.z * b[2] + a.w * b[3];
}

// Where an invocation's 8x8 block lies: its K split, first row and first column. z
// enumerates the K splits and, beyond them, rows past the 65535-workgroup cap of y.
fn block_origin(wg: vec3<u32>, nwg: vec3<u32>, lane: u32) -> vec3<u32> {
    let lanes_y = LANES / p.lanes_x;
    let split = wg.z % p.splits;
    let row_block = (wg.y + (wg.z / p.splits) * nwg.y) * lanes_y + lane / p.lanes_x;
    return vec3<u32>(split, row_block * ROWS, (wg.x * p.lanes_x + lane % p.lanes_x) * COLS);
}

// Two entry points for B's layout; the flag is a literal, so the compiler keeps one branch
// of load_b4x4. Out-of-range blocks return at once; helpers keep to a single return.
@compute @workgroup_size(LANES)
fn forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = block_origin(wg, nwg, lane);
    if at.y >= p.m || at.z >= p.n { return; }
    store_block(at, accumulate_block(at, false));
}

// For B stored transposed (contiguous along K), as in dX = dY W^T.
@compute @workgroup_size(LANES)
fn forward_bt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = block_origin(wg, nwg, lane);
    if at.y >= p.m || at.z >= p.n { return; }
    store_block(at, accumulate_block(at, true));
}

// Rows 0-7 of the block in r0-r7 (columns col0 .. col0 + 3) and r8-r15 (the next 4).
// Out-of-range rows read a clamped, valid row and are simply not stored. Unrolled by hand,
// like the stores, so that the block stays in registers.
fn accumulate_block(at: vec3<u32>, b_transposed: bool) -> Tile {
    let last_row = p.m - 1u;
    let row0 = at.y;
    let col0 = at.z;
    let k_first = at.x * p.k_chunk;
    let k_last = min(k_first + p.k_chunk, p.k);
    var t = Tile();
    for (var kk = k_first; kk < k_last; kk += 4u) {
        let lo = load_b4x4(kk, k_last, col0, b_transposed);
        let hi = load_b4x4(kk, k_last, col0 + 4u, b_transposed);
        let affine = a_affine(kk, k_last);
        let v0 = load_a4(row0, kk, k_last, affine);
        t.r0 = fma_4k(t.r0, v0, lo);
        t.r8 = fma_4k(t.r8, v0, hi);
        let v1 = load_a4(min(row0 + 1u, last_row), kk, k_last, affine);
        t.r1 = fma_4k(t.r1, v1, lo);
        t.r9 = fma_4k(t.r9, v1, hi);
        let v2 = load_a4(min(row0 + 2u, last_row), kk, k_last, affine);
        t.r2 = fma_4k(t.r2, v2, lo);
        t.r10 = fma_4k(t.r10, v2, hi);
        let v3 = load_a4(min(row0 + 3u, last_row), kk, k_last, affine);
        t.r3 = fma_4k(t.r3, v3, lo);
        t.r11 = fma_4k(t.r11, v3, hi);
        let v4 = load_a4(min(row0 + 4u, last_row), kk, k_last, affine);
        t.r4 = fma_4k(t.r4, v4, lo);
        t.r12 = fma_4k(t.r12, v4, hi);
        let v5 = load_a4(min(row0 + 5u, last_row), kk, k_last, affine);
        t.r5 = fma_4k(t.r5, v5, lo);
        t.r13 = fma_4k(t.r13, v5, hi);
        let v6 = load_a4(min(row0 + 6u, last_row), kk, k_last, affine);
        t.r6 = fma_4k(t.r6, v6, lo);
        t.r14 = fma_4k(t.r14, v6, hi);
        let v7 = load_a4(min(row0 + 7u, last_row), kk, k_last, affine);
        t.r7 = fma_4k(t.r7, v7, lo);
        t.r15 = fma_4k(t.r15, v7, hi);
    }
    return t;
}

fn store_block(at: vec3<u32>, t: Tile) {
    store_rows8(at.x, at.y, at.z, at.z + 4u, t);
}

// 8 rows of C from row0 on, at columns lo .. lo + 3 (r0-r7) and hi .. hi + 3 (r8-r15).
fn store_rows8(split: u32, row0: u32, lo: u32, hi: u32, t: Tile) {
    let bias_lo = tile_bias(lo);
    let bias_hi = tile_bias(hi);
    store_row(split, row0, lo, bias_lo, t.r0);
    store_row(split, row0, hi, bias_hi, t.r8);
    store_row(split, row0 + 1u, lo, bias_lo, t.r1);
    store_row(split, row0 + 1u, hi, bias_hi, t.r9);
    store_row(split, row0 + 2u, lo, bias_lo, t.r2);
    store_row(split, row0 + 2u, hi, bias_hi, t.r10);
    store_row(split, row0 + 3u, lo, bias_lo, t.r3);
    store_row(split, row0 + 3u, hi, bias_hi, t.r11);
    store_row(split, row0 + 4u, lo, bias_lo, t.r4);
    store_row(split, row0 + 4u, hi, bias_hi, t.r12);
    store_row(split, row0 + 5u, lo, bias_lo, t.r5);
    store_row(split, row0 + 5u, hi, bias_hi, t.r13);
    store_row(split, row0 + 6u, lo, bias_lo, t.r6);
    store_row(split, row0 + 6u, hi, bias_hi, t.r14);
    store_row(split, row0 + 7u, lo, bias_lo, t.r7);
    store_row(split, row0 + 7u, hi, bias_hi, t.r15);
}

// Inference, a pointwise layer whose output feeds only a 3x3 depthwise layer on images of
// at most 2x2 pixels: an invocation's 8 rows hold whole images (the images are 1, 2 or 4
// rows), so it applies the depthwise layer to its block in registers and stores that
// layer's output instead (`with_depthwise_epilogue`); the pointwise output is never
// stored, and the depthwise layer runs no dispatch of its own.
@compute @workgroup_size(LANES)
fn forward_dw(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    dw_block(block_origin(wg, nwg, lane), false);
}

// For the pointwise weight stored transposed (`weight_layout` in ops/gemm.rs).
@compute @workgroup_size(LANES)
fn forward_dw_bt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    dw_block(block_origin(wg, nwg, lane), true);
}

fn dw_block(at: vec3<u32>, b_transposed: bool) {
    if at.y >= p.m || at.z >= p.n { return; }
    let t = accumulate_block(at, b_transposed);
    store_dw_rows8(at.y, at.z, dw_group_taps(at.z), t.r0, t.r1, t.r2, t.r3, t.r4, t.r5, t.r6,
                   t.r7);
    store_dw_rows8(at.y, at.z + 4u, dw_group_taps(at.z + 4u), t.r8, t.r9, t.r10, t.r11, t.r12,
                   t.r13, t.r14, t.r15);
}

// On a group of 4 rows of the pointwise output (from a multiple of 4), which holds 4 / P
// whole images of P = dw_in_h * dw_in_w pixels, the depthwise layer is a linear map: its
// output row `first + j` (the group's images' Q = dw_out_h * dw_out_w outputs each, in
// order; Q <= P, so j < 4) is the sum over the group's rows i of taps[j][i] * x_i, the tap
// of the filter that joins them (zero where they belong to different images or no tap
// does). The 16 taps of 4 channels are worked out once per invocation and column block.
struct DwRow {
    x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>,
}

struct DwGroupTaps {
    o0: DwRow, o1: DwRow, o2: DwRow, o3: DwRow, bias: vec4<f32>,
}

fn dw_group_taps(col: u32) -> DwGroupTaps {
    let f = dw_filter_taps(col);
    return DwGroupTaps(dw_row(f, 0u), dw_row(f, 1u), dw_row(f, 2u), dw_row(f, 3u),
                       dw_param4(9u, col));
}

// The depthwise filter of columns col .. col + 3.
fn dw_filter_taps(col: u32) -> FilterTaps {
    return FilterTaps(TapRow(dw_param4(0u, col), dw_param4(1u, col), dw_param4(2u, col)),
                      TapRow(dw_param4(3u, col), dw_param4(4u, col), dw_param4(5u, col)),
                      TapRow(dw_param4(6u, col), dw_param4(7u, col), dw_param4(8u, col)));
}

fn dw_row(f: FilterTaps, j: u32) -> DwRow {
    return DwRow(dw_tap(f, j, 0u), dw_tap(f, j, 1u), dw_tap(f, j, 2u), dw_tap(f, j, 3u));
}

// taps[j][i]: output j and input i of a group, each as (image in the group, pixel).
// Sizes here are 1, 2 or 4, so their divisions are shifts (lavapipe divides lane by lane).
fn dw_tap(f: FilterTaps, j: u32, i: u32) -> vec4<f32> {
    let in_shift = log2_small(p.dw_in_h * p.dw_in_w);
    let out_shift = log2_small(p.dw_out_h * p.dw_out_w);
    let q = j & ((1u << out_shift) - 1u);
    let r = i & ((1u << in_shift) - 1u);
    let in_w = log2_small(p.dw_in_w);
    let out_w = log2_small(p.dw_out_w);
    let ky = i32(r >> in_w) - i32((q >> out_w) * p.dw_stride) + i32(p.dw_pad_top);
    let kx = i32(r & in_w) - i32((q & out_w) * p.dw_stride) + i32(p.dw_pad_left);
    let joined = (j >> out_shift) == (i >> in_shift) && ky >= 0 && ky <= 2 && kx >= 0 && kx <= 2;
    return select(vec4<f32>(0.0), filter_tap(f, ky, kx), joined);
}

// log2 of 1, 2 or 4.
fn log2_small(v: u32) -> u32 {
    return v >> 1u;
}

// Tap (ky, kx) of the filter, chosen by selects.
fn filter_tap(f: FilterTaps, ky: i32, kx: i32) -> vec4<f32> {
    let k0 = select(select(f.t0.k0, f.t1.k0, ky == 1), f.t2.k0, ky == 2);
    let k1 = select(select(f.t0.k1, f.t1.k1, ky == 1), f.t2.k1, ky == 2);
    let k2 = select(select(f.t0.k2, f.t1.k2, ky == 1), f.t2.k2, ky == 2);
    return select(select(k0, k1, kx == 1), k2, kx == 2);
}

// Rows row0 .. row0 + 7 of the pointwise product at columns col .. col + 3 (before its
// bias and activation), through the depthwise layer, stored.
fn store_dw_rows8(row0: u32, col: u32, taps: DwGroupTaps, y0: vec4<f32>, y1: vec4<f32>,
                  y2: vec4<f32>, y3: vec4<f32>, y4: vec4<f32>, y5: vec4<f32>, y6: vec4<f32>,
                  y7: vec4<f32>) {
    if col >= p.n { return; }
    let bias = tile_bias(col);
    store_dw_group(row0, col, taps, DwRow(activate4(y0 + bias, p.act),
                                          activate4(y1 + bias, p.act),
                                          activate4(y2 + bias, p.act),
                                          activate4(y3 + bias, p.act)));
    store_dw_group(row0 + 4u, col, taps, DwRow(activate4(y4 + bias, p.act),
                                               activate4(y5 + bias, p.act),
                                               activate4(y6 + bias, p.act),
                                               activate4(y7 + bias, p.act)));
}

// The depthwise outputs of a group of 4 rows `x` from row0 (after the pointwise bias and
// activation), stored for the group's images that lie before row M.
fn store_dw_group(row0: u32, col: u32, taps: DwGroupTaps, x: DwRow) {
    let in_shift = log2_small(p.dw_in_h * p.dw_in_w);
    let out_shift = log2_small(p.dw_out_h * p.dw_out_w);
    let first = (row0 >> in_shift) << out_shift;
    let end = min(first + ((4u >> in_shift) << out_shift), (p.m >> in_shift) << out_shift);
    store_dw_output(first, end, col, taps.o0, x, taps.bias);
    store_dw_output(first + 1u, end, col, taps.o1, x, taps.bias);
    store_dw_output(first + 2u, end, col, taps.o2, x, taps.bias);
    store_dw_output(first + 3u, end, col, taps.o3, x, taps.bias);
}

// Output row `row` (stored if before `end`): the taps of its row times the group's rows.
fn store_dw_output(row: u32, end: u32, col: u32, t: DwRow, x: DwRow, bias: vec4<f32>) {
    if row < end {
        let sum = t.x0 * x.x0 + t.x1 * x.x1 + t.x2 * x.x2 + t.x3 * x.x3;
        store_c_row4(row, col, activate4(sum + bias, p.dw_act));
    }
}

// In training, when a batch norm comes next: each invocation walks one chunk of
// `stats_rows` rows, 8 at a time, for its 8 columns, stores C as `forward` does, and leaves
// the chunk's statistics of each column (Welford's update row by row, in order, as
// stats_partial would), so that pass need not read C again. block_origin's row block is
// the chunk here.
@compute @workgroup_size(LANES)
fn forward_stats(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = chunk_block(wg, nwg, lane);
    if b.first >= p.m || b.col >= p.n { return; }
    var lo = Welford();
    var hi = Welford();
    for (var row0 = b.first; row0 < b.last; row0 += ROWS) {
        let t = accumulate_block(vec3<u32>(0u, row0, b.col), false);
        store_block(vec3<u32>(0u, row0, b.col), t);
        lo = welford_rows8(lo, row0, b.first, b.last, t.r0, t.r1, t.r2, t.r3, t.r4, t.r5, t.r6,
                           t.r7);
        hi = welford_rows8(hi, row0, b.first, b.last, t.r8, t.r9, t.r10, t.r11, t.r12, t.r13,
                           t.r14, t.r15);
    }
    store_stats(b.chunk, b.col, lo);
    store_stats(b.chunk, b.col + 4u, hi);
}

// The chunk an invocation of the blocked kernel's *_stats and *_sums entry points walks:
// block_origin's row block is the chunk, its rows first .. last, its 8 columns from col.
struct ChunkBlock {
    chunk: u32, first: u32, last: u32, col: u32,
}

fn chunk_block(wg: vec3<u32>, nwg: vec3<u32>, lane: u32) -> ChunkBlock {
    let at = block_origin(wg, nwg, lane);
    let chunk = at.y / ROWS;
    let first = chunk * p.stats_rows;
    return ChunkBlock(chunk, first, min(first + p.stats_rows, p.m), at.z);
}

// `s` after rows row0 .. row0 + 7 of 4 columns (y0 .. y7), those before `last`; the
// chunk's rows count from `first`.
fn welford_rows8(s: Welford, row0: u32, first: u32, last: u32, y0: vec4<f32>, y1: vec4<f32>,
                 y2: vec4<f32>, y3: vec4<f32>, y4: vec4<f32>, y5: vec4<f32>, y6: vec4<f32>,
                 y7: vec4<f32>) -> Welford {
    var w = welford_row(s, row0, first, last, y0);
    w = welford_row(w, row0 + 1u, first, last, y1);
    w = welford_row(w, row0 + 2u, first, last, y2);
    w = welford_row(w, row0 + 3u, first, last, y3);
    w = welford_row(w, row0 + 4u, first, last, y4);
    w = welford_row(w, row0 + 5u, first, last, y5);
    w = welford_row(w, row0 + 6u, first, last, y6);
    return welford_row(w, row0 + 7u, first, last, y7);
}

// `s` after row `row` of 4 columns, if it lies before `last`.
fn welford_row(s: Welford, row: u32, first: u32, last: u32, y: vec4<f32>) -> Welford {
    var w = s;
    if row < last {
        w = welford_add(s, y, row - first + 1u);
    }
    return w;
}

// Chunk `chunk`'s statistics of columns col .. col + 3.
fn store_stats(chunk: u32, col: u32, s: Welford) {
    store_partials(chunk, col, s.mean, s.m2);
}

// Chunk `chunk`'s two partials of columns col .. col + 3, those inside C, side by side as
// bn_act.wgsl's partial_at lays them out.
fn store_partials(chunk: u32, col: u32, first: vec4<f32>, second: vec4<f32>) {
    let at = 2u * chunk * p.n + col;
    for (var j = 0u; j < 4u; j++) {
        if col + j < p.n {
            output_partials[at + j] = first[j];
            output_partials[at + p.n + j] = second[j];
        }
    }
}

// The dX GEMM of a layer after a batch norm, in training: like forward_stats, each
// invocation walks one chunk of `stats_rows` rows for its 8 columns and stores dX, then
// sums the batch norm's backward partials over the chunk's dX (the gradient of that batch
// norm's output) while it is still in cache, so the backward_partial pass is not needed.
@compute @workgroup_size(LANES)
fn forward_bt_sums(@builtin(workgroup_id) wg: vec3<u32>,
                   @builtin(local_invocation_index) lane: u32,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let b = chunk_block(wg, nwg, lane);
    if b.first >= p.m || b.col >= p.n { return; }
    for (var row0 = b.first; row0 < b.last; row0 += ROWS) {
        let at = vec3<u32>(0u, row0, b.col);
        store_block(at, accumulate_block(at, true));
    }
    store_sums(b.chunk, b.col, stored_sums(b.first, b.last, b.col));
    store_sums(b.chunk, b.col + 4u, stored_sums(b.first, b.last, b.col + 4u));
}

// The batch norm's backward sums of columns col .. col + 3 over rows first .. last of the
// dX just stored (no bias or activation: as computed), row by row. Read back in a loop
// rather than summed from the tile's registers as each tile is stored: on lavapipe the
// unrolled per-row loads of the batch norm's input missed the cache one by one, and the
// loop's strided loads are prefetched (the 13 dX GEMMs at 224/8, all on the 32x32 tile,
// took 160-171 ms, now 142 ms; performance.md, 2026-12-05, late night).
fn stored_sums(first: u32, last: u32, col: u32) -> BnSums {
    let norm = sums_norm4(col);
    var s = BnSums();
    for (var row = first; row < last; row++) {
        s = bn_sums_add(s, load_c_row4(row, col), load_sums_input4(row, col), norm, p.sums - 1u);
    }
    return s;
}

// The batch norm's normalisation of columns col .. col + 3 (clamped into C).
fn sums_norm4(col: u32) -> BnNorm4 {
    let cols = min(vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
    return BnNorm4(sums_norm_plane(0u, cols), sums_norm_plane(1u, cols),
                   sums_norm_plane(2u, cols));
}

fn sums_norm_plane(plane: u32, cols: vec4<u32>) -> vec4<f32> {
    let at = plane * p.n + cols;
    return vec4<f32>(sums_norm[at.x], sums_norm[at.y], sums_norm[at.z], sums_norm[at.w]);
}

// Chunk `chunk`'s backward partials of columns col .. col + 3: sum dz and sum dz * xhat,
// as backward_partial leaves them.
fn store_sums(chunk: u32, col: u32, s: BnSums) {
    let cols = min(vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
    store_partials(chunk, col, s.dz, s.dz_centred * sums_norm_plane(3u, cols));
}
