//! The integer CPU reference of every int8 op (issue 21's scheme): the oracle the int8
//! kernels must match bit for bit. Written from the definitions, not the kernels' folded
//! forms: accumulators sum `(q_x - z_x) * q_w` explicitly (in i64, then wrapped to i32 as
//! the kernels' i32 arithmetic wraps), padded taps are skipped (they contribute
//! `(z_x - z_x) * w = 0`), and requantization converts to an integer before it clamps.
//!
//! Tensors are unpacked: NHWC `i8` with their real channel counts, weights in the float
//! layouts (stem `[KH, KW, Cin, Cout]`, depthwise `[KH, KW, C]`, pointwise `[Cin, Cout]`,
//! dense `[in, out]`). The packing, the bias fold, the multipliers and the activation
//! bounds are re-exported from `ops::int8`, where the plans that load int8 models find them.

use super::forward::taps;
pub use crate::ops::int8::{
    fold_bias, logit_scale, pack_depthwise_weights, pack_gemm_weights, pack_i8x4, pack_rows,
    pool_multiplier, requant_multiplier, unpack_i8x4, unpack_rows, words_for, Int8Output,
};
use crate::ops::{Int8Window, Window};

/// The scheme's one rounding: `clamp(round_half_even(f32(acc) * M) + z, lo, hi)`. `acc as
/// f32` rounds to nearest, ties to even, as IEEE conversion does; the product is one f32
/// multiply (Rust never fuses it); the rounded value becomes an integer (saturating, so
/// any out-of-range product stays out of range) before the zero point and the clamp.
pub fn requantize(acc: i32, multiplier: f32, output: Int8Output) -> i8 {
    let scaled = (acc as f32 * multiplier).round_ties_even() as i64;
    scaled
        .saturating_add(output.zero_point as i64)
        .clamp(output.lo as i64, output.hi as i64) as i8
}

/// `requantize` of `[.., C]` accumulators, channel c with `multipliers[c]`.
pub fn requantize_channels(acc: &[i32], multipliers: &[f32], output: Int8Output) -> Vec<i8> {
    let channels = multipliers.len();
    acc.iter()
        .enumerate()
        .map(|(i, &a)| requantize(a, multipliers[i % channels], output))
        .collect()
}

/// The classifier's logits: `f32(acc[c]) * scales[c]` (scales `s_x * s_w[c]`).
pub fn dequantize_logits(acc: &[i32], scales: &[f32]) -> Vec<f32> {
    let channels = scales.len();
    acc.iter()
        .enumerate()
        .map(|(i, &a)| a as f32 * scales[i % channels])
        .collect()
}

/// A sum as the kernels' i32 accumulator holds it (two's complement, wrapping).
fn wrap(sum: i64) -> i32 {
    sum as i32
}

/// `[rows, k] x [k, n]` accumulators: `bias[c] + sum_k (x - z_x) * w[k, c]`, for
/// pointwise convolution (rows = pixels, weights `[Cin, Cout]`) and dense (`[in, out]`).
pub fn gemm_acc(input: &[i8], k: usize, input_zero: i32, weight: &[i8], bias: &[i32]) -> Vec<i32> {
    let n = bias.len();
    let rows = input.len().checked_div(k).unwrap_or(0);
    let mut out = Vec::with_capacity(rows * n);
    for row in input.chunks(k.max(1)).take(rows) {
        for (c, &b) in bias.iter().enumerate() {
            let mut sum = b as i64;
            for (i, &x) in row.iter().enumerate() {
                sum += (x as i64 - input_zero as i64) * weight[i * n + c] as i64;
            }
            out.push(wrap(sum));
        }
    }
    out
}

/// Standard convolution accumulators (the stem), weights `[KH, KW, Cin, Cout]`; returns
/// them `[N, OH, OW, Cout]` with that shape.
pub fn conv2d_acc(
    input: &[i8],
    shape: [usize; 4],
    window: Int8Window,
    weight: &[i8],
    bias: &[i32],
) -> (Vec<i32>, [usize; 4]) {
    let [n, h, w, cin] = shape;
    let (k, cout) = (window.kernel, bias.len());
    let geometry = Window::of(&shape, k, window.stride, window.padding);
    let (oh, ow) = (geometry.out_h, geometry.out_w);
    let z = window.input_zero as i64;
    let mut out = Vec::with_capacity(n * oh * ow * cout);
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for (co, &bias_c) in bias.iter().enumerate() {
                    let mut sum = bias_c as i64;
                    for (ky, kx, iy, ix) in taps((oy, ox), k, window.stride, geometry, (h, w)) {
                        for ci in 0..cin {
                            let x = input[((b * h + iy) * w + ix) * cin + ci] as i64;
                            let wv = weight[((ky * k + kx) * cin + ci) * cout + co] as i64;
                            sum += (x - z) * wv;
                        }
                    }
                    out.push(wrap(sum));
                }
            }
        }
    }
    (out, [n, oh, ow, cout])
}

