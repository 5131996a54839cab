// The GEMM of gemm.wgsl for adapters whose subgroups are 8 lanes wide and cheap to
// shuffle (software Vulkan on a CPU, where a subgroup is one SIMD register and every
// memory read is a per-lane gather). A workgroup is one subgroup and computes a 16x32 block
// of C: lane j loads rows j and 8 + j of A and columns j, 8 + j, 16 + j, 24 + j of B, and
// the 16 A values reach every lane by shuffles, so each lane does 64 multiply-adds per 6
// reads (the register-blocked kernel: 64 per 16).

// Appended to gemm.wgsl (its parameters, bindings, store_c and load_b4), in a module of its own
// because subgroup operations need a device feature the base kernel must not depend on.

const SUBGROUP_LANES: u32 = 8u;
const TILE_ROWS: u32 = 16u;
const TILE_COLS: u32 = 32u;

// A lane's 4 columns (col, col + 8, col + 16, col + 24) of one row of C.
fn store_row(split: u32, row: u32, col: u32, sum: vec4<f32>) {
    store_c(split, row, col, sum.x);
    store_c(split, row, col + 8u, sum.y);
    store_c(split, row, col + 16u, sum.z);
    store_c(split, row, col + 24u, sum.w);
}

@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup(@builtin(workgroup_id) wg: vec3<u32>,
           @builtin(subgroup_invocation_id) lane: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    // z enumerates the K splits and, beyond them, rows past the 65535-workgroup cap of y.
    let split = wg.z % p.splits;
    let row0 = (wg.y + (wg.z / p.splits) * nwg.y) * TILE_ROWS;
    let col0 = wg.x * TILE_COLS;
    // The same for every lane: the subgroup stays whole for the shuffles.
    if row0 >= p.m {
        return;
    }
    // Out-of-range rows/columns read a clamped, valid element and are simply not stored.
    let last_row = p.m - 1u;
    let a_lo_row = min(row0 + lane, last_row) * p.a_row_stride;
    let a_hi_row = min(row0 + SUBGROUP_LANES + lane, last_row) * p.a_row_stride;
    let col = col0 + lane;
    let cols = min(vec4<u32>(col) + vec4<u32>(0u, 8u, 16u, 24u), vec4<u32>(p.n - 1u)) * p.b_col_stride;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    var acc8 = vec4<f32>(0.0);
    var acc9 = vec4<f32>(0.0);
    var acc10 = vec4<f32>(0.0);
    var acc11 = vec4<f32>(0.0);
    var acc12 = vec4<f32>(0.0);
    var acc13 = vec4<f32>(0.0);
    var acc14 = vec4<f32>(0.0);
    var acc15 = vec4<f32>(0.0);
    let k_first = split * p.k_chunk;
    let k_last = min(k_first + p.k_chunk, p.k);
    for (var kk = k_first; kk < k_last; kk++) {
        let a_off = kk * p.a_col_stride;
        let b_off = kk * p.b_row_stride;
        let a_lo = a[a_lo_row + a_off];
        let a_hi = a[a_hi_row + a_off];
        let bv = load_b4(b_off, cols);
        acc0 += subgroupShuffle(a_lo, 0u) * bv;
        acc1 += subgroupShuffle(a_lo, 1u) * bv;
        acc2 += subgroupShuffle(a_lo, 2u) * bv;
        acc3 += subgroupShuffle(a_lo, 3u) * bv;
        acc4 += subgroupShuffle(a_lo, 4u) * bv;
        acc5 += subgroupShuffle(a_lo, 5u) * bv;
        acc6 += subgroupShuffle(a_lo, 6u) * bv;
        acc7 += subgroupShuffle(a_lo, 7u) * bv;
        acc8 += subgroupShuffle(a_hi, 0u) * bv;
        acc9 += subgroupShuffle(a_hi, 1u) * bv;
        acc10 += subgroupShuffle(a_hi, 2u) * bv;
        acc11 += subgroupShuffle(a_hi, 3u) * bv;
        acc12 += subgroupShuffle(a_hi, 4u) * bv;
        acc13 += subgroupShuffle(a_hi, 5u) * bv;
        acc14 += subgroupShuffle(a_hi, 6u) * bv;
        acc15 += subgroupShuffle(a_hi, 7u) * bv;
    }
    store_row(split, row0 + 0u, col, acc0);
    store_row(split, row0 + 1u, col, acc1);
    store_row(split, row0 + 2u, col, acc2);
    store_row(split, row0 + 3u, col, acc3);
    store_row(split, row0 + 4u, col, acc4);
    store_row(split, row0 + 5u, col, acc5);
    store_row(split, row0 + 6u, col, acc6);
    store_row(split, row0 + 7u, col, acc7);
    store_row(split, row0 + 8u, col, acc8);
    store_row(split, row0 + 9u, col, acc9);
    store_row(split, row0 + 10u, col, acc10);
    store_row(split, row0 + 11u, col, acc11);
    store_row(split, row0 + 12u, col, acc12);
    store_row(split, row0 + 13u, col, acc13);
    store_row(split, row0 + 14u, col, acc14);
    store_row(split, row0 + 15u, col, acc15);
}
