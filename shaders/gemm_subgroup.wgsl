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

// The same tile for operands that are contiguous along K (A) and along N (B, C), with K and
// N multiples of 4, as in every forward pointwise convolution: each lane moves whole vec4s.
// A software rasteriser loops over the lanes once per load instruction, whatever its width,
// so one vec4 load costs about what one scalar load does: here a lane reads 4 K steps of
// its two A rows and its 4 columns of B with 6 loads instead of 24, and stores C by vec4.
// Lane j owns columns col0 + 4j .. col0 + 4j + 3.
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> c4: array<vec4<f32>>;

// acc += the 4 K steps of row `a` (its value sits in lane `src`) times B rows b0..b3.
fn fma_row4(acc: vec4<f32>, a: vec4<f32>, src: u32, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>,
            b3: vec4<f32>) -> vec4<f32> {
    let s = subgroupShuffle(a, src);
    return acc + s.x * b0 + s.y * b1 + s.z * b2 + s.w * b3;
}

// Row `row` of C at the lane's 4 columns (`col4` in vec4 units), if the row exists.
fn store_row4(row: u32, col4: u32, bias: vec4<f32>, sum: vec4<f32>) {
    if row >= p.m {
        return;
    }
    let index = row * (p.n / 4u) + col4;
    var value = sum + bias;
    if p.accumulate != 0u {
        value += c4[index];
    }
    c4[index] = activate4(value, p.act);
}

@compute @workgroup_size(SUBGROUP_LANES)
fn forward_subgroup_vec4(@builtin(workgroup_id) wg: vec3<u32>,
           @builtin(subgroup_invocation_id) lane: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let row0 = (wg.y + wg.z * nwg.y) * TILE_ROWS;
    if row0 >= p.m {
        return;
    }
    let last_row = p.m - 1u;
    // In vec4 units from here on.
    let a_lo_row = min(row0 + lane, last_row) * (p.a_row_stride / 4u);
    let a_hi_row = min(row0 + SUBGROUP_LANES + lane, last_row) * (p.a_row_stride / 4u);
    let col = wg.x * TILE_COLS + 4u * lane;
    let col4 = min(col, p.n - 4u) / 4u;
    let b_row4 = p.b_row_stride / 4u;
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
    for (var k4 = 0u; k4 < p.k / 4u; k4++) {
        let a_lo = a4[a_lo_row + k4];
        let a_hi = a4[a_hi_row + k4];
        let b_off = 4u * k4 * b_row4 + col4;
        let b0 = b4[b_off];
        let b1 = b4[b_off + b_row4];
        let b2 = b4[b_off + 2u * b_row4];
        let b3 = b4[b_off + 3u * b_row4];
        acc0 = fma_row4(acc0, a_lo, 0u, b0, b1, b2, b3);
        acc1 = fma_row4(acc1, a_lo, 1u, b0, b1, b2, b3);
        acc2 = fma_row4(acc2, a_lo, 2u, b0, b1, b2, b3);
        acc3 = fma_row4(acc3, a_lo, 3u, b0, b1, b2, b3);
        acc4 = fma_row4(acc4, a_lo, 4u, b0, b1, b2, b3);
        acc5 = fma_row4(acc5, a_lo, 5u, b0, b1, b2, b3);
        acc6 = fma_row4(acc6, a_lo, 6u, b0, b1, b2, b3);
        acc7 = fma_row4(acc7, a_lo, 7u, b0, b1, b2, b3);
        acc8 = fma_row4(acc8, a_hi, 0u, b0, b1, b2, b3);
        acc9 = fma_row4(acc9, a_hi, 1u, b0, b1, b2, b3);
        acc10 = fma_row4(acc10, a_hi, 2u, b0, b1, b2, b3);
        acc11 = fma_row4(acc11, a_hi, 3u, b0, b1, b2, b3);
        acc12 = fma_row4(acc12, a_hi, 4u, b0, b1, b2, b3);
        acc13 = fma_row4(acc13, a_hi, 5u, b0, b1, b2, b3);
        acc14 = fma_row4(acc14, a_hi, 6u, b0, b1, b2, b3);
        acc15 = fma_row4(acc15, a_hi, 7u, b0, b1, b2, b3);
    }
    // Lanes past the last column computed clamped copies; they store nothing.
    if col >= p.n {
        return;
    }
    var bias = vec4<f32>(0.0);
    if p.has_bias != 0u {
        bias = bias4[col4];
    }
    store_row4(row0 + 0u, col4, bias, acc0);
    store_row4(row0 + 1u, col4, bias, acc1);
    store_row4(row0 + 2u, col4, bias, acc2);
    store_row4(row0 + 3u, col4, bias, acc3);
    store_row4(row0 + 4u, col4, bias, acc4);
    store_row4(row0 + 5u, col4, bias, acc5);
    store_row4(row0 + 6u, col4, bias, acc6);
    store_row4(row0 + 7u, col4, bias, acc7);
    store_row4(row0 + 8u, col4, bias, acc8);
    store_row4(row0 + 9u, col4, bias, acc9);
    store_row4(row0 + 10u, col4, bias, acc10);
    store_row4(row0 + 11u, col4, bias, acc11);
    store_row4(row0 + 12u, col4, bias, acc12);
    store_row4(row0 + 13u, col4, bias, acc13);
    store_row4(row0 + 14u, col4, bias, acc14);
    store_row4(row0 + 15u, col4, bias, acc15);
}
