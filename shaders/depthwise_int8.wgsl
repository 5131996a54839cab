// Int8 depthwise convolution, NHWC packed four channels a word: input [N, H, W, words],
// weights [KH*KW][words] packed along channels (padded channels weigh zero), output
// [N, OH, OW, words]. Per channel:
//   acc = bias_eff[c] + sum_taps q_x * q_w      (i32; padded taps read the input's zero
//                                                point, which bias_eff accounts for)
//   y   = requantize(acc, scale[c], zero_point, lo, hi)
// There is no reduction across channels, so no dot4I8Packed: each tap unpacks four
// channels and multiplies them lane by lane.
//
// One invocation computes 4 adjacent output pixels of one word of channels, sharing the
// weight loads of every tap: `forward` for any square filter and stride; `forward_3x3`
// and `forward_3x3_s2` (below) for MobileNet's compute ROWS such rows, sharing the input
// loads as well.

struct DepthwiseInt8Params {
    batch: u32, in_h: u32, in_w: u32, words: u32,
    out_h: u32, out_w: u32, kernel: u32, stride: u32,
    pad_top: u32, pad_left: u32, channels: u32, input_zero: i32,
    zero_point: i32, lo: i32, hi: i32,
    // The 3x3 kernels' invocations each take this many consecutive images (small images:
    // the taps and the epilogue then serve several).
    images: u32,
}

@group(0) @binding(0) var<uniform> p: DepthwiseInt8Params;

// depthwise_int8_x16.wgsl replaces this block (the kernels for channel counts that are
// multiples of 16, which load 16 channels at a time).
// ACCESS BEGIN
@group(0) @binding(1) var<storage, read> input: array<u32>;
@group(0) @binding(2) var<storage, read> weight: array<u32>;
@group(0) @binding(3) var<storage, read> bias: array<i32>;
@group(0) @binding(4) var<storage, read> scale: array<f32>;
@group(0) @binding(5) var<storage, read_write> output: array<u32>;

// Word `i` of the input and of the weights, channel c's bias and multiplier, output word i.
fn input_word(i: u32) -> u32 {
    return input[i];
}

fn weight_word(i: u32) -> u32 {
    return weight[i];
}

fn bias_of(c: u32) -> i32 {
    return bias[c];
}

fn scale_of(c: u32) -> f32 {
    return scale[c];
}

fn store_word(i: u32, word: u32) {
    output[i] = word;
}

// What the 3x3 kernels move per access (`Packed`): here one word, 4 channels.
const WORDS_PER_ACCESS: u32 = 1u;
alias Packed = u32;

fn input_packed(i: u32) -> Packed {
    return input[i];
}

fn weight_packed(i: u32) -> Packed {
    return weight[i];
}

// The quad's accumulators for one access's channels.
alias QuadAcc = Quad;

// acc + one filter row (packed taps k0, k1, k2) applied to the quad.
fn row_taps_packed(acc: QuadAcc, x: PackedRow, k0: Packed, k1: Packed, k2: Packed,
                   s2: bool) -> QuadAcc {
    let unpacked = InputRow(unpack4xI8(x[0]), unpack4xI8(x[1]), unpack4xI8(x[2]),
                            unpack4xI8(x[3]), unpack4xI8(x[4]), unpack4xI8(x[5]),
                            unpack4xI8(x[6]), unpack4xI8(x[7]), unpack4xI8(x[8]));
    return row_taps(acc, unpacked, unpack4xI8(k0), unpack4xI8(k1), unpack4xI8(k2), s2);
}

// What the epilogue needs of an access's channels, loaded once per invocation.
alias Epilogue = Channels;

fn epilogue_of(w: u32) -> Epilogue {
    return channels_of(w);
}

fn store_quad_packed(row: u32, ox0: u32, ch: Epilogue, acc: QuadAcc) {
    store_quad_with(row, ox0, ch, acc);
}
// ACCESS END

const PIXELS: u32 = 4u;

// The 4 accumulators of a quad of output pixels.
struct Quad {
    a0: vec4<i32>, a1: vec4<i32>, a2: vec4<i32>, a3: vec4<i32>,
}

// Input column ix of the row starting at pixel `row`, word w, unpacked; the zero point in
// the padding.
fn load_x(row: i32, ix: i32, w: u32) -> vec4<i32> {
    if row < 0 || ix < 0 || ix >= i32(p.in_w) {
        return vec4<i32>(p.input_zero);
    }
    return unpack4xI8(input_word((u32(row) + u32(ix)) * p.words + w));
}

// acc + the products of one tap for the quad: pixel j reads column ix0 + j * stride.
fn tap(acc: Quad, row: i32, ix0: i32, w: u32, q_w: vec4<i32>) -> Quad {
    let s = i32(p.stride);
    return Quad(acc.a0 + load_x(row, ix0, w) * q_w,
                acc.a1 + load_x(row, ix0 + s, w) * q_w,
                acc.a2 + load_x(row, ix0 + 2 * s, w) * q_w,
                acc.a3 + load_x(row, ix0 + 3 * s, w) * q_w);
}

