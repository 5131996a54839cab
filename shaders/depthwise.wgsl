// Depthwise convolution, NHWC input, weights [KH, KW, C]: one filter per channel.
//
// In training, the input may be the raw input of the batch-norm layer before this one
// (`prologue` != 0): every input load then applies that batch norm and its activation with
// the scale and shift its stats_finalize left (bn_act.wgsl), so the normalised tensor is
// never written. Padding stays zero: padded taps never reach load_input.
//
// In the backward, dY may likewise be the gradient of the batch norm after this layer
// (`output_grad` != 0): every dY load then applies that batch norm's input gradient, from
// this layer's raw output and the sums its backward_finalize left, so that gradient is
// never written either.

struct DepthwiseParams {
    batch: u32, in_h: u32, in_w: u32, channels: u32,
    out_h: u32, out_w: u32, kernel: u32, stride: u32,
    // The chunked kernels walk pixels_per_chunk pixels per invocation (output pixels for dW
    // alone and the forward's statistics, input pixels for dX with dW): batch norm's chunk
    // of rows. chunks: the chunks of output pixels.
    pad_top: u32, pad_left: u32, pixels_per_chunk: u32, chunks: u32,
    has_bias: u32, act: u32,
    // 0: the input as stored; else 1 + the activation code of its batch norm.
    prologue: u32,
    // 1: the 3x3 backward also sums that batch norm's backward partials over the input
    // gradient it computes (input_grad_chunk), in place of bn_act.wgsl's backward_partial.
    input_sums: u32,
    // 0: dY as stored; else 1 + the activation code of the batch norm after this layer,
    // whose output's gradient dY then is.
    output_grad: u32,
    // The 3x3 backward's invocations each take this many consecutive chunks (so that wide
    // images' strips are long enough to share their dY rows), leaving their sums in the
    // first chunk's partials and zeros in the others'.
    chunk_span: u32,
    // The 3x3 forward's invocations each take this many consecutive images (small images,
    // whose strips are few: the taps and index arithmetic then serve several images).
    images: u32,
    // The 3x3 forward's strips: output rows per invocation (ops::depthwise's strip_rows).
    strip_rows: u32,
}

@group(0) @binding(0) var<uniform> p: DepthwiseParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
@group(0) @binding(4) var<storage, read> grad_output: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad_input: array<f32>;
// dW partials: [chunks, KH * KW, C], summed by reduce.wgsl; chunks of output pixels, or of
// input pixels where the 3x3 backward computes dW with dX.
@group(0) @binding(6) var<storage, read_write> partials: array<f32>;
// With input_sums, the input batch norm's backward partials: [chunks][2][C], chunks of
// pixels_per_chunk input pixels, as bn_act.wgsl's partials. Otherwise the host binds the
// dW partials here again, and nothing is stored to it.
// Inference with batchnorm folded in: per-channel shift, then the activation.
@group(0) @binding(7) var<storage, read> bias: array<f32>;

// The prologue's scale and shift of the invocation's 4 channels (every entry point works on
// one channel group), set once by begin_prologue before any input load.
var<private> prologue_scale: vec4<f32>;
var<private> prologue_shift: vec4<f32>;

fn begin_prologue(c0: u32, mask: vec4<bool>) {
    if p.prologue != 0u {
        prologue_scale = load_prologue(c0, mask);
        prologue_shift = load_prologue(p.channels + c0, mask);
    }
}

// The batch norm after this layer, for the backward's dY loads when output_grad != 0
// (bn_act.wgsl's `stats` planes of the invocation's 4 channels), set once by
// begin_output_grad before any dY load.
struct OutputBn {
    scale: vec4<f32>, shift: vec4<f32>, mean: vec4<f32>, inv_std: vec4<f32>,
    sum_dz: vec4<f32>, sum_dz_xhat: vec4<f32>, grad_scale: vec4<f32>,
}

var<private> output_bn: OutputBn;

fn begin_output_grad(c0: u32, mask: vec4<bool>) {
    if p.output_grad != 0u {
        let c = p.channels;
        output_bn = OutputBn(load_output_norm(c0, mask), load_output_norm(c + c0, mask),
                             load_output_norm(2u * c + c0, mask),
                             load_output_norm(3u * c + c0, mask),
                             load_output_norm(4u * c + c0, mask),
                             load_output_norm(5u * c + c0, mask),
                             load_output_norm(6u * c + c0, mask));
    }
}

// The gradient of this layer's output z from dy, the gradient of the batch norm's output:
// bn_act.wgsl's backward_input, term for term, so it comes out the same.
fn output_bn_grad(dy: vec4<f32>, z: vec4<f32>) -> vec4<f32> {
    let b = output_bn;
    let m = f32(p.batch * p.out_h * p.out_w);
    let xhat = (z - b.mean) * b.inv_std;
    let dz = activation_grad4(dy, z * b.scale + b.shift, p.output_grad - 1u);
    return b.grad_scale * (m * dz - b.sum_dz - xhat * b.sum_dz_xhat);
}

fn prologued(x: vec4<f32>) -> vec4<f32> {
    if p.prologue == 0u {
        return x;
    }
    return activate4(x * prologue_scale + prologue_shift, p.prologue - 1u);
}

// Every invocation handles a group of 4 adjacent channels (one vec4): the index
// arithmetic and padding tests are shared by the 4 lanes, and reads along C stay
// coalesced. Lanes past the last channel are masked.
fn channel_groups() -> u32 {
    return (p.channels + 3u) / 4u;
}

// Group g of `groups` as the chunked kernels assign it: where groups is a multiple of 8,
// the 8 lanes of a subgroup take groups groups / 8 apart instead of 8 adjacent ones.
fn spread_group(g: u32, groups: u32) -> u32 {
    if groups % 8u != 0u {
        return g;
    }
    return (g % 8u) * (groups / 8u) + g / 8u;
}

fn lane_mask(c0: u32) -> vec4<bool> {
    return vec4<u32>(c0, c0 + 1u, c0 + 2u, c0 + 3u) < vec4<u32>(p.channels);
}

// ACCESS BEGIN: loads and stores of one 4-channel group, given the element index of its
// first channel, for any channel count; depthwise_vec4.wgsl replaces this block.
// Batch-norm statistics of the input's producer, [7][channels] (bn_act.wgsl's `stats`).
@group(0) @binding(8) var<storage, read> prologue_stats: array<f32>;

fn load_prologue(i: u32, mask: vec4<bool>) -> vec4<f32> {
    return select(vec4<f32>(0.0),
                  vec4<f32>(prologue_stats[i], prologue_stats[i + 1u], prologue_stats[i + 2u],
                            prologue_stats[i + 3u]),
                  mask);
}

fn load_raw_input(i: u32, mask: vec4<bool>) -> vec4<f32> {
    let x = vec4<f32>(input[i], input[i + 1u], input[i + 2u], input[i + 3u]);
    return select(vec4<f32>(0.0), x, mask);
}

