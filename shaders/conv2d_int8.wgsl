// The int8 stem's im2col: the input [N, H, W, in_words] (Cin channels packed four a word)
// unfolded into patches [N*OH*OW][patch_words], one row per output pixel in the float
// stem's order (kh, kw, cin) and packed four values a word along it, for gemm_int8.wgsl.
// Taps in the padding, and the values past KH*KW*Cin that round the row up to whole
// words, hold the input's zero point: real 0, so the zero-point fold of the bias counts
// them exactly (padded weights are zero in any case).

struct Im2colInt8Params {
    batch: u32, in_h: u32, in_w: u32, in_words: u32,
    out_h: u32, out_w: u32, kernel: u32, stride: u32,
    pad_top: u32, pad_left: u32, channels: u32, patch_words: u32,
    input_zero: i32, _unused1: u32, _unused2: u32, _unused3: u32,
}

@group(0) @binding(0) var<uniform> p: Im2colInt8Params;
@group(0) @binding(1) var<storage, read> input: array<u32>;
@group(0) @binding(2) var<storage, read_write> patches: array<u32>;

// Value k of output pixel (n, oy, ox)'s patch.
fn patch_value(n: u32, oy: u32, ox: u32, k: u32) -> i32 {
    if k >= p.kernel * p.kernel * p.channels {
        return p.input_zero;
    }
    let c = k % p.channels;
    let kx = (k / p.channels) % p.kernel;
    let ky = k / (p.channels * p.kernel);
    let iy = source_coord(oy, ky, p.stride, p.pad_top, p.in_h);
    let ix = source_coord(ox, kx, p.stride, p.pad_left, p.in_w);
    if iy < 0 || ix < 0 {
        return p.input_zero;
    }
    let pixel = (n * p.in_h + u32(iy)) * p.in_w + u32(ix);
    return unpack4xI8(input[pixel * p.in_words + c / 4u])[c % 4u];
}

// One word (four values) of one patch row per invocation.
@compute @workgroup_size(WG_SIZE)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.batch * p.out_h * p.out_w * p.patch_words {
        return;
    }
    let at = nhwc_coords(index, p.out_h, p.out_w, p.patch_words);
    let k = at.w * 4u;
    let q = vec4<i32>(patch_value(at.x, at.y, at.z, k), patch_value(at.x, at.y, at.z, k + 1u),
                      patch_value(at.x, at.y, at.z, k + 2u),
                      patch_value(at.x, at.y, at.z, k + 3u));
    patches[index] = pack4xI8(q);
}

// The same patches for inputs of at most four channels (one word a pixel: grey and RGB
// images), one output pixel's whole row per invocation: each tap's word is loaded once and
// its bytes appended to the row, instead of a load and index arithmetic per value.
@compute @workgroup_size(WG_SIZE)
fn im2col_pixel(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.batch * p.out_h * p.out_w {
        return;
    }
    // (n, oy, ox) of the pixel.
    let at = nhwc_coords(index, p.out_h, p.out_w, 1u);
    let zero_byte = u32(p.input_zero) & 0xffu;
    // Taps in the padding read a word of zero points.
    let zero_word = zero_byte * 0x01010101u;
    var row = index * p.patch_words;
    var word = 0u;
    var filled = 0u;
    for (var ky = 0u; ky < p.kernel; ky++) {
        let iy = source_coord(at.y, ky, p.stride, p.pad_top, p.in_h);
        for (var kx = 0u; kx < p.kernel; kx++) {
            let ix = source_coord(at.z, kx, p.stride, p.pad_left, p.in_w);
            let pixel = (at.x * p.in_h + u32(max(iy, 0))) * p.in_w + u32(max(ix, 0));
            let tap = select(input[pixel], zero_word, iy < 0 || ix < 0);
            for (var c = 0u; c < p.channels; c++) {
                word |= ((tap >> (8u * c)) & 0xffu) << (8u * filled);
                filled += 1u;
                if filled == 4u {
                    patches[row] = word;
                    row += 1u;
                    word = 0u;
                    filled = 0u;
                }
            }
        }
    }
    // The row's last word, rounded up with zero points.
    if filled != 0u {
        for (var j = filled; j < 4u; j++) {
            word |= zero_byte << (8u * j);
        }
        patches[row] = word;
    }
}

// The same patches for a 3x3 kernel on one or three channels (grey and RGB images), 4
// adjacent output pixels of a row per invocation, as conv2d.wgsl's quads: the windows of a
// quad share their input columns, so each filter row's 6 (stride 1) or 9 (stride 2) pixel
// words are loaded once for the 4 pixels, and every byte's place in the row is a literal.
@compute @workgroup_size(WG_SIZE)
fn im2col_3x3_c1(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    im2col_3x3_quad(linear_index(gid, nwg), false, false);
}

@compute @workgroup_size(WG_SIZE)
fn im2col_3x3_c1_s2(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    im2col_3x3_quad(linear_index(gid, nwg), true, false);
}

@compute @workgroup_size(WG_SIZE)
fn im2col_3x3_c3(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    im2col_3x3_quad(linear_index(gid, nwg), false, true);
}

@compute @workgroup_size(WG_SIZE)
fn im2col_3x3_c3_s2(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    im2col_3x3_quad(linear_index(gid, nwg), true, true);
}

// The pixel words of one filter row that a quad's windows read, from its first window's
// first column on: c0 .. c5 at stride 1, c0 .. c8 at stride 2; zero points in the padding.
struct QuadWords {
    c0: u32, c1: u32, c2: u32, c3: u32, c4: u32, c5: u32, c6: u32, c7: u32, c8: u32,
}