// What the epilogue needs of word w's channels: loaded once for the quad's four pixels (on
// a CPU adapter each of these loads is a gather).
struct Channels {
    bias: vec4<i32>, scale: vec4<f32>, exists: vec4<bool>, w: u32,
}

fn channels_of(w: u32) -> Channels {
    let c0 = w * 4u;
    let cs = min(vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.channels - 1u));
    return Channels(vec4<i32>(bias_of(cs.x), bias_of(cs.y), bias_of(cs.z), bias_of(cs.w)),
                    vec4<f32>(scale_of(cs.x), scale_of(cs.y), scale_of(cs.z), scale_of(cs.w)),
                    vec4<u32>(c0) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.channels), w);
}

// Requantizes and stores output pixel ox of row `row` (if it exists).
fn store_pixel(row: u32, ox: u32, ch: Channels, acc: vec4<i32>) {
    if ox >= p.out_w {
        return;
    }
    let y = requantize4(acc + ch.bias, ch.scale, p.zero_point, p.lo, p.hi);
    store_word((row + ox) * p.words + ch.w, pack4xI8(keep_or(y, ch.exists, p.zero_point)));
}

// The quad's four pixels, from ox0 on.
fn store_quad(row: u32, ox0: u32, w: u32, acc: Quad) {
    store_quad_with(row, ox0, channels_of(w), acc);
}

fn store_quad_with(row: u32, ox0: u32, ch: Channels, acc: Quad) {
    store_pixel(row, ox0, ch, acc.a0);
    store_pixel(row, ox0 + 1u, ch, acc.a1);
    store_pixel(row, ox0 + 2u, ch, acc.a2);
    store_pixel(row, ox0 + 3u, ch, acc.a3);
}

@compute @workgroup_size(WG_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let quads_w = (p.out_w + PIXELS - 1u) / PIXELS;
    let index = linear_index(gid, nwg);
    if index >= p.batch * p.out_h * quads_w * p.words {
        return;
    }
    let at = nhwc_coords(index, p.out_h, quads_w, p.words);
    let n = at.x;
    let oy = at.y;
    let ox0 = at.z * PIXELS;
    let w = at.w;
    let ix0 = i32(ox0 * p.stride) - i32(p.pad_left);
    var acc = Quad();
    for (var ky = 0u; ky < p.kernel; ky++) {
        let iy = source_coord(oy, ky, p.stride, p.pad_top, p.in_h);
        // The first pixel of input row iy, or -1 in the padding.
        let row = select(-1, i32((n * p.in_h + u32(iy)) * p.in_w), iy >= 0);
        for (var kx = 0u; kx < p.kernel; kx++) {
            let q_w = unpack4xI8(weight_word((ky * p.kernel + kx) * p.words + w));
            acc = tap(acc, row, ix0 + i32(kx), w, q_w);
        }
    }
    store_quad((n * p.out_h + oy) * p.out_w, ox0, w, acc);
}

// 3x3 filters, stride 1 or 2 (every depthwise layer of MobileNet): the quad's windows
// overlap, so each input row's columns are loaded and unpacked once for the four pixels
// (6 columns at stride 1, 9 at stride 2, instead of 12).
struct InputRow {
    x0: vec4<i32>, x1: vec4<i32>, x2: vec4<i32>, x3: vec4<i32>, x4: vec4<i32>,
    x5: vec4<i32>, x6: vec4<i32>, x7: vec4<i32>, x8: vec4<i32>,
}

// Accesses (of WORDS_PER_ACCESS words) per pixel.
fn accesses() -> u32 {
    return p.words / WORDS_PER_ACCESS;
}

// Input column ix of the row starting at pixel `row`, access a; the zero point in the
// padding.
fn load_packed(row: i32, ix: i32, a: u32) -> Packed {
    if row < 0 || ix < 0 || ix >= i32(p.in_w) {
        return Packed(splat_i8(p.input_zero));
    }
    return input_packed((u32(row) + u32(ix)) * accesses() + a);
}

// Columns ix0 .. ix0 + 5 (+ 8 at stride 2) of the input row starting at pixel `row`,
// packed.
alias PackedRow = array<Packed, 9>;

fn load_row(row: i32, ix0: i32, a: u32, s2: bool) -> PackedRow {
    var x = PackedRow();
    // `s2` is a literal at each call, so the compiler unrolls a fixed count.
    let columns = select(6, 9, s2);
    for (var i = 0; i < columns; i++) {
        x[i] = load_packed(row, ix0 + i, a);
    }
    return x;
}

