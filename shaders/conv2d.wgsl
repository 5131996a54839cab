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

// Tap (ky, kx), channel c of output pixel (n, oy, ox)'s window; zero in the image's padding.
fn tap_value(n: u32, oy: u32, ox: u32, ky: u32, kx: u32, c: u32) -> f32 {
    let iy = source_coord(oy, ky, p.stride, p.pad_top, p.in_h);
    let ix = source_coord(ox, kx, p.stride, p.pad_left, p.in_w);
    if iy < 0 || ix < 0 {
        return 0.0;
    }
    return input[((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.in_c + c];
}

// im2col: one output pixel's patch row per invocation, (ky, kx, c) advanced by counters
// (a value per invocation cost three integer divisions to locate), zero past the end of
// the patch. The forward convolution is then a GEMM of the patches with the
// [KH * KW * Cin, Cout] weights.
@compute @workgroup_size(WG_SIZE)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let pixel = linear_index(gid, nwg);
    if pixel >= p.batch * p.out_h * p.out_w {
        return;
    }
    // (n, oy, ox) of the pixel.
    let at = nhwc_coords(pixel, p.out_h, p.out_w, 1u);
    let row_vec4s = (p.kernel * p.kernel * p.in_c + 3u) / 4u;
    var ky = 0u;
    var kx = 0u;
    var c = 0u;
    for (var j = 0u; j < row_vec4s; j++) {
        var v = vec4<f32>(0.0);
        for (var e = 0u; e < 4u; e++) {
            if ky < p.kernel {
                v[e] = tap_value(at.x, at.y, at.z, ky, kx, c);
                c += 1u;
                if c == p.in_c {
                    c = 0u;
                    kx += 1u;
                    if kx == p.kernel {
                        kx = 0u;
                        ky += 1u;
                    }
                }
            }
        }
        patches[pixel * row_vec4s + j] = v;
    }
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