fn load_input(i: u32, mask: vec4<bool>) -> vec4<f32> {
    return select(vec4<f32>(0.0), prologued(load_raw_input(i, mask)), mask);
}

fn load_weight(i: u32, mask: vec4<bool>) -> vec4<f32> {
    return select(vec4<f32>(0.0), vec4<f32>(weight[i], weight[i + 1u], weight[i + 2u], weight[i + 3u]), mask);
}

// With output_grad, this layer's raw output (what dY's batch norm read) and that batch
// norm's statistics, [7][channels]; otherwise the host binds dY again at 11 and a
// placeholder at 12, and neither is read.
@group(0) @binding(11) var<storage, read> raw_output: array<f32>;
@group(0) @binding(12) var<storage, read> output_norm: array<f32>;

fn load_output_norm(i: u32, mask: vec4<bool>) -> vec4<f32> {
    return select(vec4<f32>(0.0),
                  vec4<f32>(output_norm[i], output_norm[i + 1u], output_norm[i + 2u],
                            output_norm[i + 3u]),
                  mask);
}

fn load_grad_output(i: u32, mask: vec4<bool>) -> vec4<f32> {
    let dy = vec4<f32>(grad_output[i], grad_output[i + 1u], grad_output[i + 2u], grad_output[i + 3u]);
    if p.output_grad == 0u {
        return select(vec4<f32>(0.0), dy, mask);
    }
    let z = vec4<f32>(raw_output[i], raw_output[i + 1u], raw_output[i + 2u], raw_output[i + 3u]);
    return select(vec4<f32>(0.0), output_bn_grad(dy, z), mask);
}

// The fused bias of channels c0..c0+3, zero without one: loaded once per invocation, not
// once per stored pixel.
fn load_bias(c0: u32, mask: vec4<bool>) -> vec4<f32> {
    if p.has_bias == 0u {
        return vec4<f32>(0.0);
    }
    return select(vec4<f32>(0.0), vec4<f32>(bias[c0], bias[c0 + 1u], bias[c0 + 2u], bias[c0 + 3u]), mask);
}

// Output channels c0..c0+3 at element `base`, after the fused bias and activation.
fn store_output(base: u32, shift: vec4<f32>, sum: vec4<f32>, mask: vec4<bool>) {
    for (var j = 0u; j < 4u; j++) {
        if mask[j] {
            output[base + j] = activate(sum[j] + shift[j], p.act);
        }
    }
}

fn store_grad_input(base: u32, sum: vec4<f32>, mask: vec4<bool>) {
    for (var j = 0u; j < 4u; j++) {
        if mask[j] {
            grad_input[base + j] = sum[j];
        }
    }
}

fn store_partial(base: u32, sum: vec4<f32>, mask: vec4<bool>) {
    for (var j = 0u; j < 4u; j++) {
        if mask[j] {
            partials[base + j] = sum[j];
        }
    }
}

@group(0) @binding(9) var<storage, read_write> input_partials: array<f32>;

fn store_input_partial(base: u32, sum: vec4<f32>, mask: vec4<bool>) {
    for (var j = 0u; j < 4u; j++) {
        if mask[j] {
            input_partials[base + j] = sum[j];
        }
    }
}

// The *_stats entry points' statistics of their output for the batch norm after them:
// [chunks][2][C], mean and sum of squared deviations per chunk of pixels_per_chunk output
// pixels, as bn_act.wgsl's stats_partial leaves them.
@group(0) @binding(10) var<storage, read_write> output_partials: array<f32>;

fn store_output_partial(base: u32, value: vec4<f32>, mask: vec4<bool>) {
    for (var j = 0u; j < 4u; j++) {
        if mask[j] {
            output_partials[base + j] = value[j];
        }
    }
}
// ACCESS END

