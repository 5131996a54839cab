// Shared by every shader file: prepended at load time (WGSL has no includes).

// Threads per workgroup for the one-output-per-invocation kernels.
override WG_SIZE: u32 = 64u;

const ACT_NONE: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_RELU6: u32 = 2u;

fn activate(x: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return max(x, 0.0); }
        case 2u: { return clamp(x, 0.0, 6.0); }
        default: { return x; }
    }
}

// activate's cases, computed and selected rather than switched: lavapipe runs a switch on
// a value it cannot prove uniform as masked code for every case, with mask bookkeeping at
// each, and the prologue of the forward GEMMs calls this for every vec4 of A they load
// (performance.md, 2026-12-05, night). The same values as activate.
fn activate4(x: vec4<f32>, act: u32) -> vec4<f32> {
    let relu = max(x, vec4<f32>(0.0));
    let relu6 = min(relu, vec4<f32>(6.0));
    return select(select(x, relu, act == ACT_RELU), relu6, act == ACT_RELU6);
}

// dy through the activation `act` at pre-activation z: ReLU passes where z > 0, ReLU6
// where 0 < z < 6 (selected, as in activate4).
fn activation_grad4(dy: vec4<f32>, z: vec4<f32>, act: u32) -> vec4<f32> {
    let positive = z > vec4<f32>(0.0);
    let passes = select(select(vec4<bool>(true), positive, act == ACT_RELU),
                        positive & (z < vec4<f32>(6.0)), act == ACT_RELU6);
    return select(vec4<f32>(0.0), dy, passes);
}

// Running mean and sum of squared deviations of 4 channels: the batch-norm statistics a
// producer (depthwise, GEMM) leaves for the batch norm after it.
struct Welford {
    mean: vec4<f32>, m2: vec4<f32>,
}

// `s` after its `count`th value, y (bn_act.wgsl's stats_partial update, term for term, so
// that the partials come out the same whichever kernel computes them).
fn welford_add(s: Welford, y: vec4<f32>, count: u32) -> Welford {
    let d = y - s.mean;
    let mean = s.mean + d * (1.0 / f32(count));
    return Welford(mean, s.m2 + d * (y - mean));
}

// A batch norm's backward sums, per channel: sum dz and sum dz * (x - mean), dz the
// gradient before its activation; what a consumer's backward leaves for the batch norm
// before it.
struct BnSums {
    dz: vec4<f32>, dz_centred: vec4<f32>,
}

// A batch norm's normalisation of 4 channels: the batch's scale and shift (z = x * scale +
// shift before the activation) and mean.
struct BnNorm4 {
    scale: vec4<f32>, shift: vec4<f32>, mean: vec4<f32>,
}

// `sums` after one more value: dy the gradient of the batch norm's output, x its raw input
// (bn_act.wgsl's backward_partial, term for term).
fn bn_sums_add(sums: BnSums, dy: vec4<f32>, x: vec4<f32>, norm: BnNorm4, act: u32) -> BnSums {
    let dz = activation_grad4(dy, x * norm.scale + norm.shift, act);
    return BnSums(sums.dz + dz, sums.dz_centred + dz * (x - norm.mean));
}

// Element-wise kernels are dispatched as a 2D grid because one dimension is capped at
// 65535 workgroups; this folds the grid back into one linear index.
fn linear_index(gid: vec3<u32>, num_workgroups: vec3<u32>) -> u32 {
    return gid.x + gid.y * num_workgroups.x * WG_SIZE;
}

// (n, y, x, c) of a linear index into an NHWC tensor.
fn nhwc_coords(index: u32, height: u32, width: u32, channels: u32) -> vec4<u32> {
    let pixel = index / channels;
    return vec4<u32>(pixel / (width * height), (pixel / width) % height, pixel % width,
                     index % channels);
}

// The input coordinate that output coordinate `o` reads at kernel tap `k`, or -1 when
// the tap falls in the padding.
fn source_coord(o: u32, k: u32, stride: u32, pad_before: u32, size: u32) -> i32 {
    let i = i32(o * stride + k) - i32(pad_before);
    if i < 0 || i >= i32(size) {
        return -1;
    }
    return i;
}

// The output coordinate whose window reads input coordinate `i` at kernel tap `k`, or -1
// when there is none (the inverse of source_coord).
fn output_coord(i: u32, k: u32, stride: u32, pad_before: u32, out_size: u32) -> i32 {
    let shifted = i32(i + pad_before) - i32(k);
    if shifted < 0 || shifted % i32(stride) != 0 {
        return -1;
    }
    let o = shifted / i32(stride);
    if o >= i32(out_size) {
        return -1;
    }
    return o;
}

// One row of a 3x3 depthwise filter: its 3 taps, 4 channels each (depthwise.wgsl, and the
// depthwise epilogue of gemm.wgsl's forward_dw).
struct TapRow {
    k0: vec4<f32>, k1: vec4<f32>, k2: vec4<f32>,
}

struct FilterTaps {
    t0: TapRow, t1: TapRow, t2: TapRow,
}

// Quad `index` of im2col's quads (conv2d.wgsl, conv2d_int8.wgsl: 4 adjacent output pixels
// of a row per invocation): its image, its first output pixel (as an index over N*OH*OW)
// and that pixel's column, and where its first window starts in the input (negative in
// the padding). `valid` is false past the last quad.
struct PatchQuad {
    valid: bool, n: u32, pixel: u32, x0: u32, iy: i32, ix0: i32,
}

fn quad_at(index: u32, batch: u32, out_h: u32, out_w: u32, stride: u32, pad_top: u32,
           pad_left: u32) -> PatchQuad {
    let quads_per_row = (out_w + 3u) / 4u;
    let x0 = (index % quads_per_row) * 4u;
    let image_row = index / quads_per_row;
    let oy = image_row % out_h;
    return PatchQuad(index < batch * out_h * quads_per_row, image_row / out_h,
                image_row * out_w + x0, x0, i32(oy * stride) - i32(pad_top),
                i32(x0 * stride) - i32(pad_left));
}

// The first of the 3 input columns window j (0 .. 3) of a quad reads, counted from the
// quad's first window's first column.
fn quad_window_column(j: u32, s2: bool) -> u32 {
    return select(j, 2u * j, s2);
}