/// Depthwise convolution accumulators, weights `[KH, KW, C]`; returns them
/// `[N, OH, OW, C]` with that shape.
pub fn depthwise_acc(
    input: &[i8],
    shape: [usize; 4],
    window: Int8Window,
    weight: &[i8],
    bias: &[i32],
) -> (Vec<i32>, [usize; 4]) {
    let [n, h, w, channels] = shape;
    let k = window.kernel;
    let geometry = Window::of(&shape, k, window.stride, window.padding);
    let (oh, ow) = (geometry.out_h, geometry.out_w);
    let z = window.input_zero as i64;
    let mut out = Vec::with_capacity(n * oh * ow * channels);
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for (c, &bias_c) in bias.iter().enumerate() {
                    let mut sum = bias_c as i64;
                    for (ky, kx, iy, ix) in taps((oy, ox), k, window.stride, geometry, (h, w)) {
                        let x = input[((b * h + iy) * w + ix) * channels + c] as i64;
                        sum += (x - z) * weight[(ky * k + kx) * channels + c] as i64;
                    }
                    out.push(wrap(sum));
                }
            }
        }
    }
    (out, [n, oh, ow, channels])
}

/// Global average pooling, `[N, H, W, C] -> [N, C]`: `sum_hw (q - z_in)`, requantized
/// with `multiplier` (`s_in / (s_out * H*W)`) to the output's zero point, no activation.
pub fn global_avg_pool(
    input: &[i8],
    shape: [usize; 4],
    input_zero: i32,
    multiplier: f32,
    output_zero: i32,
) -> Vec<i8> {
    let [n, h, w, c] = shape;
    let output = Int8Output::linear(output_zero);
    let mut out = Vec::with_capacity(n * c);
    for b in 0..n {
        for ch in 0..c {
            let sum: i64 = (0..h * w)
                .map(|p| input[(b * h * w + p) * c + ch] as i64 - input_zero as i64)
                .sum();
            out.push(requantize(wrap(sum), multiplier, output));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Activation, Padding};
    use rand::{Rng, SeedableRng};

    fn random_i8(rng: &mut impl Rng, len: usize, lo: i8, hi: i8) -> Vec<i8> {
        (0..len).map(|_| rng.random_range(lo..=hi)).collect()
    }

    #[test]
    fn requantization_rounds_half_to_even() {
        let out = Int8Output::linear(0);
        let halves = [(5, 2), (7, 4), (-5, -2), (-7, -4), (1, 0), (3, 2), (-1, 0)];
        for (acc, expected) in halves {
            assert_eq!(requantize(acc, 0.5, out), expected, "{acc} * 0.5");
        }
        // The zero point is added after rounding: 2.5 -> 2, then + 3.
        assert_eq!(requantize(5, 0.5, Int8Output::linear(3)), 5);
    }

    #[test]
    fn requantization_clamps_to_the_activation_bounds() {
        let linear = Int8Output::linear(-10);
        assert_eq!(requantize(1_000_000, 1.0, linear), 127);
        assert_eq!(requantize(-1_000_000, 1.0, linear), -128);
        assert_eq!(requantize(i32::MIN, 1e30, linear), -128);
        let relu = Int8Output::new(Activation::Relu, 0.1, -10);
        assert_eq!(requantize(-50, 1.0, relu), -10);
        assert_eq!(requantize(50, 1.0, relu), 40);
        // ReLU6 at scale 0.1: real 6 is 60 steps above z = -10.
        let relu6 = Int8Output::new(Activation::Relu6, 0.1, -10);
        assert_eq!((relu6.lo, relu6.hi), (-10, 50));
        assert_eq!(requantize(100, 1.0, relu6), 50);
        assert_eq!(requantize(59, 1.0, relu6), 49);
    }

    #[test]
    fn accumulators_beyond_two_to_the_24_round_to_even_before_scaling() {
        // 2^24 + 1 is halfway between 2^24 and 2^24 + 2: even wins, 2^24.
        let out = Int8Output::linear(0);
        assert_eq!(((1 << 24) + 1) as f32, 16_777_216.0);
        assert_eq!(((1 << 24) + 3) as f32, 16_777_220.0);
        // M = 2.5 / 2^24: f32(2^24 + 1) * M is exactly 2.5, which rounds to 2; had the
        // conversion rounded up (2^24 + 2), the product would round to 3.
        let m = 5.0 * 2f32.powi(-25);
        assert_eq!(requantize((1 << 24) + 1, m, out), 2);
        assert_eq!(requantize(-(1 << 24) - 1, m, out), -2);
        assert_eq!(requantize((1 << 24) + 3, m, out), 3);
    }

    /// The folded form the kernels compute: `bias_eff + sum q_x * q_w` over every tap,
    /// padded taps reading the zero point.
    fn depthwise_folded(
        input: &[i8],
        shape: [usize; 4],
        window: Int8Window,
        weight: &[i8],
        bias: &[i32],
    ) -> Vec<i32> {
        let [n, h, w, c] = shape;
        let k = window.kernel;
        let g = Window::of(&shape, k, window.stride, window.padding);
        let bias_eff = fold_bias(bias, weight, window.input_zero);
        let mut out = Vec::new();
        for b in 0..n {
            for oy in 0..g.out_h {
                for ox in 0..g.out_w {
                    for ch in 0..c {
                        let mut sum = bias_eff[ch];
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy = (oy * window.stride + ky).checked_sub(g.pad_top);
                                let ix = (ox * window.stride + kx).checked_sub(g.pad_left);
                                let x = match (iy, ix) {
                                    (Some(iy), Some(ix)) if iy < h && ix < w => {
                                        input[((b * h + iy) * w + ix) * c + ch] as i32
                                    }
                                    _ => window.input_zero,
                                };
                                let wv = weight[(ky * k + kx) * c + ch] as i32;
                                sum = sum.wrapping_add(x * wv);
                            }
                        }
                        out.push(sum);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn folding_the_zero_point_into_the_bias_is_exact_at_the_borders() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        for (zero, stride, padding) in [
            (-128, 1, Padding::Symmetric),
            (37, 2, Padding::Symmetric),
            (-5, 2, Padding::Same),
            (127, 1, Padding::Same),
        ] {
            let shape = [2, 5, 7, 3];
            let input = random_i8(&mut rng, 2 * 5 * 7 * 3, -128, 127);
            let weight = random_i8(&mut rng, 9 * 3, -127, 127);
            let bias: Vec<i32> = (0..3).map(|_| rng.random_range(-5000..5000)).collect();
            let window = Int8Window {
                kernel: 3,
                stride,
                padding,
                input_zero: zero,
            };
            let (explicit, _) = depthwise_acc(&input, shape, window, &weight, &bias);
            let folded = depthwise_folded(&input, shape, window, &weight, &bias);
            assert_eq!(explicit, folded, "z = {zero}, stride {stride}, {padding}");
        }
    }

    #[test]
    fn stem_and_gemm_agree_on_a_1x1_convolution() {
        // A 1x1 stride-1 convolution is the GEMM over pixels.
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let (cin, cout) = (5, 3);
        let input = random_i8(&mut rng, 2 * 3 * 3 * cin, -128, 127);
        let weight = random_i8(&mut rng, cin * cout, -127, 127);
        let bias = vec![7, -9, 100];
        let window = Int8Window {
            kernel: 1,
            stride: 1,
            padding: Padding::Symmetric,
            input_zero: 12,
        };
        let (conv, shape) = conv2d_acc(&input, [2, 3, 3, cin], window, &weight, &bias);
        assert_eq!(shape, [2, 3, 3, cout]);
        assert_eq!(conv, gemm_acc(&input, cin, 12, &weight, &bias));
    }

    #[test]
    fn pooling_averages_around_the_zero_points() {
        // One image, 2 pixels, 1 channel: (10 - 4) + (20 - 4) = 22; M = 1/2 -> 11 + z_out.
        let pooled = global_avg_pool(&[10, 20], [1, 1, 2, 1], 4, 0.5, -3);
        assert_eq!(pooled, vec![8]);
    }
}