@compute @workgroup_size(WG_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let groups = channel_groups();
    let index = linear_index(gid, nwg);
    if index >= p.batch * p.out_h * p.out_w * groups {
        return;
    }
    let o = nhwc_coords(index, p.out_h, p.out_w, groups);
    let n = o[0];
    let c0 = o[3] * 4u;
    let mask = lane_mask(c0);
    begin_prologue(c0, mask);

    var acc = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kernel; ky++) {
        let iy = source_coord(o[1], ky, p.stride, p.pad_top, p.in_h);
        for (var kx = 0u; kx < p.kernel; kx++) {
            let ix = source_coord(o[2], kx, p.stride, p.pad_left, p.in_w);
            if iy < 0 || ix < 0 {
                continue;
            }
            let x = load_input(((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.channels + c0, mask);
            acc += x * load_weight((ky * p.kernel + kx) * p.channels + c0, mask);
        }
    }
    store_output(((n * p.out_h + o[1]) * p.out_w + o[2]) * p.channels + c0, load_bias(c0, mask),
                 acc, mask);
}

// Input pixel (row, ix) of channels c0..c0+3, zero in the padding; `row` is the index of
// the row's first pixel.
fn load_pixel(row: u32, ix: i32, c0: u32, mask: vec4<bool>) -> vec4<f32> {
    if ix < 0 || ix >= i32(p.in_w) {
        return vec4<f32>(0.0);
    }
    return load_input((row + u32(ix)) * p.channels + c0, mask);
}

// The 3x3 kernels give each invocation 4 adjacent pixels along x of one row, 4 channels
// each: this many invocations cover a batch of height x width images...
fn quad_count(height: u32, width: u32) -> u32 {
    return quad_count_of(p.batch, height, width);
}

// ... or `images` of them (groups of images, where an invocation takes several).
fn quad_count_of(images: u32, height: u32, width: u32) -> u32 {
    return images * height * ((width + 3u) / 4u) * channel_groups();
}

// ... and invocation `index` starts at (image, row, first pixel, first channel).
fn quad_origin(index: u32, height: u32, width: u32) -> vec4<u32> {
    let groups = channel_groups();
    let x_groups = (width + 3u) / 4u;
    let rest = index / groups;
    return vec4<u32>(rest / (x_groups * height), (rest / x_groups) % height,
                     (rest % x_groups) * 4u,
                     spread_group(index % groups, groups) * 4u);
}

// The 3x3 case (all of MobileNet's), stride 1 or 2: each invocation computes a strip of
// p.strip_rows rows (8 to 32) of 4 adjacent output pixels of 4 channels (output_strip), so
// the 9 filter taps are loaded once for the strip and each input row its windows share is
// loaded once: at 8 rows, 10 input rows of 6 columns at stride 1, 17 of 9 at stride 2,
// where one row of 4 pixels took 3 of 6 or 3 of 9. Loads, not multiply-adds, bound this
// kernel on lavapipe. ops::depthwise sizes the grid by the same count.

@compute @workgroup_size(WG_SIZE)
fn forward_3x3(@builtin(global_invocation_id) gid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    forward_3x3_rows(linear_index(gid, nwg), false);
}

// Stride 2 has an entry point of its own: with the stride a literal, the compiler drops the
// other stride's loads. (On lavapipe a load under a condition false for every lane still
// runs its loop over the lanes.)
@compute @workgroup_size(WG_SIZE)
fn forward_3x3_s2(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    forward_3x3_rows(linear_index(gid, nwg), true);
}

fn forward_3x3_rows(index: u32, s2: bool) {
    let strips = (p.out_h + p.strip_rows - 1u) / p.strip_rows;
    let image_groups = (p.batch + p.images - 1u) / p.images;
    if index >= quad_count_of(image_groups, strips, p.out_w) {
        return;
    }
    let at = quad_origin(index, strips, p.out_w);
    let c0 = at.w;
    let mask = lane_mask(c0);
    begin_prologue(c0, mask);
    let top = at.y * p.strip_rows;
    let bottom = min(top + p.strip_rows, p.out_h) - 1u;
    let g = ChannelGroup(c0, mask, filter_taps(c0, mask));
    let shift = load_bias(c0, mask);
    let first = at.x * p.images;
    for (var n = first; n < min(first + p.images, p.batch); n++) {
        // The same strip of image n as a chunk of the whole image.
        let strip = Strip(n, at.z, i32(top), i32(bottom), 0u, p.out_h * p.out_w);
        output_strip(ChunkStats(), strip, g, shift, s2, false);
    }
}

// Images of at most 2x2 pixels, in and out (MobileNet's last layers at 32x32: 2x2, and 1x1
// after the last stride 2), whole: an invocation takes `images` images of one channel
// group, loads each image's pixels once and computes its outputs from them, where
// forward_3x3's strips load 4 rows of 6 or 9 columns, mostly padding, for at most 2 of
// their 4 pixels. The taps' input pixels are chosen among the 4 loaded by selects, which
// cost lavapipe one vector instruction each; a load is a loop over the lanes.
@compute @workgroup_size(WG_SIZE)
fn forward_3x3_small(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    forward_small_images(linear_index(gid, nwg), false);
}

@compute @workgroup_size(WG_SIZE)
fn forward_3x3_small_s2(@builtin(global_invocation_id) gid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    forward_small_images(linear_index(gid, nwg), true);
}

// The pixels of a small image (rows y, columns x), zero past its height and width.
struct SmallImage {
    y0x0: vec4<f32>, y0x1: vec4<f32>, y1x0: vec4<f32>, y1x1: vec4<f32>,
}

fn forward_small_images(index: u32, s2: bool) {
    let groups = channel_groups();
    if index >= (p.batch + p.images - 1u) / p.images * groups {
        return;
    }
    let c0 = spread_group(index % groups, groups) * 4u;
    let mask = lane_mask(c0);
    begin_prologue(c0, mask);
    let w = filter_taps(c0, mask);
    let shift = load_bias(c0, mask);
    let first = (index / groups) * p.images;
    let row = p.out_w * p.channels;
    for (var n = first; n < min(first + p.images, p.batch); n++) {
        let x = small_image(n, c0, mask);
        let at = n * p.out_h * row + c0;
        store_output(at, shift, small_output(x, w, 0u, 0u, s2), mask);
        if p.out_w > 1u {
            store_output(at + p.channels, shift, small_output(x, w, 0u, 1u, s2), mask);
        }
        if p.out_h > 1u {
            store_output(at + row, shift, small_output(x, w, 1u, 0u, s2), mask);
            if p.out_w > 1u {
                store_output(at + row + p.channels, shift, small_output(x, w, 1u, 1u, s2),
                             mask);
            }
        }
    }
}

fn small_image(n: u32, c0: u32, mask: vec4<bool>) -> SmallImage {
    let top = n * p.in_h * p.in_w;
    var x = SmallImage(load_pixel(top, 0, c0, mask), load_pixel(top, 1, c0, mask),
                       vec4<f32>(0.0), vec4<f32>(0.0));
    if p.in_h > 1u {
        x.y1x0 = load_pixel(top + p.in_w, 0, c0, mask);
        x.y1x1 = load_pixel(top + p.in_w, 1, c0, mask);
    }
    return x;
}

// Input pixel (iy, ix) of a small image; zero outside it.
fn small_pixel(x: SmallImage, iy: i32, ix: i32) -> vec4<f32> {
    let top = select(x.y0x0, x.y0x1, ix == 1);
    let bottom = select(x.y1x0, x.y1x1, ix == 1);
    let inside = iy >= 0 && iy <= 1 && ix >= 0 && ix <= 1;
    return select(vec4<f32>(0.0), select(top, bottom, iy == 1), inside);
}

// Output pixel (oy, ox) before the bias and activation.
fn small_output(x: SmallImage, w: FilterTaps, oy: u32, ox: u32, s2: bool) -> vec4<f32> {
    let stride = select(1u, 2u, s2);
    let iy = i32(oy * stride) - i32(p.pad_top);
    let ix = i32(ox * stride) - i32(p.pad_left);
    return small_row(x, w.t0, iy, ix) + small_row(x, w.t1, iy + 1, ix)
        + small_row(x, w.t2, iy + 2, ix);
}

// One filter row's 3 taps over input row iy from column ix.
fn small_row(x: SmallImage, k: TapRow, iy: i32, ix: i32) -> vec4<f32> {
    return small_pixel(x, iy, ix) * k.k0 + small_pixel(x, iy, ix + 1) * k.k1
        + small_pixel(x, iy, ix + 2) * k.k2;
}

// Chunks walked by strips. A chunk [first, last) of the NHW-ordered pixels of height x width
// images is taken image by image in strips 4 columns wide, each strip top to bottom, so a
// kernel walking down a strip carries the rows its 3x3 windows share from one row to the
// next. Strip k of the chunk: image n, columns x0 .. x0 + 3, rows top ..= bottom (none when
// top > bottom); the chunk's pixels of image n have in-image indices [lo, hi).
struct Strip {
    n: u32, x0: u32, top: i32, bottom: i32, lo: u32, hi: u32,
}

fn chunk_strip_count(first: u32, last: u32, height: u32, width: u32) -> u32 {
    let plane = height * width;
    return ((last - 1u) / plane - first / plane + 1u) * ((width + 3u) / 4u);
}

fn chunk_strip(k: u32, first: u32, last: u32, height: u32, width: u32) -> Strip {
    let plane = height * width;
    let per_image = (width + 3u) / 4u;
    let n = first / plane + k / per_image;
    let x0 = (k % per_image) * 4u;
    let lo = max(first, n * plane) - n * plane;
    let hi = min(last, (n + 1u) * plane) - n * plane;
    // The first row holds the chunk's pixels from column lo % width on, the last up to hi's.
    let top = i32(lo / width) + select(0, 1, lo % width >= min(x0 + 4u, width));
    let bottom = i32((hi - 1u) / width) - select(0, 1, (hi - 1u) % width < x0);
    return Strip(n, x0, top, bottom, lo, hi);
}

// Which of the strip's 4 pixels on row y (of images `width` wide) are the chunk's.
fn strip_lanes(s: Strip, y: u32, width: u32) -> vec4<bool> {
    let first = y * width + s.x0;
    let j_lo = select(0u, s.lo - first, s.lo > first);
    let j_hi = min(min(4u, width - s.x0), s.hi - first);
    let j = vec4<u32>(0u, 1u, 2u, 3u);
    return j >= vec4<u32>(j_lo) & j < vec4<u32>(j_hi);
}

// An invocation's channel group and its filter taps.
struct ChannelGroup {
    c0: u32, mask: vec4<bool>, w: FilterTaps,
}

// Training's forward for a 3x3 layer whose batch norm comes next: one invocation per chunk
// of pixels_per_chunk output pixels (NHW order) and 4-channel group, in strips of 4 pixels
// (output_strip), the filter taps loaded once per chunk. It also leaves the chunk's mean and
// sum of squared deviations of what it stores, accumulated pixel by pixel by Welford's
// update as the batch norm's stats_partial would (in the strips' order, not the chunk's),
// which that pass then need not run.
@compute @workgroup_size(WG_SIZE)
fn forward_3x3_stats(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    forward_3x3_chunk(linear_index(gid, nwg), false);
}

@compute @workgroup_size(WG_SIZE)
fn forward_3x3_s2_stats(@builtin(global_invocation_id) gid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    forward_3x3_chunk(linear_index(gid, nwg), true);
}

// The same in NARROW_WG_SIZE workgroups, for grids of fewer than 1024 invocations: at 4x4
// pixels and below a layer's statistics are one or two chunks per channel group, 64
// invocations, which in workgroups of 64 ran on one of lavapipe's threads.
@compute @workgroup_size(NARROW_WG_SIZE)
fn forward_3x3_stats_wg16(@builtin(global_invocation_id) gid: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>) {
    forward_3x3_chunk(narrow_index(gid, nwg), false);
}

@compute @workgroup_size(NARROW_WG_SIZE)
fn forward_3x3_s2_stats_wg16(@builtin(global_invocation_id) gid: vec3<u32>,
                             @builtin(num_workgroups) nwg: vec3<u32>) {
    forward_3x3_chunk(narrow_index(gid, nwg), true);
}

// The *_wg16 entry points' workgroup width (ops/depthwise.rs's NARROW_WORKGROUP) for the
// kernels that walk chunks of pixels, whose grids are few and long invocations: a CPU
// driver hands whole workgroups to its threads, and 196 invocations in workgroups of 64
// are 4 tasks, one of them nearly empty, for 2 threads; a GPU spreads 13 workgroups over
// more of its cores than 4.
const NARROW_WG_SIZE: u32 = 16u;

// linear_index for NARROW_WG_SIZE workgroups.
fn narrow_index(gid: vec3<u32>, num_workgroups: vec3<u32>) -> u32 {
    return gid.x + gid.y * num_workgroups.x * NARROW_WG_SIZE;
}

fn forward_3x3_chunk(index: u32, s2: bool) {
    let groups = channel_groups();
    if index >= p.chunks * groups {
        return;
    }
    let chunk = index / groups;
    let c0 = spread_group(index % groups, groups) * 4u;
    let mask = lane_mask(c0);
    begin_prologue(c0, mask);
    let g = ChannelGroup(c0, mask, filter_taps(c0, mask));
    let shift = load_bias(c0, mask);
    let first = chunk * p.pixels_per_chunk;
    let last = min(first + p.pixels_per_chunk, p.batch * p.out_h * p.out_w);
    var stats = ChunkStats();
    let strips = chunk_strip_count(first, last, p.out_h, p.out_w);
    for (var k = 0u; k < strips; k++) {
        let strip = chunk_strip(k, first, last, p.out_h, p.out_w);
        if strip.top <= strip.bottom {
            stats = output_strip(stats, strip, g, shift, s2, true);
        }
    }
    let at = 2u * chunk * p.channels + c0;
    store_output_partial(at, stats.welford.mean, mask);
    store_output_partial(at + p.channels, stats.welford.m2, mask);
}

// The statistics of a chunk's outputs so far, and how many outputs they hold.
struct ChunkStats {
    welford: Welford, count: u32,
}

// The outputs of one strip, stored and, with `count` (a literal at each call), added to
// the statistics. The strip's input rows are loaded once each, top to bottom, and each is
// added to the output rows whose windows it reaches, in filter-row order: an output row's
// sum is complete after its third input row. So only 1 or 2 output rows' partial sums are
// carried from row to row. Stride 1 loads 1 input row of 6 columns per output row, where
// quads walking along rows loaded 3 rows of 4 new columns; stride 2, 2 rows of 9 where they
// loaded 3 of 8.
fn output_strip(acc: ChunkStats, strip: Strip, g: ChannelGroup, shift: vec4<f32>, s2: bool,
                count: bool) -> ChunkStats {
    var stats = acc;
    let n = strip.n;
    let top = u32(strip.top);
    let ix0 = i32(strip.x0 * p.stride) - i32(p.pad_left);
    let iy0 = i32(top * p.stride) - i32(p.pad_top);
    // Input row i (from iy0) is row i - 2 of an output row's window at stride 1 (rows
    // i - 2, i - 1 and i of the strip take it), (i - 2) / 2 .. i / 2 at stride 2.
    let inputs = (u32(strip.bottom) - top) * p.stride + 3u;
    // The output rows that have had 2 input rows (`upper`) and 1 (`lower`, stride 1).
    var upper = Quad();
    var lower = Quad();
    for (var i = 0u; i < inputs; i++) {
        let x = input_row(n, iy0 + i32(i), ix0, g.c0, g.mask, s2);
        var done = Quad();
        if s2 {
            if (i & 1u) == 1u {
                upper = window_row(upper, x, g.w.t1, s2);
                continue;
            }
            done = window_row(upper, x, g.w.t2, s2);
            upper = window_row(Quad(), x, g.w.t0, s2);
        } else {
            done = window_row(upper, x, g.w.t2, s2);
            upper = window_row(lower, x, g.w.t1, s2);
            lower = window_row(Quad(), x, g.w.t0, s2);
        }
        if i < 2u {
            continue;
        }
        let oy = top + (i - 2u) / p.stride;
        let in_chunk = strip_lanes(strip, oy, p.out_w);
        let at = ((n * p.out_h + oy) * p.out_w + strip.x0) * p.channels + g.c0;
        if count {
            stats = count_quad(stats, at, shift, done, in_chunk, g.mask);
        } else {
            store_lanes(at, shift, done, in_chunk, g.mask);
        }
    }
    return stats;
}

// The quad's outputs that are the chunk's, stored.
fn store_lanes(at: u32, shift: vec4<f32>, q: Quad, in_chunk: vec4<bool>, mask: vec4<bool>) {
    if in_chunk.x {
        store_output(at, shift, q.a0, mask);
    }
    if in_chunk.y {
        store_output(at + p.channels, shift, q.a1, mask);
    }
    if in_chunk.z {
        store_output(at + 2u * p.channels, shift, q.a2, mask);
    }
    if in_chunk.w {
        store_output(at + 3u * p.channels, shift, q.a3, mask);
    }
}

// The quad's outputs that are the chunk's, stored and added to the statistics one by one.
fn count_quad(acc: ChunkStats, at: u32, shift: vec4<f32>, q: Quad, in_chunk: vec4<bool>,
              mask: vec4<bool>) -> ChunkStats {
    var s = acc;
    if in_chunk.x {
        s.count += 1u;
        s.welford = store_and_count(s.welford, at, shift, q.a0, s.count, mask);
    }
    if in_chunk.y {
        s.count += 1u;
        s.welford = store_and_count(s.welford, at + p.channels, shift, q.a1, s.count, mask);
    }
    if in_chunk.z {
        s.count += 1u;
        s.welford = store_and_count(s.welford, at + 2u * p.channels, shift, q.a2, s.count,
                                    mask);
    }
    if in_chunk.w {
        s.count += 1u;
        s.welford = store_and_count(s.welford, at + 3u * p.channels, shift, q.a3, s.count,
                                    mask);
    }
    return s;
}

// Stores one input-gradient pixel and, with input_sums, adds it to the batch norm's sums
// (see common.wgsl's BnSums); x is the pixel's raw input.
fn store_and_sum(sums: BnSums, at: u32, dy: vec4<f32>, x: vec4<f32>, mean: vec4<f32>,
                 mask: vec4<bool>) -> BnSums {
    store_grad_input(at, dy, mask);
    if p.input_sums == 0u {
        return sums;
    }
    let norm = BnNorm4(prologue_scale, prologue_shift, mean);
    return bn_sums_add(sums, dy, x, norm, p.prologue - 1u);
}

// Stores one output pixel and adds it, as stored, to the statistics as their `count`th.
fn store_and_count(stats: Welford, at: u32, shift: vec4<f32>, sum: vec4<f32>, count: u32,
                   mask: vec4<bool>) -> Welford {
    store_output(at, shift, sum, mask);
    return welford_add(stats, activate4(sum + shift, p.act), count);
}

// 4 channels of 4 adjacent output pixels.
struct Quad {
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
}

fn filter_taps(c0: u32, mask: vec4<bool>) -> FilterTaps {
    return FilterTaps(tap_row(0u, c0, mask), tap_row(1u, c0, mask), tap_row(2u, c0, mask));
}

fn tap_row(ky: u32, c0: u32, mask: vec4<bool>) -> TapRow {
    return TapRow(load_weight((ky * 3u) * p.channels + c0, mask),
                  load_weight((ky * 3u + 1u) * p.channels + c0, mask),
                  load_weight((ky * 3u + 2u) * p.channels + c0, mask));
}

// The input pixels a quad's windows read on one input row: columns ix0 .. ix0 + 5 at
// stride 1, ix0 .. ix0 + 8 at stride 2; zero in the padding.
struct InputRow {
    x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>, x3: vec4<f32>, x4: vec4<f32>,
    x5: vec4<f32>, x6: vec4<f32>, x7: vec4<f32>, x8: vec4<f32>,
}

fn input_row(n: u32, iy: i32, ix0: i32, c0: u32, mask: vec4<bool>, s2: bool) -> InputRow {
    var x = InputRow();
    if iy < 0 || iy >= i32(p.in_h) {
        return x;
    }
    let row = (n * p.in_h + u32(iy)) * p.in_w;
    x.x0 = load_pixel(row, ix0, c0, mask);
    x.x1 = load_pixel(row, ix0 + 1, c0, mask);
    x.x2 = load_pixel(row, ix0 + 2, c0, mask);
    x.x3 = load_pixel(row, ix0 + 3, c0, mask);
    x.x4 = load_pixel(row, ix0 + 4, c0, mask);
    x.x5 = load_pixel(row, ix0 + 5, c0, mask);
    if s2 {
        x.x6 = load_pixel(row, ix0 + 6, c0, mask);
        x.x7 = load_pixel(row, ix0 + 7, c0, mask);
        x.x8 = load_pixel(row, ix0 + 8, c0, mask);
    }
    return x;
}

// acc + one kernel row applied to the quad's 4 windows: output j reads columns
// j * stride + (0, 1, 2) of the input row.
// The row's three products are summed before they join the accumulator, as the one-row
// kernel did: results stay bit-identical to it.
fn window_row(acc: Quad, x: InputRow, k: TapRow, s2: bool) -> Quad {
    return Quad(
        acc.a0 + (x.x0 * k.k0 + x.x1 * k.k1 + x.x2 * k.k2),
        acc.a1 + (select(x.x1, x.x2, s2) * k.k0 + select(x.x2, x.x3, s2) * k.k1
            + select(x.x3, x.x4, s2) * k.k2),
        acc.a2 + (select(x.x2, x.x4, s2) * k.k0 + select(x.x3, x.x5, s2) * k.k1
            + select(x.x4, x.x6, s2) * k.k2),
        acc.a3 + (select(x.x3, x.x6, s2) * k.k0 + select(x.x4, x.x7, s2) * k.k1
            + select(x.x5, x.x8, s2) * k.k2));
}

// dY of output column `ox` of the output row starting at pixel `row`, zero outside.
fn load_grad_pixel(row: u32, ox: i32, c0: u32, mask: vec4<bool>) -> vec4<f32> {
    if ox < 0 || ox >= i32(p.out_w) {
        return vec4<f32>(0.0);
    }
    return load_grad_output((row + u32(ox)) * p.channels + c0, mask);
}

// dY of one output row (zero when oy is outside the output) at the columns that 4 adjacent
// input pixels from column ix0 reach: in padded coordinates q = ix0 + pad_left, columns
// q - 2 .. q + 3 at stride 1 (d0 .. d5); at stride 2, floor((q - 1) / 2) and the next two
// (d0 .. d2, the rest zero).
struct GradRow {
    d0: vec4<f32>, d1: vec4<f32>, d2: vec4<f32>, d3: vec4<f32>, d4: vec4<f32>, d5: vec4<f32>,
}

fn grad_row(n: u32, oy: i32, ix0: u32, c0: u32, mask: vec4<bool>, s2: bool) -> GradRow {
    var d = GradRow();
    if oy < 0 || oy >= i32(p.out_h) {
        return d;
    }
    let row = (n * p.out_h + u32(oy)) * p.out_w;
    let q = i32(ix0 + p.pad_left);
    if s2 {
        let e0 = (q - 1) >> 1u;
        d.d0 = load_grad_pixel(row, e0, c0, mask);
        d.d1 = load_grad_pixel(row, e0 + 1, c0, mask);
        d.d2 = load_grad_pixel(row, e0 + 2, c0, mask);
    } else {
        d.d0 = load_grad_pixel(row, q - 2, c0, mask);
        d.d1 = load_grad_pixel(row, q - 1, c0, mask);
        d.d2 = load_grad_pixel(row, q, c0, mask);
        d.d3 = load_grad_pixel(row, q + 1, c0, mask);
        d.d4 = load_grad_pixel(row, q + 2, c0, mask);
        d.d5 = load_grad_pixel(row, q + 3, c0, mask);
    }
    return d;
}

// A filter row's share of 4 adjacent input pixels' dX, and its 3 taps' dW sums over them.
struct RowGrads {
    dx: Quad, dw: TapRow,
}

// acc + what filter row k carries back to the 4 input pixels from output row d, whose
// inputs (as the forward read them) are x; and that row's dW sums. Input column ix receives
// dY[(ix + pad - kx) / stride] * w[kx] for every kx that divides evenly. `q_odd`: the first
// pixel's padded column is odd (stride 2 only).
fn row_grads(acc: Quad, d: GradRow, k: TapRow, x: Quad, q_odd: bool, s2: bool) -> RowGrads {
    var sum = acc;
    if s2 {
        // q + j - kx is even for 2 of the 3 taps of pixels q, q + 2 (when q is even) or
        // q + 1, q + 3 (when odd) and for 1 tap of the others.
        if q_odd {
            sum.a0 += d.d0 * k.k1;
            sum.a1 += d.d1 * k.k0 + d.d0 * k.k2;
            sum.a2 += d.d1 * k.k1;
            sum.a3 += d.d2 * k.k0 + d.d1 * k.k2;
            return RowGrads(sum, TapRow(d.d1 * x.a1 + d.d2 * x.a3, d.d0 * x.a0 + d.d1 * x.a2,
                                        d.d0 * x.a1 + d.d1 * x.a3));
        }
        sum.a0 += d.d1 * k.k0 + d.d0 * k.k2;
        sum.a1 += d.d1 * k.k1;
        sum.a2 += d.d2 * k.k0 + d.d1 * k.k2;
        sum.a3 += d.d2 * k.k1;
        return RowGrads(sum, TapRow(d.d1 * x.a0 + d.d2 * x.a2, d.d1 * x.a1 + d.d2 * x.a3,
                                    d.d0 * x.a0 + d.d1 * x.a2));
    }
    // Pixel j reads output columns q + j - 2 .. q + j.
    sum.a0 += d.d2 * k.k0 + d.d1 * k.k1 + d.d0 * k.k2;
    sum.a1 += d.d3 * k.k0 + d.d2 * k.k1 + d.d1 * k.k2;
    sum.a2 += d.d4 * k.k0 + d.d3 * k.k1 + d.d2 * k.k2;
    sum.a3 += d.d5 * k.k0 + d.d4 * k.k1 + d.d3 * k.k2;
    return RowGrads(sum, TapRow(d.d2 * x.a0 + d.d3 * x.a1 + d.d4 * x.a2 + d.d5 * x.a3,
                                d.d1 * x.a0 + d.d2 * x.a1 + d.d3 * x.a2 + d.d4 * x.a3,
                                d.d0 * x.a0 + d.d1 * x.a1 + d.d2 * x.a2 + d.d3 * x.a3));
}

// The raw inputs of the quad from element `at` on, zero where `in_chunk` is not.
fn raw_quad(at: u32, in_chunk: vec4<bool>, mask: vec4<bool>) -> Quad {
    var x = Quad();
    if in_chunk.x {
        x.a0 = load_raw_input(at, mask);
    }
    if in_chunk.y {
        x.a1 = load_raw_input(at + p.channels, mask);
    }
    if in_chunk.z {
        x.a2 = load_raw_input(at + 2u * p.channels, mask);
    }
    if in_chunk.w {
        x.a3 = load_raw_input(at + 3u * p.channels, mask);
    }
    return x;
}

// The quad's inputs as the forward read them (through the prologue), zero where `in_chunk`
// is not.
fn input_quad(raw: Quad, in_chunk: vec4<bool>, mask: vec4<bool>) -> Quad {
    let zero = vec4<f32>(0.0);
    return Quad(select(zero, prologued(raw.a0), mask & vec4<bool>(in_chunk.x)),
                select(zero, prologued(raw.a1), mask & vec4<bool>(in_chunk.y)),
                select(zero, prologued(raw.a2), mask & vec4<bool>(in_chunk.z)),
                select(zero, prologued(raw.a3), mask & vec4<bool>(in_chunk.w)));
}

// The quad's dX stored where the pixels are the chunk's and, with input_sums, added to the
// sums of the batch norm before this layer (whose mean is `mean`).
fn store_quad_grads(acc: BnSums, at: u32, dx: Quad, raw: Quad, in_chunk: vec4<bool>,
                    mean: vec4<f32>, mask: vec4<bool>) -> BnSums {
    var sums = acc;
    if in_chunk.x {
        sums = store_and_sum(sums, at, dx.a0, raw.a0, mean, mask);
    }
    if in_chunk.y {
        sums = store_and_sum(sums, at + p.channels, dx.a1, raw.a1, mean, mask);
    }
    if in_chunk.z {
        sums = store_and_sum(sums, at + 2u * p.channels, dx.a2, raw.a2, mean, mask);
    }
    if in_chunk.w {
        sums = store_and_sum(sums, at + 3u * p.channels, dx.a3, raw.a3, mean, mask);
    }
    return sums;
}

fn add_taps(t: Taps, r0: TapRow, r1: TapRow, r2: TapRow) -> Taps {
    return Taps(t.y0x0 + r0.k0, t.y0x1 + r0.k1, t.y0x2 + r0.k2,
                t.y1x0 + r1.k0, t.y1x1 + r1.k1, t.y1x2 + r1.k2,
                t.y2x0 + r2.k0, t.y2x1 + r2.k1, t.y2x2 + r2.k2);
}

// What a chunk's invocation accumulates: dW's partial sums of the 9 taps and, with
// input_sums, its input batch norm's backward sums.
struct ChunkGrads {
    dw: Taps, sums: BnSums,
}

// dX and dW sums of one strip of input pixels. Walking down the strip, each dY row is
// loaded once for the 3 input rows it reaches and carried from row to row: `latest` is the
// last dY row loaded, `second` (stride 1) the one before it. A dY row is 6 loads for the
// strip's 4 pixels at stride 1, where quads walking along rows loaded each dY pixel once
// per input row that reaches it, 3 times in all (at stride 2, 3 loads per 2 input rows
// against 3 rows of 2).
fn strip_grads(acc: ChunkGrads, strip: Strip, g: ChannelGroup, mean: vec4<f32>,
               s2: bool) -> ChunkGrads {
    var out = acc;
    let n = strip.n;
    let ix0 = strip.x0;
    let q_odd = ((ix0 + p.pad_left) & 1u) == 1u;
    let top = u32(strip.top);
    let t0 = i32(top + p.pad_top);
    // The rows the first input row reaches through filter rows 1 and 2 (stride 1), or the
    // one before its own at stride 2: floor((t0 - 1) / 2).
    var latest = grad_row(n, select(t0 - 1, (t0 - 1) >> 1u, s2), ix0, g.c0, g.mask, s2);
    var second = GradRow();
    if !s2 {
        second = grad_row(n, t0 - 2, ix0, g.c0, g.mask, s2);
    }
    for (var iy = top; iy <= u32(strip.bottom); iy++) {
        let t = i32(iy + p.pad_top);
        let in_chunk = strip_lanes(strip, iy, p.in_w);
        let at = ((n * p.in_h + iy) * p.in_w + ix0) * p.channels + g.c0;
        let raw = raw_quad(at, in_chunk, g.mask);
        let x = input_quad(raw, in_chunk, g.mask);
        // Filter row ky reaches output row t - ky (stride 1), (t - ky) / 2 where that
        // divides (stride 2); summed in filter-row order.
        var r0 = RowGrads();
        var r1 = RowGrads();
        var r2 = RowGrads();
        if s2 {
            if (t & 1) == 0 {
                let d0 = grad_row(n, t >> 1u, ix0, g.c0, g.mask, s2);
                r0 = row_grads(Quad(), d0, g.w.t0, x, q_odd, s2);
                r2 = row_grads(r0.dx, latest, g.w.t2, x, q_odd, s2);
                latest = d0;
            } else {
                r1 = row_grads(Quad(), latest, g.w.t1, x, q_odd, s2);
                r2 = RowGrads(r1.dx, TapRow());
            }
        } else {
            let d0 = grad_row(n, t, ix0, g.c0, g.mask, s2);
            r0 = row_grads(Quad(), d0, g.w.t0, x, q_odd, s2);
            r1 = row_grads(r0.dx, latest, g.w.t1, x, q_odd, s2);
            r2 = row_grads(r1.dx, second, g.w.t2, x, q_odd, s2);
            second = latest;
            latest = d0;
        }
        out.dw = add_taps(out.dw, r0.dw, r1.dw, r2.dw);
        out.sums = store_quad_grads(out.sums, at, r2.dx, raw, in_chunk, mean, g.mask);
    }
    return out;
}

// dX of chunk_span chunks of pixels_per_chunk input pixels (NHW order) for one 4-channel
// group, from chunk `index / groups * chunk_span` on (of input_chunks), in
// strips (strip_grads), the filter taps loaded once for the chunk; with it, dW's partial
// sums over the same products (every dY a filter tap carries to an input pixel of the
// chunk, times that pixel), so dY and the input are read once for both. With input_sums,
// also the chunk's backward partials of the batch norm whose raw output is this layer's
// input, at the place its backward_partial would have left them: dz and x are in registers
// here.
fn input_grad_chunk(index: u32, input_chunks: u32, s2: bool) {
    let groups = channel_groups();
    let chunk = index / groups * p.chunk_span;
    let c0 = spread_group(index % groups, groups) * 4u;
    let mask = lane_mask(c0);
    begin_prologue(c0, mask);
    begin_output_grad(c0, mask);
    var mean = vec4<f32>(0.0);
    if p.input_sums != 0u {
        mean = load_prologue(2u * p.channels + c0, mask);
    }
    let g = ChannelGroup(c0, mask, filter_taps(c0, mask));
    let first = chunk * p.pixels_per_chunk;
    let last = min(first + p.chunk_span * p.pixels_per_chunk, p.batch * p.in_h * p.in_w);
    var grads = ChunkGrads();
    let strips = chunk_strip_count(first, last, p.in_h, p.in_w);
    for (var k = 0u; k < strips; k++) {
        let strip = chunk_strip(k, first, last, p.in_h, p.in_w);
        if strip.top <= strip.bottom {
            grads = strip_grads(grads, strip, g, mean, s2);
        }
    }
    store_taps(chunk, c0, grads.dw, mask);
    if p.input_sums != 0u {
        let inv_std = load_prologue(3u * p.channels + c0, mask);
        let at = 2u * chunk * p.channels + c0;
        store_input_partial(at, grads.sums.dz, mask);
        store_input_partial(at + p.channels, grads.sums.dz_centred * inv_std, mask);
    }
    for (var rest = chunk + 1u; rest < min(chunk + p.chunk_span, input_chunks); rest++) {
        store_taps(rest, c0, Taps(), mask);
        if p.input_sums != 0u {
            store_input_partial(2u * rest * p.channels + c0, vec4<f32>(0.0), mask);
            store_input_partial((2u * rest + 1u) * p.channels + c0, vec4<f32>(0.0), mask);
        }
    }
}

// dX as a gather: each input element sums the output gradients of the windows that read
// it, so no two invocations write the same element.
@compute @workgroup_size(WG_SIZE)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let groups = channel_groups();
    let index = linear_index(gid, nwg);
    if index >= p.batch * p.in_h * p.in_w * groups {
        return;
    }
    let i = nhwc_coords(index, p.in_h, p.in_w, groups);
    let n = i[0];
    let c0 = i[3] * 4u;
    let mask = lane_mask(c0);
    begin_output_grad(c0, mask);
    var acc = vec4<f32>(0.0);
    for (var ky = 0u; ky < p.kernel; ky++) {
        let oy = output_coord(i[1], ky, p.stride, p.pad_top, p.out_h);
        for (var kx = 0u; kx < p.kernel; kx++) {
            let ox = output_coord(i[2], kx, p.stride, p.pad_left, p.out_w);
            if oy < 0 || ox < 0 {
                continue;
            }
            let dy = load_grad_output(((n * p.out_h + u32(oy)) * p.out_w + u32(ox)) * p.channels + c0, mask);
            acc += dy * load_weight((ky * p.kernel + kx) * p.channels + c0, mask);
        }
    }
    store_grad_input(((n * p.in_h + i[1]) * p.in_w + i[2]) * p.channels + c0, acc, mask);
}

