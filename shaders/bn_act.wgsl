// Batch normalisation followed by an activation, NHWC (channel fastest).

struct BnParams {
    total: u32, channels: u32, act: u32, eps: f32,
}

@group(0) @binding(0) var<uniform> p: BnParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> running_mean: array<f32>;
@group(0) @binding(5) var<storage, read> running_var: array<f32>;
@group(0) @binding(6) var<storage, read_write> output: array<f32>;

// Inference form: normalise with the running statistics. The per-channel scale/shift is
// recomputed per element rather than stored, so the trained parameters stay the only state.
@compute @workgroup_size(WG_SIZE)
fn forward_inference(@builtin(global_invocation_id) gid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.total {
        return;
    }
    let ch = index % p.channels;
    let scale = gamma[ch] * inverseSqrt(running_var[ch] + p.eps);
    let shift = beta[ch] - running_mean[ch] * scale;
    output[index] = activate(input[index] * scale + shift, p.act);
}
