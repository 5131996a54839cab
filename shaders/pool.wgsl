// Global average pooling: NHWC [N, H, W, C] -> [N, C].
//
// In training, the input may be the raw input of the batch-norm layer before this one
// (`prologue` != 0): the forward pass applies that batch norm and its activation as it
// loads, with the scale and shift its stats_finalize left (bn_act.wgsl).

struct PoolParams {
    // prologue: 0, or 1 + the activation code of the input's batch norm.
    batch: u32, pixels: u32, channels: u32, prologue: u32,
}

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;
@group(0) @binding(3) var<storage, read> grad_output: array<f32>;
@group(0) @binding(4) var<storage, read_write> grad_input: array<f32>;
// Batch-norm statistics of the input's producer, [7][channels].
@group(0) @binding(5) var<storage, read> prologue_stats: array<f32>;

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
