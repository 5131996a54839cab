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

// im2col of a 3x3 convolution on one input channel (the stem of greyscale images) or three
// (RGB), a quad of 4 adjacent output pixels of a row per invocation: the quad's windows
// share their input columns (6 per filter row at stride 1, 9 at stride 2, against 12 for 4
// pixels apart), so each input pixel is loaded once per quad and the pixel's coordinates
// worked out once. On lavapipe every load is a loop over the lanes, which is what
// im2col's time goes to; the per-pixel im2col's counters and branches per element cost
// as much again.
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

// The input pixels of one filter row that a quad's windows read, from its first window's
// first column on: c0 .. c5 at stride 1, c0 .. c8 at stride 2; zero in the padding. A
// pixel's channels are x, y, z (x alone on one channel).
struct QuadColumns {
    c0: vec3<f32>, c1: vec3<f32>, c2: vec3<f32>, c3: vec3<f32>, c4: vec3<f32>,
    c5: vec3<f32>, c6: vec3<f32>, c7: vec3<f32>, c8: vec3<f32>,
}

fn quad_columns(n: u32, iy: i32, ix0: i32, s2: bool, rgb: bool) -> QuadColumns {
    var r = QuadColumns();
    if iy < 0 || iy >= i32(p.in_h) {
        return r;
    }
    let row = (n * p.in_h + u32(iy)) * p.in_w;
    r.c0 = row_pixel(row, ix0, rgb);
    r.c1 = row_pixel(row, ix0 + 1, rgb);
    r.c2 = row_pixel(row, ix0 + 2, rgb);
    r.c3 = row_pixel(row, ix0 + 3, rgb);
    r.c4 = row_pixel(row, ix0 + 4, rgb);
    r.c5 = row_pixel(row, ix0 + 5, rgb);
    if s2 {
        r.c6 = row_pixel(row, ix0 + 6, rgb);
        r.c7 = row_pixel(row, ix0 + 7, rgb);
        r.c8 = row_pixel(row, ix0 + 8, rgb);
    }
    return r;
}

// Column ix of the input row whose first pixel is `row`, zero outside the row.
fn row_pixel(row: u32, ix: i32, rgb: bool) -> vec3<f32> {
    if ix < 0 || ix >= i32(p.in_w) {
        return vec3<f32>(0.0);
    }
    if rgb {
        let at = (row + u32(ix)) * 3u;
        return vec3<f32>(input[at], input[at + 1u], input[at + 2u]);
    }
    return vec3<f32>(input[row + u32(ix)], 0.0, 0.0);
}

// The 3 pixels of window j (0 .. 3) of the quad in one filter row. `j` and `s2` are
// literals at every call, so the index folds and the columns stay in registers.
fn quad_window(r: QuadColumns, j: u32, s2: bool) -> array<vec3<f32>, 3> {
    let columns = array<vec3<f32>, 9>(r.c0, r.c1, r.c2, r.c3, r.c4, r.c5, r.c6, r.c7, r.c8);
    let first = quad_window_column(j, s2);
    return array<vec3<f32>, 3>(columns[first], columns[first + 1u], columns[first + 2u]);
}

fn im2col_3x3_quad(index: u32, s2: bool, rgb: bool) {
    let q = quad_at(index, p.batch, p.out_h, p.out_w, p.stride, p.pad_top, p.pad_left);
    if !q.valid {
        return;
    }
    let r0 = quad_columns(q.n, q.iy, q.ix0, s2, rgb);
    let r1 = quad_columns(q.n, q.iy + 1, q.ix0, s2, rgb);
    let r2 = quad_columns(q.n, q.iy + 2, q.ix0, s2, rgb);
    // Written out, not looped: each window's index must be a literal to fold.
    store_quad_patch(q.pixel, q.x0, quad_window(r0, 0u, s2), quad_window(r1, 0u, s2),
                     quad_window(r2, 0u, s2), rgb);
    store_quad_patch(q.pixel + 1u, q.x0 + 1u, quad_window(r0, 1u, s2), quad_window(r1, 1u, s2),
                     quad_window(r2, 1u, s2), rgb);
    store_quad_patch(q.pixel + 2u, q.x0 + 2u, quad_window(r0, 2u, s2), quad_window(r1, 2u, s2),
                     quad_window(r2, 2u, s2), rgb);
    store_quad_patch(q.pixel + 3u, q.x0 + 3u, quad_window(r0, 3u, s2), quad_window(r1, 3u, s2),
                     quad_window(r2, 3u, s2), rgb);
}

// One pixel's patch row from its 3 filter rows (9 taps and 3 zeros on one channel, 27
// values and a zero on three), where the pixel at column `ox` is inside the output row.
fn store_quad_patch(pixel: u32, ox: u32, t0: array<vec3<f32>, 3>, t1: array<vec3<f32>, 3>,
                    t2: array<vec3<f32>, 3>, rgb: bool) {
    if ox >= p.out_w {
        return;
    }
    if rgb {
        let at = pixel * 7u;
        patches[at] = vec4<f32>(t0[0], t0[1].x);
        patches[at + 1u] = vec4<f32>(t0[1].yz, t0[2].xy);
        patches[at + 2u] = vec4<f32>(t0[2].z, t1[0]);
        patches[at + 3u] = vec4<f32>(t1[1], t1[2].x);
        patches[at + 4u] = vec4<f32>(t1[2].yz, t2[0].xy);
        patches[at + 5u] = vec4<f32>(t2[0].z, t2[1]);
        patches[at + 6u] = vec4<f32>(t2[2], 0.0);
        return;
    }
    patches[pixel * 3u] = vec4<f32>(t0[0].x, t0[1].x, t0[2].x, t1[0].x);
    patches[pixel * 3u + 1u] = vec4<f32>(t1[1].x, t1[2].x, t2[0].x, t2[1].x);
    patches[pixel * 3u + 2u] = vec4<f32>(t2[2].x, 0.0, 0.0, 0.0);
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
