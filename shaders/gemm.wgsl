// The GEMM behind pointwise (1x1) convolution and the dense layer:
//   C[m, n] = act(sum_k A[m, k] * B[k, n] + bias[n])   (+ C[m, n] when accumulating)
// A and B are addressed through row/column strides, so the backward pass can reuse this
// kernel on transposed operands without copying them. With `splits` > 1 the K range is cut
// into chunks of `k_chunk` and each chunk writes its own [m, n] partial (split-K: weight
// gradients reduce over N*H*W rows); reduce.wgsl then sums the partials in order.
//
// Each invocation keeps an 8x4 block of C in registers (8 rows, one vec4 of columns, in
// named variables: indexing a private array would put it in memory) and streams K; no
// workgroup memory, because barriers are expensive on software rasterisers such as lavapipe.

struct GemmParams {
    m: u32, n: u32, k: u32, act: u32,
    a_row_stride: u32, a_col_stride: u32, b_row_stride: u32, b_col_stride: u32,
    has_bias: u32, accumulate: u32, splits: u32, k_chunk: u32,
}

@group(0) @binding(0) var<uniform> p: GemmParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;

override TILE_X: u32 = 16u;
override TILE_Y: u32 = 16u;
const ROWS: u32 = 8u;
const COLS: u32 = 4u;

@compute @workgroup_size(TILE_X, TILE_Y)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    // z enumerates the K splits and, beyond them, rows past the 65535-workgroup cap of y.
    let split = gid.z % p.splits;
    let row_block = gid.y + (gid.z / p.splits) * nwg.y * TILE_Y;
    let row0 = row_block * ROWS;
    let col0 = gid.x * COLS;
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
    let last_col = p.n - 1u;
    let cols = vec4<u32>(min(col0, last_col), min(col0 + 1u, last_col), min(col0 + 2u, last_col),
                         min(col0 + 3u, last_col)) * p.b_col_stride;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    let k_first = split * p.k_chunk;
    let k_last = min(k_first + p.k_chunk, p.k);
    for (var kk = k_first; kk < k_last; kk++) {
        let a_off = kk * p.a_col_stride;
        let b_off = kk * p.b_row_stride;
        let bv = vec4<f32>(b[b_off + cols.x], b[b_off + cols.y], b[b_off + cols.z], b[b_off + cols.w]);
        acc0 += a[r0 + a_off] * bv;
        acc1 += a[r1 + a_off] * bv;
        acc2 += a[r2 + a_off] * bv;
        acc3 += a[r3 + a_off] * bv;
        acc4 += a[r4 + a_off] * bv;
        acc5 += a[r5 + a_off] * bv;
        acc6 += a[r6 + a_off] * bv;
        acc7 += a[r7 + a_off] * bv;
    }
    let block = array<vec4<f32>, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    for (var i = 0u; i < ROWS; i++) {
        let row = row0 + i;
        if row >= p.m {
            break;
        }
        for (var j = 0u; j < COLS; j++) {
            let col = col0 + j;
            if col >= p.n {
                break;
            }
            var value = block[i][j];
            if p.has_bias != 0u {
                value += bias[col];
            }
            let out_index = split * p.m * p.n + row * p.n + col;
            if p.accumulate != 0u {
                value += c[out_index];
            }
            c[out_index] = activate(value, p.act);
        }
    }
}