// acc + one filter row (taps k0, k1, k2) applied to the quad: pixel j reads columns
// j * stride + (0, 1, 2). `s2` is a literal at each call, so one branch remains.
fn row_taps(acc: Quad, x: InputRow, k0: vec4<i32>, k1: vec4<i32>, k2: vec4<i32>,
            s2: bool) -> Quad {
    if s2 {
        return Quad(acc.a0 + x.x0 * k0 + x.x1 * k1 + x.x2 * k2,
                    acc.a1 + x.x2 * k0 + x.x3 * k1 + x.x4 * k2,
                    acc.a2 + x.x4 * k0 + x.x5 * k1 + x.x6 * k2,
                    acc.a3 + x.x6 * k0 + x.x7 * k1 + x.x8 * k2);
    }
    return Quad(acc.a0 + x.x0 * k0 + x.x1 * k1 + x.x2 * k2,
                acc.a1 + x.x1 * k0 + x.x2 * k1 + x.x3 * k2,
                acc.a2 + x.x2 * k0 + x.x3 * k1 + x.x4 * k2,
                acc.a3 + x.x3 * k0 + x.x4 * k1 + x.x5 * k2);
}

// Output rows each 3x3 invocation computes (ops::int8_ops sizes the grid by the same count).
const ROWS: u32 = 8u;

// The 9 filter taps of one access's channels, packed, by filter row and column.
struct PackedTaps {
    k00: Packed, k01: Packed, k02: Packed,
    k10: Packed, k11: Packed, k12: Packed,
    k20: Packed, k21: Packed, k22: Packed,
}

fn packed_taps(a: u32) -> PackedTaps {
    let n = accesses();
    return PackedTaps(weight_packed(a), weight_packed(n + a), weight_packed(2u * n + a),
                      weight_packed(3u * n + a), weight_packed(4u * n + a),
                      weight_packed(5u * n + a), weight_packed(6u * n + a),
                      weight_packed(7u * n + a), weight_packed(8u * n + a));
}

// A strip of ROWS rows of 4 adjacent output pixels for one access's channels (4 here, 16 in
// the x16 module), walked top to bottom: each input row is loaded once and added to the
// output rows whose windows reach it (stride 1: rows i - 2 .. i of the strip take input row
// i; stride 2: (i - 2) / 2 .. i / 2), so an output row is complete after its third input
// row and only two rows' sums are carried. Filter taps, bias and multipliers are loaded
// once for the strip, and serve the same strip of the invocation's other images (`images`,
// on small images). Per output row at stride 1 that is 1 input row of 6 columns, where a
// quad per invocation loaded 3 rows and all of the taps and epilogue.
fn forward_3x3_strip(index: u32, s2: bool) {
    let quads_w = (p.out_w + PIXELS - 1u) / PIXELS;
    let strips = (p.out_h + ROWS - 1u) / ROWS;
    let image_groups = (p.batch + p.images - 1u) / p.images;
    if index >= image_groups * strips * quads_w * accesses() {
        return;
    }
    let at = nhwc_coords(index, strips, quads_w, accesses());
    let a = at.w;
    let k = packed_taps(a);
    let ch = epilogue_of(a);
    let first = at.x * p.images;
    for (var n = first; n < min(first + p.images, p.batch); n++) {
        image_strip(n, at.y * ROWS, at.z * PIXELS, a, k, ch, s2);
    }
}

// The strip of rows top .. top + ROWS - 1, columns ox0 .. ox0 + 3 of image n.
fn image_strip(n: u32, top: u32, ox0: u32, a: u32, k: PackedTaps, ch: Epilogue, s2: bool) {
    let ix0 = i32(ox0 * p.stride) - i32(p.pad_left);
    let iy0 = i32(top * p.stride) - i32(p.pad_top);
    let inputs = (min(top + ROWS, p.out_h) - 1u - top) * p.stride + 3u;
    // The output rows that have had 2 input rows (`upper`) and 1 (`lower`, stride 1).
    var upper = QuadAcc();
    var lower = QuadAcc();
    for (var i = 0u; i < inputs; i++) {
        let iy = iy0 + i32(i);
        // The first pixel of input row iy, or -1 in the padding.
        let row = select(-1, i32((n * p.in_h + u32(iy)) * p.in_w), iy >= 0 && iy < i32(p.in_h));
        let x = load_row(row, ix0, a, s2);
        var done = QuadAcc();
        if s2 {
            if (i & 1u) == 1u {
                upper = row_taps_packed(upper, x, k.k10, k.k11, k.k12, s2);
                continue;
            }
            done = row_taps_packed(upper, x, k.k20, k.k21, k.k22, s2);
            upper = row_taps_packed(QuadAcc(), x, k.k00, k.k01, k.k02, s2);
        } else {
            done = row_taps_packed(upper, x, k.k20, k.k21, k.k22, s2);
            upper = row_taps_packed(lower, x, k.k10, k.k11, k.k12, s2);
            lower = row_taps_packed(QuadAcc(), x, k.k00, k.k01, k.k02, s2);
        }
        if i < 2u {
            continue;
        }
        let oy = top + (i - 2u) / p.stride;
        store_quad_packed((n * p.out_h + oy) * p.out_w, ox0, ch, done);
    }
}

@compute @workgroup_size(WG_SIZE)
fn forward_3x3(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    forward_3x3_strip(linear_index(gid, nwg), false);
}

@compute @workgroup_size(WG_SIZE)
fn forward_3x3_s2(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    forward_3x3_strip(linear_index(gid, nwg), true);
}
