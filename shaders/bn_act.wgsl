// Batch normalisation fused with the activation that follows it, NHWC (channel fastest).
// Rows are the N*H*W pixels; statistics are per channel.
//
// Every value is an `Elem`: one channel here; bn_act_vec4.wgsl replaces the ACCESS block so
// that an Elem is a vec4 of 4 adjacent channels when the channel count divides by 4, and
// the same kernels then move whole vec4s (a software rasteriser pays per load instruction,
// whatever its width). Indices below count Elems, never channels.

// ACCESS BEGIN
alias Elem = f32;
const CHANNELS_PER_ELEM: u32 = 1u;
fn activate_elem(x: Elem, act: u32) -> Elem {
    return activate(x, act);
}
// ACCESS END

// WORDS BEGIN
// The activations and their gradients, as Elems (bn_act_words64.wgsl replaces this block
// to move the vec4s as 64-bit words).
@group(0) @binding(1) var<storage, read> input: array<Elem>;
@group(0) @binding(6) var<storage, read_write> output: array<Elem>;
@group(0) @binding(9) var<storage, read> grad_output: array<Elem>;
@group(0) @binding(10) var<storage, read_write> grad_input: array<Elem>;

fn input_at(i: u32) -> Elem {
    return input[i];
}

fn set_output(i: u32, value: Elem) {
    output[i] = value;
}

fn grad_output_at(i: u32) -> Elem {
    return grad_output[i];
}

fn set_grad_input(i: u32, value: Elem) {
    grad_input[i] = value;
}
// WORDS END

struct BnParams {
    rows: u32, channels: u32, act: u32, eps: f32,
    rows_per_chunk: u32, chunks: u32, momentum: f32,
    // The rows the batch statistics cover, when a plan runs this pass on a chunk of them
    // (0: `rows`).
    batch_rows: u32,
    // backward_finalize_with_weight_sums only: the weight gradient's partials (vec4s per
    // partial, and how many), and the workgroups that finalize before those that sum them.
    weight_vec4s: u32, weight_parts: u32, finalize_workgroups: u32, _unused0: u32,
}

@group(0) @binding(0) var<uniform> p: BnParams;
@group(0) @binding(2) var<storage, read> gamma: array<Elem>;
@group(0) @binding(3) var<storage, read> beta: array<Elem>;
@group(0) @binding(4) var<storage, read_write> running_mean: array<Elem>;
@group(0) @binding(5) var<storage, read_write> running_var: array<Elem>;
// Per channel, kept from the forward to the backward pass:
// [scale | shift | mean | 1/sqrt(var+eps) | sum dz | sum dz*xhat | gamma/sqrt(var+eps)/M],
// each `channels` long (M: the rows the statistics cover).
// scale and shift come first so that a GEMM can bind their planes as a uniform block of
// fixed size (gemm_vec4.wgsl) whatever the channel count.
// scale and shift (the batch's normalisation and BN's parameters as one affine map) are
// what the next layer applies as it loads this layer's raw input, when it takes the
// normalisation and activation in its prologue instead of this layer's forward_train; the
// backward planes are what the layer before applies to the gradient it loads, when it
// takes this layer's backward_input (depthwise.wgsl's output_grad).
@group(0) @binding(7) var<storage, read_write> stats: array<Elem>;
// Two-stage reduction scratch: two [chunks, channels] planes.
@group(0) @binding(8) var<storage, read_write> partials: array<Elem>;
@group(0) @binding(11) var<storage, read_write> grad_gamma: array<Elem>;
@group(0) @binding(12) var<storage, read_write> grad_beta: array<Elem>;
// backward_finalize_with_weight_sums: a neighbouring op's weight-gradient partials
// [parts][weight_vec4s] and the gradient they sum to (reduce.wgsl's sum_partials4).
@group(0) @binding(13) var<storage, read> weight_partials: array<vec4<f32>>;
@group(0) @binding(14) var<storage, read_write> weight_grad: array<vec4<f32>>;

// Inference form: normalise with the running statistics. The per-channel scale/shift is
// recomputed per element rather than stored, so the trained parameters stay the only state.
@compute @workgroup_size(WG_SIZE)
fn forward_inference(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.rows * groups() {
        return;
    }
    let ch = index % groups();
    let scale = gamma[ch] * inverseSqrt(running_var[ch] + p.eps);
    let shift = beta[ch] - running_mean[ch] * scale;
    set_output(index, activate_elem(input_at(index) * scale + shift, p.act));
}

// Channel groups (Elems) per row.
fn groups() -> u32 {
    return p.channels / CHANNELS_PER_ELEM;
}

