// Shared by the int8 shaders (issue 21's scheme), prepended after common.wgsl. Activations
// are NHWC int8, four channels per u32 (byte 0 the lowest, as pack4xI8 writes them).

// f32(acc) rounded to nearest, ties to even: below 2^24 the conversion is exact, and above
// it WGSL lets an implementation round either way, while the scheme (and the CPU reference's
// `as f32`) rounds to even. So acc is split into its multiple of 256 (at most 24
// significant bits) and the rest (0 to 255), each converted exactly, and one f32 add rounds
// their sum, to even as the scheme's multiply rounds. No branch: on lavapipe a branch on
// the magnitude ran both sides for every value.
fn exact_f32(acc: i32) -> f32 {
    return f32(acc & -256) + f32(acc & 255);
}

// The one rounding of the scheme: clamp(round_half_even(f32(acc) * m) + z, lo, hi). One
// f32 multiply (no fma: the clamp stands between it and the add). Clamping the product to
// [lo - z, hi - z] before rounding gives the same integer as clamping after (the bounds
// are integers, which rounding keeps, and rounding never crosses one), and leaves
// |t| <= 255 (z, lo and hi are in [-128, 127], checked on load): adding 1.5 * 2^23 then
// leaves a sum whose last place is 1, so the add rounds t to an integer, ties to even (as
// the multiply rounds, and as the host's quantizer does the same), and that integer is the
// low bits of the sum's encoding. On lavapipe this takes about a third of the int8
// depthwise layers' time off what round() cost.
const ROUNDING_BIAS: f32 = 12582912.0;
const ROUNDING_BIAS_BITS: i32 = 0x4B400000;

fn requantize(acc: i32, m: f32, z: i32, lo: i32, hi: i32) -> i32 {
    let t = clamp(exact_f32(acc) * m, f32(lo - z), f32(hi - z));
    return bitcast<i32>(t + ROUNDING_BIAS) - ROUNDING_BIAS_BITS + z;
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
