// Prepended to the words64 access blocks (gemm_, depthwise_, optim_ and bn_act_words64.wgsl): four
// floats as two 64-bit words and back. lavapipe loads and stores storage lane by lane and
// word by word wherever LLVM has no fast gather for the CPU (AVX2 without AVX-512, as on
// AMD's Zen 1-3), so moving a vec4 as two 64-bit words costs about half of four 32-bit
// ones (performance.md, 2026-12-07, morning). Needs `wgpu::Features::SHADER_INT64`.

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
