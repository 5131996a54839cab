// The int8 GEMM behind pointwise convolution, the dense classifier and the stem (after
// conv2d_int8.wgsl's im2col):
//   acc[m, n] = bias_eff[n] + sum_k A[m, k] * B[n, k]          (i32)
//   C[m, n]   = requantize(acc, scale[n], zero_point, lo, hi)  (int8, `forward`)
//   or logits[m, n] = f32(acc) * scale[n]                      (f32, `logits`)
// A is [M][k_words] and B [N][k_words], both int8 packed four to a word along K (padded K
// weighs zero in B), so one dot4I8Packed takes four steps of K. The input's zero point is
// folded into bias_eff on the CPU (ops::fold_bias). C is [M][out_words], four channels a
// word, channels past N holding the zero point.
//
// Each invocation computes an 8-row by 8-column block (two output words per row): 16 loads
// per step of K for 64 packed dot products, accumulators in registers (a struct with
// named members: an indexed array would go to memory).

struct GemmInt8Params {
    m: u32, n: u32, k_words: u32, out_words: u32,
    col_blocks: u32, zero_point: i32, lo: i32, hi: i32,
}

@group(0) @binding(0) var<uniform> p: GemmInt8Params;
@group(0) @binding(1) var<storage, read> a: array<u32>;
@group(0) @binding(2) var<storage, read> b: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<i32>;
// Requantization multipliers (`forward`) or dequantization scales (`logits`), per column.
@group(0) @binding(4) var<storage, read> scale: array<f32>;
@group(0) @binding(5) var<storage, read_write> c: array<u32>;
@group(0) @binding(6) var<storage, read_write> logits: array<f32>;

const BLOCK_ROWS: u32 = 8u;
const BLOCK_COLS: u32 = 8u;

struct Block {
    r0lo: vec4<i32>, r0hi: vec4<i32>, r1lo: vec4<i32>, r1hi: vec4<i32>,
    r2lo: vec4<i32>, r2hi: vec4<i32>, r3lo: vec4<i32>, r3hi: vec4<i32>,
    r4lo: vec4<i32>, r4hi: vec4<i32>, r5lo: vec4<i32>, r5hi: vec4<i32>,
    r6lo: vec4<i32>, r6hi: vec4<i32>, r7lo: vec4<i32>, r7hi: vec4<i32>,
}

// The 8 columns of B one step of K reads, as two vec4s of packed words.
struct Cols8 {
    lo: vec4<u32>, hi: vec4<u32>,
}

// Four columns' products with one word of A: x . w.x, x . w.y, x . w.z, x . w.w.
fn dot4x(x: u32, w: vec4<u32>) -> vec4<i32> {
    return vec4<i32>(dot4I8Packed(x, w.x), dot4I8Packed(x, w.y), dot4I8Packed(x, w.z),
                     dot4I8Packed(x, w.w));
}

// (first row, first column) of the invocation's block, or none past the last block.
fn block_origin(index: u32) -> vec2<u32> {
    let row_blocks = (p.m + BLOCK_ROWS - 1u) / BLOCK_ROWS;
    if index >= row_blocks * p.col_blocks {
        return vec2<u32>(p.m, p.n);
    }
    return vec2<u32>((index / p.col_blocks) * BLOCK_ROWS, (index % p.col_blocks) * BLOCK_COLS);
}

// The products of the block, bias not yet added. Rows and columns past the matrix read a
// clamped, valid one and are simply not stored.
fn accumulate(row0: u32, col0: u32) -> Block {
    let kw = p.k_words;
    let rows = min(vec4<u32>(row0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.m - 1u)) * kw;
    let rows_hi = min(vec4<u32>(row0) + vec4<u32>(4u, 5u, 6u, 7u), vec4<u32>(p.m - 1u)) * kw;
    let cols_lo = min(vec4<u32>(col0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u)) * kw;
    let cols_hi = min(vec4<u32>(col0) + vec4<u32>(4u, 5u, 6u, 7u), vec4<u32>(p.n - 1u)) * kw;
    var t = Block();
    for (var k = 0u; k < kw; k++) {
        let w = Cols8(vec4<u32>(b[cols_lo.x + k], b[cols_lo.y + k], b[cols_lo.z + k], b[cols_lo.w + k]),
                      vec4<u32>(b[cols_hi.x + k], b[cols_hi.y + k], b[cols_hi.z + k], b[cols_hi.w + k]));
        let x0 = a[rows.x + k];
        t.r0lo += dot4x(x0, w.lo);
        t.r0hi += dot4x(x0, w.hi);
        let x1 = a[rows.y + k];
        t.r1lo += dot4x(x1, w.lo);
        t.r1hi += dot4x(x1, w.hi);
        let x2 = a[rows.z + k];
        t.r2lo += dot4x(x2, w.lo);
        t.r2hi += dot4x(x2, w.hi);
        let x3 = a[rows.w + k];
        t.r3lo += dot4x(x3, w.lo);
        t.r3hi += dot4x(x3, w.hi);
        let x4 = a[rows_hi.x + k];
        t.r4lo += dot4x(x4, w.lo);
        t.r4hi += dot4x(x4, w.hi);
        let x5 = a[rows_hi.y + k];
        t.r5lo += dot4x(x5, w.lo);
        t.r5hi += dot4x(x5, w.hi);
        let x6 = a[rows_hi.z + k];
        t.r6lo += dot4x(x6, w.lo);
        t.r6hi += dot4x(x6, w.hi);
        let x7 = a[rows_hi.w + k];
        t.r7lo += dot4x(x7, w.lo);
        t.r7hi += dot4x(x7, w.hi);
    }
    return t;
}

