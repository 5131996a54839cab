// Int8 global average pooling: [N, H*W, words] -> [N, words], four channels a word.
//   sum = sum_hw (q - input_zero)                                  (i32)
//   y   = clamp(round_half_even(f32(sum) * multiplier) + zero_point, -128, 127)
// with multiplier = s_in / (s_out * H*W): the mean and the change of scale in one rounding.

struct PoolInt8Params {
    batch: u32, pixels: u32, words: u32, channels: u32,
    input_zero: i32, zero_point: i32, multiplier: f32, _unused: u32,
}

@group(0) @binding(0) var<uniform> p: PoolInt8Params;
@group(0) @binding(1) var<storage, read> input: array<u32>;
@group(0) @binding(2) var<storage, read_write> output: array<u32>;

// One (image, word of channels) per invocation, summing the pixels in order.
@compute @workgroup_size(WG_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.batch * p.words {
        return;
    }
    let w = index % p.words;
    let n = index / p.words;
    var sum = vec4<i32>(0);
    for (var i = 0u; i < p.pixels; i++) {
        sum += unpack4xI8(input[(n * p.pixels + i) * p.words + w]) - vec4<i32>(p.input_zero);
    }
    let y = requantize4(sum, vec4<f32>(p.multiplier), p.zero_point, -128, 127);
    let exists = vec4<u32>(w * 4u) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.channels);
    output[index] = pack4xI8(keep_or(y, exists, p.zero_point));
}
