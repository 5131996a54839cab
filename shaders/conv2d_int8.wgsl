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