// Where chunk `chunk`'s first partial of channel group `c` lies: each chunk keeps its two
// partials (mean and M2, or the two gradient sums) side by side, [chunk][2][groups], so a
// run of chunks is one contiguous range (a plan that splits the batch binds it at an
// offset).
fn partial_at(chunk: u32, c: u32) -> u32 {
    return 2u * chunk * groups() + c;
}

fn chunk_rows(chunk: u32) -> vec2<u32> {
    let first = chunk * p.rows_per_chunk;
    return vec2<u32>(first, min(first + p.rows_per_chunk, p.rows));
}

// Training stage 1: mean and sum of squared deviations of each chunk, in one pass by
// Welford's update (as stable as two passes, unlike a sum of squares, and each value is
// loaded once: loads are what this pass costs on lavapipe).
@compute @workgroup_size(WG_SIZE)
fn stats_partial(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.chunks * groups() {
        return;
    }
    let c = index % groups();
    let range = chunk_rows(index / groups());
    var mean = Elem(0.0);
    var m2 = Elem(0.0);
    for (var r = range.x; r < range.y; r++) {
        let x = input_at(r * groups() + c);
        let d = x - mean;
        mean += d * (1.0 / f32(r - range.x + 1u));
        m2 += d * (x - mean);
    }
    let at = partial_at(index / groups(), c);
    partials[at] = mean;
    partials[at + groups()] = m2;
}

// Training stage 2: merge the chunks in order (Chan et al.'s pairwise update), store
// mean and 1/sqrt(var + eps), and move the running statistics towards the batch's with
// `momentum` as the weight of the new value (PyTorch's convention; the running variance
// uses the unbiased estimate, as PyTorch does).
@compute @workgroup_size(WG_SIZE)
fn stats_finalize(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = linear_index(gid, nwg);
    if c >= groups() {
        return;
    }
    var count = 0.0;
    var mean = Elem(0.0);
    var m2 = Elem(0.0);
    for (var s = 0u; s < p.chunks; s++) {
        let range = chunk_rows(s);
        let n_b = f32(range.y - range.x);
        let mean_b = partials[partial_at(s, c)];
        let m2_b = partials[partial_at(s, c) + groups()];
        let total = count + n_b;
        let delta = mean_b - mean;
        mean += delta * n_b / total;
        m2 += m2_b + delta * delta * count * n_b / total;
        count = total;
    }
    let variance = m2 / count;
    stats[2u * groups() + c] = mean;
    stats[3u * groups() + c] = inverseSqrt(variance + p.eps);
    let affine = batch_affine(c);
    stats[c] = affine.scale;
    stats[groups() + c] = affine.shift;
    let unbiased = select(variance, m2 / (count - 1.0), count > 1.0);
    running_mean[c] = (1.0 - p.momentum) * running_mean[c] + p.momentum * mean;
    running_var[c] = (1.0 - p.momentum) * running_var[c] + p.momentum * unbiased;
}

// Training stage 3: normalise with the batch statistics.
// Rows of one channel per invocation in the element-wise passes: the per-channel values
// are loaded once for all of them (32 rather than 8 took the 14 backward_input passes of a
// 224/8 training step from 23.1 to 17.9 ms with activation_grad's select; performance.md,
// 2026-12-05, late night).
const ROWS_PER_INVOCATION: u32 = 32u;

// (channel, first row, end row) of an element-wise invocation, or none past the end.
fn row_block(index: u32) -> vec3<u32> {
    let c = index % groups();
    let first = (index / groups()) * ROWS_PER_INVOCATION;
    return vec3<u32>(c, first, min(first + ROWS_PER_INVOCATION, p.rows));
}

@compute @workgroup_size(WG_SIZE)
fn forward_train(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let block = row_block(linear_index(gid, nwg));
    let c = block.x;
    if block.y >= p.rows {
        return;
    }
    let affine = batch_affine(c);
    for (var row = block.y; row < block.z; row++) {
        let index = row * groups() + c;
        set_output(index, activate_elem(input_at(index) * affine.scale + affine.shift, p.act));
    }
}

// Normalisation and BN parameters as one scale and shift per channel: the forward pass and
// the backward passes (which recompute the pre-activation) share the exact arithmetic.
struct Affine {
    scale: Elem, shift: Elem,
}

fn batch_affine(c: u32) -> Affine {
    let scale = gamma[c] * stats[3u * groups() + c];
    return Affine(scale, beta[c] - stats[2u * groups() + c] * scale);
}

