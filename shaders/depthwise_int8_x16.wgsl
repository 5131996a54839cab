// Replaces the access block of depthwise_int8.wgsl when the channel count is a multiple of
// 16: every binding is then a whole number of vec4s of packed words, and the 3x3 kernels
// below load 16 channels (4 words) per access where the base kernels load 4. A software
// rasteriser such as lavapipe runs one loop over the lanes per load or store, whatever its
// width, so this is a quarter of the input, weight and output accesses, and 8 vector loads
// of bias and multipliers per 16 channels where the base makes 32 scalar ones. The 3x3
// kernels are the base file's, on these accesses; the arithmetic (taps, requantization)
// is the base's too, word by word.

@group(0) @binding(1) var<storage, read> input16: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> weight16: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> bias16: array<vec4<i32>>;
@group(0) @binding(4) var<storage, read> scale16: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> output16: array<vec4<u32>>;

// The base kernels' accessors through the 16-channel views, so that they still compile in
// this module (only its 3x3 entry points are dispatched from it).
fn input_word(i: u32) -> u32 {
    return input16[i / 4u][i % 4u];
}

fn weight_word(i: u32) -> u32 {
    return weight16[i / 4u][i % 4u];
}

fn bias_of(c: u32) -> i32 {
    return bias16[c / 4u][c % 4u];
}

fn scale_of(c: u32) -> f32 {
    return scale16[c / 4u][c % 4u];
}

fn store_word(i: u32, word: u32) {
    output16[i / 4u][i % 4u] = word;
}

// The 3x3 kernels' access: 4 words, 16 channels.
const WORDS_PER_ACCESS: u32 = 4u;
alias Packed = vec4<u32>;

fn input_packed(i: u32) -> Packed {
    return input16[i];
}

fn weight_packed(i: u32) -> Packed {
    return weight16[i];
}

// The quad's accumulators for each of the access's 4 words.
struct QuadAcc {
    w0: Quad, w1: Quad, w2: Quad, w3: Quad,
}

// Word j of every column, unpacked.
fn word_of_row(x: PackedRow, j: u32) -> InputRow {
    return InputRow(unpack4xI8(x[0][j]), unpack4xI8(x[1][j]), unpack4xI8(x[2][j]),
                    unpack4xI8(x[3][j]), unpack4xI8(x[4][j]), unpack4xI8(x[5][j]),
                    unpack4xI8(x[6][j]), unpack4xI8(x[7][j]), unpack4xI8(x[8][j]));
}

// acc + one filter row (packed taps k0, k1, k2) applied to the quad, word by word.
fn row_taps_packed(acc: QuadAcc, x: PackedRow, k0: Packed, k1: Packed, k2: Packed,
                   s2: bool) -> QuadAcc {
    return QuadAcc(
        row_taps(acc.w0, word_of_row(x, 0u), unpack4xI8(k0.x), unpack4xI8(k1.x),
                 unpack4xI8(k2.x), s2),
        row_taps(acc.w1, word_of_row(x, 1u), unpack4xI8(k0.y), unpack4xI8(k1.y),
                 unpack4xI8(k2.y), s2),
        row_taps(acc.w2, word_of_row(x, 2u), unpack4xI8(k0.z), unpack4xI8(k1.z),
                 unpack4xI8(k2.z), s2),
        row_taps(acc.w3, word_of_row(x, 3u), unpack4xI8(k0.w), unpack4xI8(k1.w),
                 unpack4xI8(k2.w), s2));
}

// Bias and multipliers of access a's 16 channels, a vec4 per word (no channel is padding).
struct Block {
    bias0: vec4<i32>, bias1: vec4<i32>, bias2: vec4<i32>, bias3: vec4<i32>,
    scale0: vec4<f32>, scale1: vec4<f32>, scale2: vec4<f32>, scale3: vec4<f32>,
    access: u32,
}

fn block_of(a: u32) -> Block {
    let at = 4u * a;
    return Block(bias16[at], bias16[at + 1u], bias16[at + 2u], bias16[at + 3u],
                 scale16[at], scale16[at + 1u], scale16[at + 2u], scale16[at + 3u], a);
}

fn requantize_word(acc: vec4<i32>, bias: vec4<i32>, scale: vec4<f32>) -> u32 {
    return pack4xI8(requantize4(acc + bias, scale, p.zero_point, p.lo, p.hi));
}

// Requantizes and stores output pixel ox of row `row` (if it exists), from the four words'
// accumulators.
fn store_pixel16(row: u32, ox: u32, a: u32, ch: Block, a0: vec4<i32>, a1: vec4<i32>,
                 a2: vec4<i32>, a3: vec4<i32>) {
    if ox >= p.out_w {
        return;
    }
    output16[(row + ox) * accesses() + a] = vec4<u32>(
        requantize_word(a0, ch.bias0, ch.scale0), requantize_word(a1, ch.bias1, ch.scale1),
        requantize_word(a2, ch.bias2, ch.scale2), requantize_word(a3, ch.bias3, ch.scale3));
}

// What the epilogue needs of an access's channels, loaded once per invocation.
alias Epilogue = Block;

fn epilogue_of(a: u32) -> Epilogue {
    return block_of(a);
}

fn store_quad_packed(row: u32, ox0: u32, ch: Epilogue, acc: QuadAcc) {
    let a = ch.access;
    store_pixel16(row, ox0, a, ch, acc.w0.a0, acc.w1.a0, acc.w2.a0, acc.w3.a0);
    store_pixel16(row, ox0 + 1u, a, ch, acc.w0.a1, acc.w1.a1, acc.w2.a1, acc.w3.a1);
    store_pixel16(row, ox0 + 2u, a, ch, acc.w0.a2, acc.w1.a2, acc.w2.a2, acc.w3.a2);
    store_pixel16(row, ox0 + 3u, a, ch, acc.w0.a3, acc.w1.a3, acc.w2.a3, acc.w3.a3);
}
