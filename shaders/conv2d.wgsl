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

// im2col of a 3x3 convolution on one input channel (the stem of greyscale images), a quad
// of 4 adjacent output pixels of a row per invocation: the quad's windows share their input
// columns (6 per filter row at stride 1, 9 at stride 2, against 12 for 4 pixels apart), so
// each input pixel is loaded once per quad and the pixel's coordinates worked out once. On
// lavapipe every load is a loop over the lanes, which is what im2col's time goes to.
@compute @workgroup_size(WG_SIZE)
fn im2col_3x3_c1(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    im2col_3x3_c1_quad(linear_index(gid, nwg), false);
}

@compute @workgroup_size(WG_SIZE)
fn im2col_3x3_c1_s2(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    im2col_3x3_c1_quad(linear_index(gid, nwg), true);
}

// The input columns of one filter row that a quad's windows read, from its first window's
// first column on: c0 .. c5 at stride 1, c0 .. c8 at stride 2; zero in the padding.
struct QuadColumns {
    c0: f32, c1: f32, c2: f32, c3: f32, c4: f32, c5: f32, c6: f32, c7: f32, c8: f32,
}

fn quad_columns(n: u32, iy: i32, ix0: i32, s2: bool) -> QuadColumns {
    var r = QuadColumns();
    if iy < 0 || iy >= i32(p.in_h) {
        return r;
    }
    let row = (n * p.in_h + u32(iy)) * p.in_w;
    r.c0 = row_pixel(row, ix0);
    r.c1 = row_pixel(row, ix0 + 1);
    r.c2 = row_pixel(row, ix0 + 2);
    r.c3 = row_pixel(row, ix0 + 3);
    r.c4 = row_pixel(row, ix0 + 4);
    r.c5 = row_pixel(row, ix0 + 5);
    if s2 {
        r.c6 = row_pixel(row, ix0 + 6);
        r.c7 = row_pixel(row, ix0 + 7);
        r.c8 = row_pixel(row, ix0 + 8);
    }
    return r;
}

// Column ix of the one-channel input row starting at element `row`, zero outside the row.
fn row_pixel(row: u32, ix: i32) -> f32 {
    if ix < 0 || ix >= i32(p.in_w) {
        return 0.0;
    }
    return input[row + u32(ix)];
}

// The 3 taps of pixel j (0 .. 3) of the quad in one filter row. `j` and `s2` are literals
// at every call, so the index folds and the columns stay in registers.
fn quad_window(r: QuadColumns, j: u32, s2: bool) -> vec3<f32> {
    let columns = array<f32, 9>(r.c0, r.c1, r.c2, r.c3, r.c4, r.c5, r.c6, r.c7, r.c8);
    let first = select(j, 2u * j, s2);
    return vec3<f32>(columns[first], columns[first + 1u], columns[first + 2u]);
}

fn im2col_3x3_c1_quad(index: u32, s2: bool) {
    let quads_per_row = (p.out_w + 3u) / 4u;
    if index >= p.batch * p.out_h * quads_per_row {
        return;
    }
    let x0 = (index % quads_per_row) * 4u;
    let image_row = index / quads_per_row;
    let oy = image_row % p.out_h;
    let n = image_row / p.out_h;
    let iy = i32(oy * p.stride) - i32(p.pad_top);
    let ix0 = i32(x0 * p.stride) - i32(p.pad_left);
    let r0 = quad_columns(n, iy, ix0, s2);
    let r1 = quad_columns(n, iy + 1, ix0, s2);
    let r2 = quad_columns(n, iy + 2, ix0, s2);
    let pixel = image_row * p.out_w + x0;
    store_quad_patch(pixel, x0, quad_window(r0, 0u, s2), quad_window(r1, 0u, s2),
                     quad_window(r2, 0u, s2));
    store_quad_patch(pixel + 1u, x0 + 1u, quad_window(r0, 1u, s2), quad_window(r1, 1u, s2),
                     quad_window(r2, 1u, s2));
    store_quad_patch(pixel + 2u, x0 + 2u, quad_window(r0, 2u, s2), quad_window(r1, 2u, s2),
                     quad_window(r2, 2u, s2));
    store_quad_patch(pixel + 3u, x0 + 3u, quad_window(r0, 3u, s2), quad_window(r1, 3u, s2),
                     quad_window(r2, 3u, s2));
}

// One pixel's patch row (9 taps and 3 zeros) from its 3 filter rows, where the pixel at
// column `ox` is inside the output row.
fn store_quad_patch(pixel: u32, ox: u32, t0: vec3<f32>, t1: vec3<f32>, t2: vec3<f32>) {
    if ox < p.out_w {
        patches[pixel * 3u] = vec4<f32>(t0, t1.x);
        patches[pixel * 3u + 1u] = vec4<f32>(t1.yz, t2.xy);
        patches[pixel * 3u + 2u] = vec4<f32>(t2.z, 0.0, 0.0, 0.0);
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
