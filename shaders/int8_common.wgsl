// Shared by the int8 shaders (issue 21's scheme), prepended after common.wgsl. Activations
// are NHWC int8, four channels per u32 (byte 0 the lowest, as pack4xI8 writes them).

// f32(acc) rounded to nearest, ties to even: below 2^24 the conversion is exact, and above
// it WGSL lets an implementation round either way, while the scheme (and the CPU reference's
// `as f32`) rounds to even. So the rounding is done here, in integers: keep the top 24
// significant bits, round the rest half to even, scale back by a power of two (exact).
fn exact_f32(acc: i32) -> f32 {
    let bits = bitcast<u32>(acc);
    // |acc| as u32, wrapping: i32's minimum becomes 2^31.
    let magnitude = select(bits, 0u - bits, acc < 0);
    if magnitude < 0x1000000u {
        return f32(acc);
    }
    let shift = 8u - countLeadingZeros(magnitude);
    let kept = magnitude >> shift;
    let rest = magnitude & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    let up = rest > half || (rest == half && (kept & 1u) == 1u);
    let rounded = f32(kept + select(0u, 1u, up)) * f32(1u << shift);
    return select(rounded, -rounded, acc < 0);
}

// The one rounding of the scheme: clamp(round_half_even(f32(acc) * m) + z, lo, hi). One
// f32 multiply (no fma: the clamp stands between it and the add). A product past +-4096
// saturates whatever z, lo and hi are (all in [-128, 127], checked on load), so only
// |t| <= 4096 is rounded: adding 1.5 * 2^23 leaves a sum whose last place is 1, so the add
// rounds t to an integer, ties to even (as the multiply rounds, and as the host's quantizer
// does the same), and that integer is the low bits of the sum's encoding. On lavapipe this
// takes a quarter of the int8 depthwise layers' time off what round() cost.
const ROUNDING_BIAS: f32 = 12582912.0;
const ROUNDING_BIAS_BITS: i32 = 0x4B400000;

fn requantize(acc: i32, m: f32, z: i32, lo: i32, hi: i32) -> i32 {
    let t = clamp(exact_f32(acc) * m, -4096.0, 4096.0);
    let rounded = bitcast<i32>(t + ROUNDING_BIAS) - ROUNDING_BIAS_BITS;
    return clamp(rounded, lo - z, hi - z) + z;
}

fn requantize4(acc: vec4<i32>, m: vec4<f32>, z: i32, lo: i32, hi: i32) -> vec4<i32> {
    return vec4<i32>(requantize(acc.x, m.x, z, lo, hi), requantize(acc.y, m.y, z, lo, hi),
                     requantize(acc.z, m.z, z, lo, hi), requantize(acc.w, m.w, z, lo, hi));
}

// A word of four int8 values, each z (padding that reads as real 0).
fn splat_i8(z: i32) -> u32 {
    return pack4xI8(vec4<i32>(z));
}

// y where `keep`, else z, lane by lane: a select of whole integer vectors becomes GLSL's
// integer mix(), which GLSL before 4.50 lacks without an extension.
fn keep_or(y: vec4<i32>, keep: vec4<bool>, z: i32) -> vec4<i32> {
    return vec4<i32>(select(z, y.x, keep.x), select(z, y.y, keep.y), select(z, y.z, keep.z),
                     select(z, y.w, keep.w));
}