// What the epilogue needs of output columns col .. col + 3: loaded once per invocation,
// not once per row (on a CPU adapter each of these loads is a gather).
struct Columns {
    bias: vec4<i32>, scale: vec4<f32>, exists: vec4<bool>, col: u32,
}

fn columns(col: u32) -> Columns {
    let cols = min(vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.n - 1u));
    return Columns(vec4<i32>(bias[cols.x], bias[cols.y], bias[cols.z], bias[cols.w]),
                   vec4<f32>(scale[cols.x], scale[cols.y], scale[cols.z], scale[cols.w]),
                   vec4<u32>(col) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.n), col);
}

// One output word: the columns of `row`, requantized, missing columns holding the zero
// point.
fn store_word(row: u32, at: Columns, acc: vec4<i32>) {
    if row >= p.m || at.col / 4u >= p.out_words {
        return;
    }
    let y = requantize4(acc + at.bias, at.scale, p.zero_point, p.lo, p.hi);
    c[row * p.out_words + at.col / 4u] = pack4xI8(keep_or(y, at.exists, p.zero_point));
}

fn store_logits(row: u32, at: Columns, acc: vec4<i32>) {
    if row >= p.m {
        return;
    }
    let sum = acc + at.bias;
    let s = at.scale;
    let values = vec4<f32>(exact_f32(sum.x) * s.x, exact_f32(sum.y) * s.y,
                           exact_f32(sum.z) * s.z, exact_f32(sum.w) * s.w);
    for (var j = 0u; j < 4u; j++) {
        if at.exists[j] {
            logits[row * p.n + at.col + j] = values[j];
        }
    }
}

// The two entry points store through different bindings (each binds only the one it
// uses), so their epilogues are written out apiece.
@compute @workgroup_size(WG_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = block_origin(linear_index(gid, nwg));
    if at.x >= p.m || at.y >= p.n {
        return;
    }
    let t = accumulate(at.x, at.y);
    let lo = columns(at.y);
    let hi = columns(at.y + 4u);
    store_word(at.x, lo, t.r0lo);
    store_word(at.x, hi, t.r0hi);
    store_word(at.x + 1u, lo, t.r1lo);
    store_word(at.x + 1u, hi, t.r1hi);
    store_word(at.x + 2u, lo, t.r2lo);
    store_word(at.x + 2u, hi, t.r2hi);
    store_word(at.x + 3u, lo, t.r3lo);
    store_word(at.x + 3u, hi, t.r3hi);
    store_word(at.x + 4u, lo, t.r4lo);
    store_word(at.x + 4u, hi, t.r4hi);
    store_word(at.x + 5u, lo, t.r5lo);
    store_word(at.x + 5u, hi, t.r5hi);
    store_word(at.x + 6u, lo, t.r6lo);
    store_word(at.x + 6u, hi, t.r6hi);
    store_word(at.x + 7u, lo, t.r7lo);
    store_word(at.x + 7u, hi, t.r7hi);
}

// The classifier: the same products, dequantized to f32 logits [M][N].
@compute @workgroup_size(WG_SIZE)
fn logits_f32(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let at = block_origin(linear_index(gid, nwg));
    if at.x >= p.m || at.y >= p.n {
        return;
    }
    let t = accumulate(at.x, at.y);
    let lo = columns(at.y);
    let hi = columns(at.y + 4u);
    store_logits(at.x, lo, t.r0lo);
    store_logits(at.x, hi, t.r0hi);
    store_logits(at.x + 1u, lo, t.r1lo);
    store_logits(at.x + 1u, hi, t.r1hi);
    store_logits(at.x + 2u, lo, t.r2lo);
    store_logits(at.x + 2u, hi, t.r2hi);
    store_logits(at.x + 3u, lo, t.r3lo);
    store_logits(at.x + 3u, hi, t.r3hi);
    store_logits(at.x + 4u, lo, t.r4lo);
    store_logits(at.x + 4u, hi, t.r4hi);
    store_logits(at.x + 5u, lo, t.r5lo);
    store_logits(at.x + 5u, hi, t.r5hi);
    store_logits(at.x + 6u, lo, t.r6lo);
    store_logits(at.x + 6u, hi, t.r6hi);
    store_logits(at.x + 7u, lo, t.r7lo);
    store_logits(at.x + 7u, hi, t.r7hi);
}
