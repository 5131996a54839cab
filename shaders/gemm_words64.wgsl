// Replaces gemm_vec4.wgsl's words block (between its WORDS markers) in the subgroup GEMM's
// module: A, B, C and the sums' input read and written as pairs of 64-bit words, the same
// 16 bytes per vec4. lavapipe loads and stores storage lane by lane and word by word
// wherever LLVM has no fast gather for the CPU (AVX2 without AVX-512, as on AMD's Zen 1-3),
// so two 64-bit words per vec4 cost about half of four 32-bit ones (performance.md,
// 2026-12-07). Needs `wgpu::Features::SHADER_INT64`.

@group(0) @binding(1) var<storage, read> a_words: array<vec2<u64>>;
@group(0) @binding(2) var<storage, read> b_words: array<vec2<u64>>;
@group(0) @binding(4) var<storage, read_write> c_words: array<vec2<u64>>;
@group(0) @binding(8) var<storage, read> sums_input_words: array<vec2<u64>>;

const LOW_WORD: u64 = 0xfffffffflu;

// The four floats whose bits the two words hold, lowest bytes first (as stored).
fn floats4(w: vec2<u64>) -> vec4<f32> {
    return bitcast<vec4<f32>>(vec4<u32>(u32(w.x & LOW_WORD), u32(w.x >> 32u),
                                        u32(w.y & LOW_WORD), u32(w.y >> 32u)));
}

// floats4's inverse.
fn words2(v: vec4<f32>) -> vec2<u64> {
    let bits = vec4<u64>(bitcast<vec4<u32>>(v));
    return vec2<u64>(bits.x | (bits.y << 32u), bits.z | (bits.w << 32u));
}

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
