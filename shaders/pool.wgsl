// Global average pooling: NHWC [N, H, W, C] -> [N, C].
//
// In training, the input may be the raw input of the batch-norm layer before this one
// (`prologue` != 0): the forward pass applies that batch norm and its activation as it
// loads, with the scale and shift its stats_finalize left (bn_act.wgsl), and the backward
// pass may sum that batch norm's backward partials as it writes the input gradient
// (`backward_sums`).

struct PoolParams {
    // prologue: 0, or 1 + the activation code of the input's batch norm.
    batch: u32, pixels: u32, channels: u32, prologue: u32,
    // Rows (image, pixel) per chunk of the batch norm's partials (ops::REDUCE_CHUNK).
    rows_per_chunk: u32, _unused0: u32, _unused1: u32, _unused2: u32,
}

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;
@group(0) @binding(3) var<storage, read> grad_output: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_input: array<f32>;
// Batch-norm statistics of the input's producer, [7][channels]: scale, shift, mean and
// 1 / std first.
@group(0) @binding(5) var<storage, read> prologue_stats: array<f32>;
// That batch norm's backward partials, [chunks][2][channels], for backward_sums.
@group(0) @binding(6) var<storage, read_write> input_partials: array<f32>;

// One (n, c) per invocation, summing over the pixels in a fixed order (deterministic).
@compute @workgroup_size(WG_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.batch * p.channels {
        return;
    }
    let c = index % p.channels;
    let n = index / p.channels;
    var sum = 0.0;
    if p.prologue == 0u {
        for (var i = 0u; i < p.pixels; i++) {
            sum += input[(n * p.pixels + i) * p.channels + c];
        }
    } else {
        let scale = prologue_stats[c];
        let shift = prologue_stats[p.channels + c];
        for (var i = 0u; i < p.pixels; i++) {
            let x = input[(n * p.pixels + i) * p.channels + c];
            sum += activate(x * scale + shift, p.prologue - 1u);
        }
    }
    output[index] = sum / f32(p.pixels);
}

// Every pixel receives an equal share of its image's channel gradient.
@compute @workgroup_size(WG_SIZE)
fn backward(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.batch * p.pixels * p.channels {
        return;
    }
    let c = index % p.channels;
    let n = index / (p.pixels * p.channels);
    grad_input[index] = grad_output[n * p.channels + c] / f32(p.pixels);
}

// `backward`, one invocation per chunk of rows_per_chunk rows (image, pixel) and channel,
// also summing over the gradient it writes what the batch norm before this layer's
// backward_partial would (bn_act.wgsl): dz, the gradient before that batch norm's
// activation, and dz * xhat, term for term in the same order, so the partials are that
// pass's to the bit. It reads the batch norm's raw input and statistics.
@compute @workgroup_size(WG_SIZE)
fn backward_sums(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    let rows = p.batch * p.pixels;
    let chunks = (rows + p.rows_per_chunk - 1u) / p.rows_per_chunk;
    if index >= chunks * p.channels {
        return;
    }
    let c = index % p.channels;
    let chunk = index / p.channels;
    let scale = prologue_stats[c];
    let shift = prologue_stats[p.channels + c];
    let mean = prologue_stats[2u * p.channels + c];
    let inv_std = prologue_stats[3u * p.channels + c];
    var sum_dz = 0.0;
    var sum_dz_xhat = 0.0;
    let first = chunk * p.rows_per_chunk;
    for (var r = first; r < min(first + p.rows_per_chunk, rows); r++) {
        let i = r * p.channels + c;
        let dy = grad_output[(r / p.pixels) * p.channels + c] / f32(p.pixels);
        grad_input[i] = dy;
        let x = input[i];
        let z = vec4<f32>(x * scale + shift);
        let dz = activation_grad4(vec4<f32>(dy), z, p.prologue - 1u).x;
        sum_dz += dz;
        sum_dz_xhat += dz * (x - mean);
    }
    input_partials[2u * chunk * p.channels + c] = sum_dz;
    input_partials[(2u * chunk + 1u) * p.channels + c] = sum_dz_xhat * inv_std;
}
