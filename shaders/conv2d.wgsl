// Standard convolution (MobileNet's stem), NHWC input, weights [KH, KW, Cin, Cout].

struct Conv2dParams {
    batch: u32, in_h: u32, in_w: u32, in_c: u32,
    out_h: u32, out_w: u32, out_c: u32, kernel: u32,
    stride: u32, pad_top: u32, pad_left: u32, _unused0: u32,
    _unused1: u32, _unused2: u32, _unused3: u32, _unused4: u32,
}

@group(0) @binding(0) var<uniform> p: Conv2dParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
@group(0) @binding(4) var<storage, read> grad_output: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad_input: array<f32>;
// Unfolded input patches [pixels, KH * KW * Cin rounded up to a multiple of 4] for the
// forward GEMM (gemm.wgsl), the padding zero, written and read in whole vec4s.
@group(0) @binding(8) var<storage, read_write> patches: array<vec4<f32>>;

// One patch element; zero in the padding of the image or past the end of the patch.
fn patch_value(pixel: u32, tap: u32) -> f32 {
    let patch_len = p.kernel * p.kernel * p.in_c;
    let ci = tap % p.in_c;
    let kx = (tap / p.in_c) % p.kernel;
    let ky = tap / (p.in_c * p.kernel);
    let ox = pixel % p.out_w;
    let oy = (pixel / p.out_w) % p.out_h;
    let n = pixel / (p.out_w * p.out_h);
    let iy = source_coord(oy, ky, p.stride, p.pad_top, p.in_h);
    let ix = source_coord(ox, kx, p.stride, p.pad_left, p.in_w);
    if tap >= patch_len || iy < 0 || ix < 0 {
        return 0.0;
    }
    return input[((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.in_c + ci];
}

// im2col: 4 patch elements (one vec4) per invocation. The forward convolution is then a
// GEMM of the patches with the [KH * KW * Cin, Cout] weights.
@compute @workgroup_size(WG_SIZE)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    let row_vec4s = (p.kernel * p.kernel * p.in_c + 3u) / 4u;
    if index >= p.batch * p.out_h * p.out_w * row_vec4s {
        return;
    }
    let pixel = index / row_vec4s;
    let tap = (index % row_vec4s) * 4u;
    patches[index] = vec4<f32>(patch_value(pixel, tap), patch_value(pixel, tap + 1u),
                               patch_value(pixel, tap + 2u), patch_value(pixel, tap + 3u));
}

// dX as a gather over the windows that read each input element.
@compute @workgroup_size(WG_SIZE)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.batch * p.in_h * p.in_w * p.in_c {
        return;
    }
    let i = nhwc_coords(index, p.in_h, p.in_w, p.in_c);
    let n = i[0];
    let ci = i[3];
    var acc = 0.0;
    for (var ky = 0u; ky < p.kernel; ky++) {
        let oy = output_coord(i[1], ky, p.stride, p.pad_top, p.out_h);
        for (var kx = 0u; kx < p.kernel; kx++) {
            let ox = output_coord(i[2], kx, p.stride, p.pad_left, p.out_w);
            if oy < 0 || ox < 0 {
                continue;
            }
            let dy_base = ((n * p.out_h + u32(oy)) * p.out_w + u32(ox)) * p.out_c;
            let w_base = ((ky * p.kernel + kx) * p.in_c + ci) * p.out_c;
            for (var co = 0u; co < p.out_c; co++) {
                acc += grad_output[dy_base + co] * weight[w_base + co];
            }
        }
    }
    grad_input[index] = acc;
}
