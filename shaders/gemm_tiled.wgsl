// The GEMM of gemm.wgsl tiled through workgroup memory, the shape discrete GPUs favour: a
// workgroup of 256 invocations computes a TILE_M x 64 block of C, each invocation
// THREAD_ROWS rows by one vec4 of columns (4x4 in the 64x64 tile, 8x4 in the 128x64 one).
// K advances in slabs of 8: the slab's A and B are loaded once into workgroup memory and
// read there by every invocation, so each value of A is read from memory by one invocation
// instead of 16. Two slab buffers alternate (double buffering): the next slab is loaded
// while the current one is multiplied, which needs one barrier per slab instead of two.
//
// Appended to gemm.wgsl or its vec4 form (its parameters, bindings and ACCESS functions);
// the Rust side prepends TILE_M and THREAD_ROWS (see Shader::source). Barriers are costly
// on software rasterisers, so lavapipe keeps the other kernels; the tuner decides.

const TILE_N: u32 = 64u;
const TILE_K: u32 = 8u;
const TILED_LANES: u32 = 256u;
// Invocations across a tile's columns, one vec4 each.
const COL_LANES: u32 = 16u;
// One slab of A, K-major ([k][m], so an invocation's rows are whole vec4s), and of B
// ([k][n]), in vec4s.
const A_SLAB: u32 = TILE_K * TILE_M / 4u;
const B_SLAB: u32 = TILE_K * TILE_N / 4u;

var<workgroup> a_slabs: array<vec4<f32>, 2u * A_SLAB>;
var<workgroup> b_slabs: array<vec4<f32>, 2u * B_SLAB>;

// Loads the slab of K starting at `k0` into buffer `buf`; values past the K range are zero
// (the ACCESS loads may not be asked for them: the vec4 forms read whole rows).
fn load_slab(buf: u32, row0: u32, col0: u32, k0: u32, k_last: u32, lane: u32,
             b_transposed: bool) {
    // A: TILE_M rows by two vec4s of K.
    for (var i = lane; i < 2u * TILE_M; i += TILED_LANES) {
        let r = i / 2u;
        let kq = (i % 2u) * 4u;
        var v = vec4<f32>(0.0);
        if k0 + kq < k_last {
            v = load_a4(min(row0 + r, p.m - 1u), k0 + kq, k_last, a_affine(k0 + kq, k_last));
        }
        let at = buf * A_SLAB + (kq * TILE_M + r) / 4u;
        let lane4 = r % 4u;
        a_slabs[at][lane4] = v.x;
        a_slabs[at + TILE_M / 4u][lane4] = v.y;
        a_slabs[at + TILE_M / 2u][lane4] = v.z;
        a_slabs[at + 3u * TILE_M / 4u][lane4] = v.w;
    }
    // B: two 4x4 blocks of K by COL_LANES vec4s of columns.
    for (var i = lane; i < 2u * COL_LANES; i += TILED_LANES) {
        let kq = (i / COL_LANES) * 4u;
        let cq = i % COL_LANES;
        var block = mat4x4<f32>();
        if k0 + kq < k_last {
            block = load_b4x4(k0 + kq, k_last, col0 + 4u * cq, b_transposed);
        }
        let at = buf * B_SLAB + kq * COL_LANES + cq;
        b_slabs[at] = block[0];
        b_slabs[at + COL_LANES] = block[1];
        b_slabs[at + 2u * COL_LANES] = block[2];
        b_slabs[at + 3u * COL_LANES] = block[3];
    }
}

// acc[r] += A[row r, k] * B[k, the lane's 4 columns] over the slab in buffer `buf`.
fn multiply_slab(buf: u32, row_lane: u32, col_lane: u32,
                 acc: ptr<function, array<vec4<f32>, THREAD_ROWS>>) {
    for (var kk = 0u; kk < TILE_K; kk++) {
        let b = b_slabs[buf * B_SLAB + kk * COL_LANES + col_lane];
        let a_at = buf * A_SLAB + kk * (TILE_M / 4u) + row_lane * (THREAD_ROWS / 4u);
        for (var q = 0u; q < THREAD_ROWS / 4u; q++) {
            let a = a_slabs[a_at + q];
            (*acc)[4u * q] += a.x * b;
            (*acc)[4u * q + 1u] += a.y * b;
            (*acc)[4u * q + 2u] += a.z * b;
            (*acc)[4u * q + 3u] += a.w * b;
        }
    }
}

// Every invocation reaches every barrier: nothing returns early, out-of-range rows and
// columns read clamped values and store nothing. z enumerates the K splits and, beyond
// them, rows past the 65535-workgroup cap of y (as in gemm.wgsl).
fn tiled_block(wg: vec3<u32>, nwg: vec3<u32>, lane: u32, b_transposed: bool) {
    let split = wg.z % p.splits;
    let row0 = (wg.y + (wg.z / p.splits) * nwg.y) * TILE_M;
    let col0 = wg.x * TILE_N;
    let k_first = split * p.k_chunk;
    let k_last = max(min(k_first + p.k_chunk, p.k), k_first);
    let slabs = (k_last - k_first + TILE_K - 1u) / TILE_K;
    let row_lane = lane / COL_LANES;
    let col_lane = lane % COL_LANES;
    var acc: array<vec4<f32>, THREAD_ROWS>;
    load_slab(0u, row0, col0, k_first, k_last, lane, b_transposed);
    workgroupBarrier();
    for (var s = 0u; s < slabs; s++) {
        let buf = s % 2u;
        if s + 1u < slabs {
            load_slab(1u - buf, row0, col0, k_first + (s + 1u) * TILE_K, k_last, lane,
                      b_transposed);
        }
        multiply_slab(buf, row_lane, col_lane, &acc);
        workgroupBarrier();
    }
    let col = col0 + 4u * col_lane;
    if col < p.n {
        let bias = tile_bias(col);
        for (var r = 0u; r < THREAD_ROWS; r++) {
            store_row(split, row0 + row_lane * THREAD_ROWS + r, col, bias, acc[r]);
        }
    }
}

@compute @workgroup_size(TILED_LANES)
fn tiled(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32,
         @builtin(num_workgroups) nwg: vec3<u32>) {
    tiled_block(wg, nwg, lane, false);
}

// For B stored transposed (contiguous along K), as in dX = dY W^T.
@compute @workgroup_size(TILED_LANES)
fn tiled_bt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lane: u32,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    tiled_block(wg, nwg, lane, true);
}
