// Replaces gemm_vec4.wgsl's words block (between its WORDS markers) in the subgroup GEMM's
// module, after words64.wgsl: A, B, C and the sums' input read and written as pairs of
// 64-bit words, the same 16 bytes per vec4.

@group(0) @binding(1) var<storage, read> a_words: array<vec2<u64>>;
@group(0) @binding(2) var<storage, read> b_words: array<vec2<u64>>;
@group(0) @binding(4) var<storage, read_write> c_words: array<vec2<u64>>;
@group(0) @binding(8) var<storage, read> sums_input_words: array<vec2<u64>>;

fn a4_at(i: u32) -> vec4<f32> {
    return floats4(a_words[i]);
}

fn b4_at(i: u32) -> vec4<f32> {
    return floats4(b_words[i]);
}

fn c4_at(i: u32) -> vec4<f32> {
    return floats4(c_words[i]);
}

fn set_c4(i: u32, value: vec4<f32>) {
    c_words[i] = words2(value);
}

fn sums_input4_at(i: u32) -> vec4<f32> {
    return floats4(sums_input_words[i]);
}