fn quad_words(n: u32, iy: i32, ix0: i32, s2: bool, zero_word: u32) -> QuadWords {
    var r = QuadWords(zero_word, zero_word, zero_word, zero_word, zero_word, zero_word,
                      zero_word, zero_word, zero_word);
    if iy < 0 || iy >= i32(p.in_h) {
        return r;
    }
    let row = (n * p.in_h + u32(iy)) * p.in_w;
    r.c0 = pixel_word(row, ix0, zero_word);
    r.c1 = pixel_word(row, ix0 + 1, zero_word);
    r.c2 = pixel_word(row, ix0 + 2, zero_word);
    r.c3 = pixel_word(row, ix0 + 3, zero_word);
    r.c4 = pixel_word(row, ix0 + 4, zero_word);
    r.c5 = pixel_word(row, ix0 + 5, zero_word);
    if s2 {
        r.c6 = pixel_word(row, ix0 + 6, zero_word);
        r.c7 = pixel_word(row, ix0 + 7, zero_word);
        r.c8 = pixel_word(row, ix0 + 8, zero_word);
    }
    return r;
}

// The word of column ix of the input row whose first pixel is `row`; zero points outside.
fn pixel_word(row: u32, ix: i32, zero_word: u32) -> u32 {
    if ix < 0 || ix >= i32(p.in_w) {
        return zero_word;
    }
    return input[row + u32(ix)];
}

// The 3 pixel words of window j (0 .. 3) of the quad in one filter row. `j` and `s2` are
// literals at every call, so the index folds and the words stay in registers.
fn quad_window(r: QuadWords, j: u32, s2: bool) -> vec3<u32> {
    let columns = array<u32, 9>(r.c0, r.c1, r.c2, r.c3, r.c4, r.c5, r.c6, r.c7, r.c8);
    let first = quad_window_column(j, s2);
    return vec3<u32>(columns[first], columns[first + 1u], columns[first + 2u]);
}

fn im2col_3x3_quad(index: u32, s2: bool, rgb: bool) {
    let q = quad_at(index, p.batch, p.out_h, p.out_w, p.stride, p.pad_top, p.pad_left);
    if !q.valid {
        return;
    }
    let zero_byte = u32(p.input_zero) & 0xffu;
    let zero_word = zero_byte * 0x01010101u;
    let r0 = quad_words(q.n, q.iy, q.ix0, s2, zero_word);
    let r1 = quad_words(q.n, q.iy + 1, q.ix0, s2, zero_word);
    let r2 = quad_words(q.n, q.iy + 2, q.ix0, s2, zero_word);
    // Written out, not looped: each window's index must be a literal to fold.
    store_quad_patch(q.pixel, q.x0, quad_window(r0, 0u, s2), quad_window(r1, 0u, s2),
                     quad_window(r2, 0u, s2), rgb, zero_byte);
    store_quad_patch(q.pixel + 1u, q.x0 + 1u, quad_window(r0, 1u, s2), quad_window(r1, 1u, s2),
                     quad_window(r2, 1u, s2), rgb, zero_byte);
    store_quad_patch(q.pixel + 2u, q.x0 + 2u, quad_window(r0, 2u, s2), quad_window(r1, 2u, s2),
                     quad_window(r2, 2u, s2), rgb, zero_byte);
    store_quad_patch(q.pixel + 3u, q.x0 + 3u, quad_window(r0, 3u, s2), quad_window(r1, 3u, s2),
                     quad_window(r2, 3u, s2), rgb, zero_byte);
}

// One pixel's patch row from the words of its 9 taps (filter rows t0, t1, t2), where the
// pixel at column `ox` is inside the output row. On three channels a tap is 3 bytes of
// the row (27 and a zero point: 7 words), on one channel 1 byte (9 and 3 zero points: 3).
fn store_quad_patch(pixel: u32, ox: u32, t0: vec3<u32>, t1: vec3<u32>, t2: vec3<u32>,
                    rgb: bool, zero_byte: u32) {
    if ox >= p.out_w {
        return;
    }
    if rgb {
        // A word's fourth byte is no channel's.
        let a = t0 & vec3<u32>(0xffffffu);
        let b = t1 & vec3<u32>(0xffffffu);
        let c = t2 & vec3<u32>(0xffffffu);
        let at = pixel * 7u;
        patches[at] = a.x | (a.y << 24u);
        patches[at + 1u] = (a.y >> 8u) | (a.z << 16u);
        patches[at + 2u] = (a.z >> 16u) | (b.x << 8u);
        patches[at + 3u] = b.y | (b.z << 24u);
        patches[at + 4u] = (b.z >> 8u) | (c.x << 16u);
        patches[at + 5u] = (c.x >> 16u) | (c.y << 8u);
        patches[at + 6u] = c.z | (zero_byte << 24u);
        return;
    }
    let a = t0 & vec3<u32>(0xffu);
    let b = t1 & vec3<u32>(0xffu);
    let c = t2 & vec3<u32>(0xffu);
    let at = pixel * 3u;
    patches[at] = a.x | (a.y << 8u) | (a.z << 16u) | (b.x << 24u);
    patches[at + 1u] = b.y | (b.z << 8u) | (c.x << 16u) | (c.y << 24u);
    patches[at + 2u] = c.z | (zero_byte * 0x01010100u);
}