// Gradient through the activation at pre-activation z = x * scale + shift: ReLU passes
// where z > 0, ReLU6 where 0 < z < 6. Recomputing z from the input the backward pass reads
// anyway saves reading the output. Computed and selected, not switched, as common.wgsl's
// activation_grad4 (lavapipe runs a switch's every case as masked code).
fn activation_grad(dy: Elem, x: Elem, affine: Affine) -> Elem {
    let z = x * affine.scale + affine.shift;
    let relu = select(Elem(0.0), dy, z > Elem(0.0));
    let relu6 = select(Elem(0.0), dy, (z > Elem(0.0)) & (z < Elem(6.0)));
    return select(select(dy, relu, p.act == ACT_RELU), relu6, p.act == ACT_RELU6);
}

// Backward stage 1: per chunk, sum dz and dz * xhat (dz = gradient before the activation).
@compute @workgroup_size(WG_SIZE)
fn backward_partial(@builtin(global_invocation_id) gid: vec3<u32>,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.chunks * groups() {
        return;
    }
    let c = index % groups();
    let range = chunk_rows(index / groups());
    let mean = stats[2u * groups() + c];
    let inv_std = stats[3u * groups() + c];
    let affine = batch_affine(c);
    var sum_dz = Elem(0.0);
    var sum_dz_xhat = Elem(0.0);
    for (var r = range.x; r < range.y; r++) {
        let i = r * groups() + c;
        let x = input_at(i);
        let dz = activation_grad(grad_output_at(i), x, affine);
        sum_dz += dz;
        sum_dz_xhat += dz * (x - mean);
    }
    sum_dz_xhat *= inv_std;
    let at = partial_at(index / groups(), c);
    partials[at] = sum_dz;
    partials[at + groups()] = sum_dz_xhat;
}

// Backward stage 2: dbeta = sum dz, dgamma = sum dz * xhat, summed over chunks in order, and
// the scale of the input gradient (stats' last plane).
@compute @workgroup_size(WG_SIZE)
fn backward_finalize(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    finalize_backward_sums(linear_index(gid, nwg));
}

// backward_finalize and, in the workgroups after `finalize_workgroups`, the sums of a
// weight gradient's partials that are independent of it (those of the op before this batch
// norm in the backward pass): two one-workgroup reductions of a step in one dispatch, so
// they share one start and both of a CPU's threads. The same sums in the same order as the
// two dispatches would make.
@compute @workgroup_size(WG_SIZE)
fn backward_finalize_with_weight_sums(@builtin(workgroup_id) wg: vec3<u32>,
                                      @builtin(local_invocation_index) local: u32) {
    if wg.x < p.finalize_workgroups {
        finalize_backward_sums(wg.x * WG_SIZE + local);
    } else {
        sum_weight_partials((wg.x - p.finalize_workgroups) * WG_SIZE + local);
    }
}

// weight_grad[i] = sum over the partials s of weight_partials[s][i], in order.
fn sum_weight_partials(i: u32) {
    if i >= p.weight_vec4s {
        return;
    }
    var sum = vec4<f32>(0.0);
    for (var s = 0u; s < p.weight_parts; s++) {
        sum += weight_partials[s * p.weight_vec4s + i];
    }
    weight_grad[i] = sum;
}

fn finalize_backward_sums(c: u32) {
    if c >= groups() {
        return;
    }
    var sum_dz = Elem(0.0);
    var sum_dz_xhat = Elem(0.0);
    for (var s = 0u; s < p.chunks; s++) {
        sum_dz += partials[partial_at(s, c)];
        sum_dz_xhat += partials[partial_at(s, c) + groups()];
    }
    stats[4u * groups() + c] = sum_dz;
    stats[5u * groups() + c] = sum_dz_xhat;
    stats[6u * groups() + c] = gamma[c] * stats[3u * groups() + c] / f32(p.rows);
    grad_beta[c] = sum_dz;
    grad_gamma[c] = sum_dz_xhat;
}

// Backward stage 3: dx = gamma / sqrt(var + eps) / M * (M dz - sum dz - xhat sum dz*xhat).
@compute @workgroup_size(WG_SIZE)
fn backward_input(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let block = row_block(linear_index(gid, nwg));
    let c = block.x;
    if block.y >= p.rows {
        return;
    }
    let mean = stats[2u * groups() + c];
    let inv_std = stats[3u * groups() + c];
    let sum_dz = stats[4u * groups() + c];
    let sum_dz_xhat = stats[5u * groups() + c];
    let m = f32(select(p.rows, p.batch_rows, p.batch_rows != 0u));
    let grad_scale = stats[6u * groups() + c];
    let affine = batch_affine(c);
    for (var row = block.y; row < block.z; row++) {
        let index = row * groups() + c;
        let x = input_at(index);
        let xhat = (x - mean) * inv_std;
        let dz = activation_grad(grad_output_at(index), x, affine);
        set_grad_input(index, grad_scale * (m * dz - sum_dz - xhat * sum_dz_xhat));
    }
}
