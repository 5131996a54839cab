// Depthwise convolution, NHWC input, weights [KH, KW, C]: one filter per channel.

struct DepthwiseParams {
    batch: u32, in_h: u32, in_w: u32, channels: u32,
    out_h: u32, out_w: u32, kernel: u32, stride: u32,
    pad_top: u32, pad_left: u32, _unused0: u32, _unused1: u32,
}

@group(0) @binding(0) var<uniform> p: DepthwiseParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

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
