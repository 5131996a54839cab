// Replaces depthwise_vec4.wgsl's words block (between its WORDS markers), after
// words64.wgsl: the activations and their gradients read and written as pairs of 64-bit
// words, the same 16 bytes per vec4 (the `words64` depthwise kernel, offered where the
// device has 64-bit integers).

@group(0) @binding(1) var<storage, read> input_words: array<vec2<u64>>;
@group(0) @binding(3) var<storage, read_write> output_words: array<vec2<u64>>;
@group(0) @binding(4) var<storage, read> grad_output_words: array<vec2<u64>>;
@group(0) @binding(5) var<storage, read_write> grad_input_words: array<vec2<u64>>;
@group(0) @binding(11) var<storage, read> raw_output_words: array<vec2<u64>>;

fn input4_at(i: u32) -> vec4<f32> {
    return floats4(input_words[i]);
}

fn set_output4(i: u32, value: vec4<f32>) {
    output_words[i] = words2(value);
}

fn grad_output4_at(i: u32) -> vec4<f32> {
    return floats4(grad_output_words[i]);
}

fn set_grad_input4(i: u32, value: vec4<f32>) {
    grad_input_words[i] = words2(value);
}

fn raw_output4_at(i: u32) -> vec4<f32> {
    return floats4(raw_output_words[i]);
}
