// Replaces optim.wgsl's words block (between its WORDS markers), after words64.wgsl: the
// parameters, gradients and state read and written as pairs of 64-bit words, the same 16
// bytes per vec4 (the `words64` update, run where the device has 64-bit integers).

@group(0) @binding(2) var<storage, read_write> param_words: array<vec2<u64>>;
@group(0) @binding(3) var<storage, read> grad_words: array<vec2<u64>>;
@group(0) @binding(4) var<storage, read_write> state0_words: array<vec2<u64>>;
@group(0) @binding(5) var<storage, read_write> state1_words: array<vec2<u64>>;

fn param_at(i: u32) -> vec4<f32> {
    return floats4(param_words[i]);
}

fn set_param(i: u32, value: vec4<f32>) {
    param_words[i] = words2(value);
}

fn grad_at(i: u32) -> vec4<f32> {
    return floats4(grad_words[i]);
}

fn state0_at(i: u32) -> vec4<f32> {
    return floats4(state0_words[i]);
}

fn set_state0(i: u32, value: vec4<f32>) {
    state0_words[i] = words2(value);
}

fn state1_at(i: u32) -> vec4<f32> {
    return floats4(state1_words[i]);
}

fn set_state1(i: u32, value: vec4<f32>) {
    state1_words[i] = words2(value);
}
