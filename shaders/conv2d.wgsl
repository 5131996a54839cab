// Standard convolution (MobileNet's stem), NHWC input, weights [KH, KW, Cin, Cout].

struct Conv2dParams {
    batch: u32, in_h: u32, in_w: u32, in_c: u32,
    out_h: u32, out_w: u32, out_c: u32, kernel: u32,
    stride: u32, pad_top: u32, pad_left: u32, _unused: u32,
}

@group(0) @binding(0) var<uniform> p: Conv2dParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;

// One output element per invocation; channels are fastest so neighbours share input reads.
@compute @workgroup_size(WG_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.batch * p.out_h * p.out_w * p.out_c {
        return;
    }
    let o = nhwc_coords(index, p.out_h, p.out_w, p.out_c);
    let n = o[0];
    let co = o[3];

    var acc = 0.0;
    for (var ky = 0u; ky < p.kernel; ky++) {
        let iy = source_coord(o[1], ky, p.stride, p.pad_top, p.in_h);
        for (var kx = 0u; kx < p.kernel; kx++) {
            let ix = source_coord(o[2], kx, p.stride, p.pad_left, p.in_w);
            if iy < 0 || ix < 0 {
                continue;
            }
            let in_base = ((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.in_c;
            let w_base = (ky * p.kernel + kx) * p.in_c * p.out_c + co;
            for (var ci = 0u; ci < p.in_c; ci++) {
                acc += input[in_base + ci] * weight[w_base + ci * p.out_c];
            }
        }
    }
    output[index] = acc;
}
