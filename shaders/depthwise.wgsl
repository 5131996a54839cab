// Depthwise convolution, NHWC input, weights [KH, KW, C]: one filter per channel.

struct DepthwiseParams {
    batch: u32, in_h: u32, in_w: u32, channels: u32,
    out_h: u32, out_w: u32, kernel: u32, stride: u32,
    pad_top: u32, pad_left: u32, pixels_per_chunk: u32, chunks: u32,
}

@group(0) @binding(0) var<uniform> p: DepthwiseParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
@group(0) @binding(4) var<storage, read> grad_output: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad_input: array<f32>;
// dW partials: [chunks, KH * KW, C], summed by reduce.wgsl.
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;

// One output element per invocation, channel fastest: reads along C are coalesced.
@compute @workgroup_size(WG_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.batch * p.out_h * p.out_w * p.channels {
        return;
    }
    let o = nhwc_coords(index, p.out_h, p.out_w, p.channels);
    let n = o[0];
    let c = o[3];

    var acc = 0.0;
    for (var ky = 0u; ky < p.kernel; ky++) {
        let iy = source_coord(o[1], ky, p.stride, p.pad_top, p.in_h);
        for (var kx = 0u; kx < p.kernel; kx++) {
            let ix = source_coord(o[2], kx, p.stride, p.pad_left, p.in_w);
            if iy < 0 || ix < 0 {
                continue;
            }
            let x = input[((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.channels + c];
            acc += x * weight[(ky * p.kernel + kx) * p.channels + c];
        }
    }
    output[index] = acc;
}

// dX as a gather: each input element sums the output gradients of the windows that read
// it, so no two invocations write the same element.
@compute @workgroup_size(WG_SIZE)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.batch * p.in_h * p.in_w * p.channels {
        return;
    }
    let i = nhwc_coords(index, p.in_h, p.in_w, p.channels);
    let n = i[0];
    let c = i[3];
    var acc = 0.0;
    for (var ky = 0u; ky < p.kernel; ky++) {
        let oy = output_coord(i[1], ky, p.stride, p.pad_top, p.out_h);
        for (var kx = 0u; kx < p.kernel; kx++) {
            let ox = output_coord(i[2], kx, p.stride, p.pad_left, p.out_w);
            if oy < 0 || ox < 0 {
                continue;
            }
            let dy = grad_output[((n * p.out_h + u32(oy)) * p.out_w + u32(ox)) * p.channels + c];
            acc += dy * weight[(ky * p.kernel + kx) * p.channels + c];
        }
    }
    grad_input[index] = acc;
}

// dW stage 1: for each chunk of output pixels, tap and channel, sum dy * x.
@compute @workgroup_size(WG_SIZE)
fn backward_weight_partial(@builtin(global_invocation_id) gid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>) {
    let taps = p.kernel * p.kernel;
    let index = linear_index(gid, nwg);
    if index >= p.chunks * taps * p.channels {
        return;
    }
    let c = index % p.channels;
    let tap = (index / p.channels) % taps;
    let chunk = index / (p.channels * taps);
    let ky = tap / p.kernel;
    let kx = tap % p.kernel;
    let pixels = p.batch * p.out_h * p.out_w;
    let first = chunk * p.pixels_per_chunk;
    let last = min(first + p.pixels_per_chunk, pixels);
    var acc = 0.0;
    for (var pixel = first; pixel < last; pixel++) {
        let ox = pixel % p.out_w;
        let oy = (pixel / p.out_w) % p.out_h;
        let n = pixel / (p.out_w * p.out_h);
        let iy = source_coord(oy, ky, p.stride, p.pad_top, p.in_h);
        let ix = source_coord(ox, kx, p.stride, p.pad_left, p.in_w);
        if iy < 0 || ix < 0 {
            continue;
        }
        let x = input[((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.channels + c];
        acc += grad_output[pixel * p.channels + c] * x;
    }
    partials[index] = acc;
}
