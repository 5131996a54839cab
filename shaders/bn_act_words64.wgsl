// Replaces bn_act.wgsl's words block (between its WORDS markers) in its vec4 form, after
// words64.wgsl: the activations and their gradients read and written as pairs of 64-bit
// words, the same 16 bytes per vec4 (the `words64` batch-norm kernel, offered where the
// device has 64-bit integers). The per-channel planes stay vec4s.

@group(0) @binding(1) var<storage, read> input_words: array<vec2<u64>>;
@group(0) @binding(6) var<storage, read_write> output_words: array<vec2<u64>>;
@group(0) @binding(9) var<storage, read> grad_output_words: array<vec2<u64>>;
@group(0) @binding(10) var<storage, read_write> grad_input_words: array<vec2<u64>>;

fn input_at(i: u32) -> Elem {
    return floats4(input_words[i]);
}

fn set_output(i: u32, value: Elem) {
    output_words[i] = words2(value);
}

fn grad_output_at(i: u32) -> Elem {
    return floats4(grad_output_words[i]);
}

fn set_grad_input(i: u32, value: Elem) {
    grad_input_words[i] = words2(value);
}
