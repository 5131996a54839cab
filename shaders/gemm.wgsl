// The GEMM behind pointwise (1x1) convolution and the dense layer:
//   C[m, n] = act(sum_k A[m, k] * B[k, n] + bias[n])   (+ C[m, n] when accumulating)
// A and B are addressed through row/column strides, so the backward pass can reuse this
// kernel on transposed operands without copying them. With `splits` > 1 the K range is cut
// into chunks of `k_chunk` and each chunk writes its own [m, n] partial (split-K: weight
// gradients reduce over N*H*W rows); reduce.wgsl then sums the partials in order.
//
// Each invocation keeps an 8x8 block of C in registers (8 rows, two vec4s of columns, in
// named variables: indexing a private array would put it in memory) and streams K; no
// workgroup memory, because barriers are expensive on software rasterisers such as lavapipe,
// where every load is a per-lane gather: the 8x8 block does 64 multiply-adds per 16 loads.
// The 64 invocations of a workgroup are laid out as `lanes_x` column blocks by
// 64 / `lanes_x` row blocks, chosen per GEMM so that narrow outputs keep every lane busy.

struct GemmParams {
    m: u32, n: u32, k: u32, act: u32,
    a_row_stride: u32, a_col_stride: u32, b_row_stride: u32, b_col_stride: u32,
    has_bias: u32, accumulate: u32, splits: u32, k_chunk: u32,
    lanes_x: u32, a_zero_padded: u32, _unused1: u32, _unused2: u32,
}

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

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

@compute @workgroup_size(LANES)
fn forward(@builtin(workgroup_id) wg: vec3<u32>,
           @builtin(local_invocation_index) lane: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let lanes_y = LANES / p.lanes_x;
    // z enumerates the K splits and, beyond them, rows past the 65535-workgroup cap of y.
    let split = wg.z % p.splits;
    let row_block = (wg.y + (wg.z / p.splits) * nwg.y) * lanes_y + lane / p.lanes_x;
    let row0 = row_block * ROWS;
    let col0 = (wg.x * p.lanes_x + lane % p.lanes_x) * COLS;
    if row0 >= p.m || col0 >= p.n {
        return;
    }
    // Out-of-range rows/columns read a clamped, valid element and are simply not stored.
    let last_row = p.m - 1u;
    let r0 = min(row0, last_row) * p.a_row_stride;
    let r1 = min(row0 + 1u, last_row) * p.a_row_stride;
    let r2 = min(row0 + 2u, last_row) * p.a_row_stride;
    let r3 = min(row0 + 3u, last_row) * p.a_row_stride;
    let r4 = min(row0 + 4u, last_row) * p.a_row_stride;
    let r5 = min(row0 + 5u, last_row) * p.a_row_stride;
    let r6 = min(row0 + 6u, last_row) * p.a_row_stride;
    let r7 = min(row0 + 7u, last_row) * p.a_row_stride;
    let last_col = vec4<u32>(p.n - 1u);
    let first_cols = vec4<u32>(col0) + vec4<u32>(0u, 1u, 2u, 3u);
    let cols_lo = min(first_cols, last_col) * p.b_col_stride;
    let cols_hi = min(first_cols + vec4<u32>(4u), last_col) * p.b_col_stride;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var acc0h = vec4<f32>(0.0);
    var acc1h = vec4<f32>(0.0);
    var acc2h = vec4<f32>(0.0);
    var acc3h = vec4<f32>(0.0);
    var acc4h = vec4<f32>(0.0);
    var acc5h = vec4<f32>(0.0);
    var acc6h = vec4<f32>(0.0);
    var acc7h = vec4<f32>(0.0);
    let k_first = split * p.k_chunk;
    let k_last = min(k_first + p.k_chunk, p.k);
    for (var kk = k_first; kk < k_last; kk++) {
        let a_off = kk * p.a_col_stride;
        let b_off = kk * p.b_row_stride;
        let lo = load_b4(b_off, cols_lo);
        let hi = load_b4(b_off, cols_hi);
        let a0 = a[r0 + a_off];
        acc0 += a0 * lo;
        acc0h += a0 * hi;
        let a1 = a[r1 + a_off];
        acc1 += a1 * lo;
        acc1h += a1 * hi;
        let a2 = a[r2 + a_off];
        acc2 += a2 * lo;
        acc2h += a2 * hi;
        let a3 = a[r3 + a_off];
        acc3 += a3 * lo;
        acc3h += a3 * hi;
        let a4 = a[r4 + a_off];
        acc4 += a4 * lo;
        acc4h += a4 * hi;
        let a5 = a[r5 + a_off];
        acc5 += a5 * lo;
        acc5h += a5 * hi;
        let a6 = a[r6 + a_off];
        acc6 += a6 * lo;
        acc6h += a6 * hi;
        let a7 = a[r7 + a_off];
        acc7 += a7 * lo;
        acc7h += a7 * hi;
    }
    // Unrolled: a loop over an array of the accumulators would index private memory.
    let col4 = col0 + 4u;
    store_c4(split, row0, col0, acc0);
    store_c4(split, row0, col4, acc0h);
    store_c4(split, row0 + 1u, col0, acc1);
    store_c4(split, row0 + 1u, col4, acc1h);
    store_c4(split, row0 + 2u, col0, acc2);
    store_c4(split, row0 + 2u, col4, acc2h);
    store_c4(split, row0 + 3u, col0, acc3);
    store_c4(split, row0 + 3u, col4, acc3h);
    store_c4(split, row0 + 4u, col0, acc4);
    store_c4(split, row0 + 4u, col4, acc4h);
    store_c4(split, row0 + 5u, col0, acc5);
    store_c4(split, row0 + 5u, col4, acc5h);
    store_c4(split, row0 + 6u, col0, acc6);
    store_c4(split, row0 + 6u, col4, acc6h);
    store_c4(split, row0 + 7u, col0, acc7);
    store_c4(split, row0 + 7u, col4, acc7h);
}