// dW stage 1: for each chunk of output pixels, tap and channel group, sum dy * x.
@compute @workgroup_size(WG_SIZE)
fn backward_weight_partial(@builtin(global_invocation_id) gid: vec3<u32>,
                           @builtin(num_workgroups) nwg: vec3<u32>) {
    let groups = channel_groups();
    let taps = p.kernel * p.kernel;
    let index = linear_index(gid, nwg);
    if index >= p.chunks * taps * groups {
        return;
    }
    let c0 = (index % groups) * 4u;
    let mask = lane_mask(c0);
    begin_prologue(c0, mask);
    begin_output_grad(c0, mask);
    let tap = (index / groups) % taps;
    let chunk = index / (groups * taps);
    let ky = tap / p.kernel;
    let kx = tap % p.kernel;
    let pixels = p.batch * p.out_h * p.out_w;
    let first = chunk * p.pixels_per_chunk;
    let last = min(first + p.pixels_per_chunk, pixels);
    var acc = vec4<f32>(0.0);
    for (var pixel = first; pixel < last; pixel++) {
        let ox = pixel % p.out_w;
        let oy = (pixel / p.out_w) % p.out_h;
        let n = pixel / (p.out_w * p.out_h);
        let iy = source_coord(oy, ky, p.stride, p.pad_top, p.in_h);
        let ix = source_coord(ox, kx, p.stride, p.pad_left, p.in_w);
        if iy < 0 || ix < 0 {
            continue;
        }
        let x = load_input(((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.channels + c0, mask);
        acc += load_grad_output(pixel * p.channels + c0, mask) * x;
    }
    store_partial((chunk * taps + tap) * p.channels + c0, acc, mask);
}

// dW stage 1 for 3x3 filters: all 9 taps of one channel group per invocation, over the
// chunk's output pixels taken as runs along output rows. Each output gradient is loaded
// once for the 9 taps, and the 3x3 input window slides along the row: per output pixel,
// one new input column per filter row at stride 1 (two at stride 2) instead of 9 loads.
@compute @workgroup_size(WG_SIZE)
fn backward_weight_partial_3x3(@builtin(global_invocation_id) gid: vec3<u32>,
                               @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.chunks * channel_groups() {
        return;
    }
    weight_partial_3x3(index, false);
}

@compute @workgroup_size(WG_SIZE)
fn backward_weight_partial_3x3_s2(@builtin(global_invocation_id) gid: vec3<u32>,
                                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.chunks * channel_groups() {
        return;
    }
    weight_partial_3x3(index, true);
}

// dX and dW's first stage of a 3x3 layer in one pass: one invocation per chunk of
// pixels_per_chunk input pixels and channel group (input_grad_chunk), dW's partials per
// chunk of input pixels.
@compute @workgroup_size(WG_SIZE)
fn backward_3x3(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    backward_input_and_weight_3x3(linear_index(gid, nwg), false);
}

@compute @workgroup_size(WG_SIZE)
fn backward_3x3_s2(@builtin(global_invocation_id) gid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    backward_input_and_weight_3x3(linear_index(gid, nwg), true);
}

// The same in NARROW_WG_SIZE workgroups, for grids of fewer than 1024 invocations
// (ops/depthwise.rs's NARROW_GRID_BELOW).
@compute @workgroup_size(NARROW_WG_SIZE)
fn backward_3x3_wg16(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    backward_input_and_weight_3x3(narrow_index(gid, nwg), false);
}

@compute @workgroup_size(NARROW_WG_SIZE)
fn backward_3x3_s2_wg16(@builtin(global_invocation_id) gid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    backward_input_and_weight_3x3(narrow_index(gid, nwg), true);
}

fn backward_input_and_weight_3x3(index: u32, s2: bool) {
    let input_chunks = (p.batch * p.in_h * p.in_w + p.pixels_per_chunk - 1u) / p.pixels_per_chunk;
    if index < (input_chunks + p.chunk_span - 1u) / p.chunk_span * channel_groups() {
        input_grad_chunk(index, input_chunks, s2);
    }
}

// dW sums of the 9 taps, by filter row (y) and column (x).
struct Taps {
    y0x0: vec4<f32>, y0x1: vec4<f32>, y0x2: vec4<f32>,
    y1x0: vec4<f32>, y1x1: vec4<f32>, y1x2: vec4<f32>,
    y2x0: vec4<f32>, y2x1: vec4<f32>, y2x2: vec4<f32>,
}

// The 3 input columns one filter row sees.
struct Window {
    x0: vec4<f32>, x1: vec4<f32>, x2: vec4<f32>,
}

// Input pixel (iy, ix) of image n, zero in the padding.
fn window_pixel(n: u32, iy: i32, ix: i32, c0: u32, mask: vec4<bool>) -> vec4<f32> {
    if iy < 0 || iy >= i32(p.in_h) {
        return vec4<f32>(0.0);
    }
    return load_pixel((n * p.in_h + u32(iy)) * p.in_w, ix, c0, mask);
}

fn first_window(n: u32, iy: i32, ix: i32, c0: u32, mask: vec4<bool>) -> Window {
    return Window(window_pixel(n, iy, ix, c0, mask), window_pixel(n, iy, ix + 1, c0, mask),
                  window_pixel(n, iy, ix + 2, c0, mask));
}

// The window of the next output pixel, whose columns start at `ix`. `stride2` is a literal
// at each call, so the compiler keeps one branch.
fn next_window(w: Window, n: u32, iy: i32, ix: i32, c0: u32, mask: vec4<bool>,
               stride2: bool) -> Window {
    if stride2 {
        return Window(w.x2, window_pixel(n, iy, ix + 1, c0, mask),
                      window_pixel(n, iy, ix + 2, c0, mask));
    }
    return Window(w.x1, w.x2, window_pixel(n, iy, ix + 2, c0, mask));
}

fn weight_partial_3x3(index: u32, stride2: bool) {
    let groups = channel_groups();
    let c0 = (index % groups) * 4u;
    let mask = lane_mask(c0);
    begin_prologue(c0, mask);
    begin_output_grad(c0, mask);
    let chunk = index / groups;
    let first = chunk * p.pixels_per_chunk;
    let last = min(first + p.pixels_per_chunk, p.batch * p.out_h * p.out_w);
    var t = Taps();
    for (var pixel = first; pixel < last;) {
        let ox0 = pixel % p.out_w;
        let oy = (pixel / p.out_w) % p.out_h;
        let n = pixel / (p.out_w * p.out_h);
        let run = min(last - pixel, p.out_w - ox0);
        let iy = i32(oy * p.stride) - i32(p.pad_top);
        var ix = i32(ox0 * p.stride) - i32(p.pad_left);
        var r0 = first_window(n, iy, ix, c0, mask);
        var r1 = first_window(n, iy + 1, ix, c0, mask);
        var r2 = first_window(n, iy + 2, ix, c0, mask);
        for (var j = 0u; j < run; j++) {
            let dy = load_grad_output((pixel + j) * p.channels + c0, mask);
            t.y0x0 += dy * r0.x0;
            t.y0x1 += dy * r0.x1;
            t.y0x2 += dy * r0.x2;
            t.y1x0 += dy * r1.x0;
            t.y1x1 += dy * r1.x1;
            t.y1x2 += dy * r1.x2;
            t.y2x0 += dy * r2.x0;
            t.y2x1 += dy * r2.x1;
            t.y2x2 += dy * r2.x2;
            ix += i32(p.stride);
            r0 = next_window(r0, n, iy, ix, c0, mask, stride2);
            r1 = next_window(r1, n, iy + 1, ix, c0, mask, stride2);
            r2 = next_window(r2, n, iy + 2, ix, c0, mask, stride2);
        }
        pixel += run;
    }
    store_taps(chunk, c0, t, mask);
}

// Chunk `chunk`'s dW partials of the 9 taps: [chunks, 9, channels], as
// backward_weight_partial writes them.
fn store_taps(chunk: u32, c0: u32, t: Taps, mask: vec4<bool>) {
    let base = chunk * 9u * p.channels + c0;
    store_partial(base, t.y0x0, mask);
    store_partial(base + p.channels, t.y0x1, mask);
    store_partial(base + 2u * p.channels, t.y0x2, mask);
    store_partial(base + 3u * p.channels, t.y1x0, mask);
    store_partial(base + 4u * p.channels, t.y1x1, mask);
    store_partial(base + 5u * p.channels, t.y1x2, mask);
    store_partial(base + 6u * p.channels, t.y2x0, mask);
    store_partial(base + 7u * p.channels, t.y2x1, mask);
    store_partial(base + 8u * p.channels, t.y2x2, mask);
}
