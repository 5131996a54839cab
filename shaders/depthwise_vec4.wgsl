// Replaces the element-access block of depthwise.wgsl (between its ACCESS markers) when the
// channel count is a multiple of 4, so that every 4-channel group is one aligned vec4. A
// software rasteriser such as lavapipe runs one loop over the lanes per load or store
// instruction, whatever its width, so a vec4 access costs about what a scalar one does:
// 4 channels for the price of 1. The kernels never touch the scalar views, so each
// binding is used through one type only.

// WORDS BEGIN
// The activations and their gradients as vec4s of floats (depthwise_words64.wgsl moves
// them as 64-bit words instead).
@group(0) @binding(1) var<storage, read> input4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> output4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> grad_output4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> grad_input4: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read> raw_output4: array<vec4<f32>>;

fn input4_at(i: u32) -> vec4<f32> {
    return input4[i];
}

fn set_output4(i: u32, value: vec4<f32>) {
    output4[i] = value;
}

fn grad_output4_at(i: u32) -> vec4<f32> {
    return grad_output4[i];
}

fn set_grad_input4(i: u32, value: vec4<f32>) {
    grad_input4[i] = value;
}

fn raw_output4_at(i: u32) -> vec4<f32> {
    return raw_output4[i];
}
// WORDS END
@group(0) @binding(2) var<storage, read> weight4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> partials4: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> bias4: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> prologue4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read_write> input_partials4: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> output_partials4: array<vec4<f32>>;
@group(0) @binding(12) var<storage, read> output_norm4: array<vec4<f32>>;

fn load_prologue(i: u32, mask: vec4<bool>) -> vec4<f32> {
    return prologue4[i / 4u];
}

// Loads and stores of one 4-channel group, given the element index of its first channel,
// as whole vec4s: valid when the channel count is a multiple of 4.
fn load_raw_input(i: u32, mask: vec4<bool>) -> vec4<f32> {
    return input4_at(i / 4u);
}

fn load_input(i: u32, mask: vec4<bool>) -> vec4<f32> {
    return prologued(input4_at(i / 4u));
}

fn load_weight(i: u32, mask: vec4<bool>) -> vec4<f32> {
    return weight4[i / 4u];
}

fn load_output_norm(i: u32, mask: vec4<bool>) -> vec4<f32> {
    return output_norm4[i / 4u];
}

fn load_grad_output(i: u32, mask: vec4<bool>) -> vec4<f32> {
    let dy = grad_output4_at(i / 4u);
    if p.output_grad == 0u {
        return dy;
    }
    return output_bn_grad(dy, raw_output4_at(i / 4u));
}

fn load_bias(c0: u32, mask: vec4<bool>) -> vec4<f32> {
    if p.has_bias == 0u {
        return vec4<f32>(0.0);
    }
    return bias4[c0 / 4u];
}

// Output channels c0..c0+3 at element `base`, after the fused bias and activation.
fn store_output(base: u32, shift: vec4<f32>, sum: vec4<f32>, mask: vec4<bool>) {
    set_output4(base / 4u, activate4(sum + shift, p.act));
}

fn store_grad_input(base: u32, sum: vec4<f32>, mask: vec4<bool>) {
    set_grad_input4(base / 4u, sum);
}

fn store_partial(base: u32, sum: vec4<f32>, mask: vec4<bool>) {
    partials4[base / 4u] = sum;
}

fn store_input_partial(base: u32, sum: vec4<f32>, mask: vec4<bool>) {
    input_partials4[base / 4u] = sum;
}

fn store_output_partial(base: u32, value: vec4<f32>, mask: vec4<bool>) {
    output_partials4[base / 4u] = value;
}
