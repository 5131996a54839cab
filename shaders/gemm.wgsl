// The GEMM behind pointwise (1x1) convolution and the dense layer:
//   C[m, n] = act(sum_k A[m, k] * B[k, n] + bias[n])   (+ C[m, n] when accumulating)
// A and B are addressed through row/column strides, so the backward pass can reuse this
// kernel on transposed operands without copying them. With `splits` > 1 the K range is cut
// into chunks of `k_chunk` and each chunk writes its own [m, n] partial (split-K: weight
// gradients reduce over N*H*W rows); reduce.wgsl then sums the partials in order.
//
// Each invocation keeps a 4x4 block of C in registers and streams K; no workgroup memory,
// because barriers are expensive on software rasterisers such as lavapipe.

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
const BLOCK: u32 = 4u;

@compute @workgroup_size(TILE_X, TILE_Y)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    // z enumerates the K splits and, beyond them, rows past the 65535-workgroup cap of y.
    let split = gid.z % p.splits;
    let row_block = gid.y + (gid.z / p.splits) * nwg.y * TILE_Y;
    let row0 = row_block * BLOCK;
    let col0 = gid.x * BLOCK;
    if row0 >= p.m || col0 >= p.n {
        return;
    }
    // Out-of-range rows/columns read a clamped, valid element and are simply not stored.
    var rows: array<u32, 4>;
    var cols: array<u32, 4>;
    for (var i = 0u; i < BLOCK; i++) {
        rows[i] = min(row0 + i, p.m - 1u) * p.a_row_stride;
        cols[i] = min(col0 + i, p.n - 1u) * p.b_col_stride;
    }
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    let k_first = split * p.k_chunk;
    let k_last = min(k_first + p.k_chunk, p.k);
    for (var kk = k_first; kk < k_last; kk++) {
        let a_off = kk * p.a_col_stride;
        let b_off = kk * p.b_row_stride;
        let bv = vec4<f32>(b[b_off + cols[0]], b[b_off + cols[1]], b[b_off + cols[2]], b[b_off + cols[3]]);
        acc0 += a[rows[0] + a_off] * bv;
        acc1 += a[rows[1] + a_off] * bv;
        acc2 += a[rows[2] + a_off] * bv;
        acc3 += a[rows[3] + a_off] * bv;
    }
    var block = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < BLOCK; i++) {
        let row = row0 + i;
        if row >= p.m {
            break;
        }
        for (var j = 0u; j < BLOCK; j++) {
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
