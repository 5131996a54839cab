//! The int8 scheme's layout and load-time arithmetic (docs of issue 21, "The int8 scheme"):
//! four int8 values packed per `u32`, tensors packed along channels or along a weight's
//! reduction, the zero-point fold into the bias, the requantization multipliers and the
//! clamp bounds of each activation.
//!
//! These sit here, below the graph and the model, because a compiled quantized plan needs
//! them to load its parameters; `reference::int8` re-exports them beside the integer CPU
//! reference the kernels are tested against.

use super::Activation;

/// Four int8 values in one `u32`, little-endian: byte 0 holds `v[0]` (WGSL's `pack4xI8`).
pub fn pack_i8x4(v: [i8; 4]) -> u32 {
    u32::from_le_bytes(v.map(|x| x as u8))
}

/// The four int8 values of a packed word, byte 0 first (WGSL's `unpack4xI8`).
pub fn unpack_i8x4(word: u32) -> [i8; 4] {
    word.to_le_bytes().map(|b| b as i8)
}

/// Words holding `values` int8 values, four to a word.
pub fn words_for(values: usize) -> usize {
    values.div_ceil(4)
}

/// Rows of `len` int8 values packed four to a word, each row padded with `pad` to whole
/// words: `data` is `[rows][len]`, the result `[rows][words_for(len)]`. Activations are
/// such rows (one per pixel, `len` channels, padded with their zero point), and so are
/// weights once transposed to `[Cout][K]`. Rows of 1-3 values (grey and RGB pixels, the
/// network input) and of whole words have loops of their own: the general one took 1.6 ms
/// of an int8 batch of 8 RGB images at 224.
pub fn pack_rows(data: &[i8], len: usize, pad: i8) -> Vec<u32> {
    if len == 0 {
        return Vec::new();
    }
    if !data.len().is_multiple_of(len) {
        return pack_rows_with_remainder(data, len, pad);
    }
    match len {
        1 => pack_short_rows::<1>(data, pad),
        2 => pack_short_rows::<2>(data, pad),
        3 => pack_short_rows::<3>(data, pad),
        _ if len.is_multiple_of(4) => data
            .chunks_exact(4)
            .map(|q| pack_i8x4([q[0], q[1], q[2], q[3]]))
            .collect(),
        _ => pack_rows_with_remainder(data, len, pad),
    }
}

/// Rows of LEN < 4 values, one word each.
fn pack_short_rows<const LEN: usize>(data: &[i8], pad: i8) -> Vec<u32> {
    data.chunks_exact(LEN)
        .map(|row| {
            let mut v = [pad; 4];
            v[..LEN].copy_from_slice(row);
            pack_i8x4(v)
        })
        .collect()
}

/// `pack_rows` for any row length, a last partial row included.
fn pack_rows_with_remainder(data: &[i8], len: usize, pad: i8) -> Vec<u32> {
    let mut words = Vec::with_capacity(data.len().div_ceil(len) * words_for(len));
    for row in data.chunks(len) {
        for quad in row.chunks(4) {
            let mut v = [pad; 4];
            v[..quad.len()].copy_from_slice(quad);
            words.push(pack_i8x4(v));
        }
    }
    words
}

/// `pack_rows` undone: `[rows][words_for(len)]` words back to `[rows][len]` values, the
/// padding dropped.
pub fn unpack_rows(words: &[u32], len: usize) -> Vec<i8> {
    let row_words = words_for(len);
    if row_words == 0 {
        return Vec::new();
    }
    words
        .chunks(row_words)
        .flat_map(|row| row.iter().flat_map(|&w| unpack_i8x4(w)).take(len))
        .collect()
}

/// A `[K][N]` matrix (the pointwise `[Cin, Cout]`, dense `[in, out]` or stem
/// `[KH, KW, Cin, Cout]` layout, K = KH*KW*Cin) as the int8 GEMM reads it: `[N][K]` packed
/// along K, the last word of each row padded with zero weights.
pub fn pack_gemm_weights(weight: &[i8], k: usize, n: usize) -> Vec<u32> {
    let transposed: Vec<i8> = (0..n)
        .flat_map(|col| (0..k).map(move |row| weight[row * n + col]))
        .collect();
    pack_rows(&transposed, k, 0)
}

/// Depthwise weights `[KH, KW, C]` as the int8 kernel reads them: `[KH*KW][C/4]` packed
/// along channels, padded channels weighing zero.
pub fn pack_depthwise_weights(weight: &[i8], channels: usize) -> Vec<u32> {
    pack_rows(weight, channels, 0)
}

/// The bias with the input's zero point folded in, per output channel:
/// `bias_eff[c] = q_b[c] - z_x * sum_k q_w[k, c]`, for `weight` laid out `[K][N]` (depthwise
/// `[KH*KW][C]`: the same with one input per channel). The kernels then sum `q_x * q_w`
/// over every tap, padded taps reading `z_x`, and the sum equals `sum (q_x - z_x) * q_w`
/// exactly. Arithmetic wraps as the kernels' i32 does.
pub fn fold_bias(bias: &[i32], weight: &[i8], input_zero: i32) -> Vec<i32> {
    let n = bias.len();
    bias.iter()
        .enumerate()
        .map(|(c, &b)| {
            let column: i32 = weight
                .iter()
                .skip(c)
                .step_by(n.max(1))
                .map(|&w| w as i32)
                .sum();
            b.wrapping_sub(input_zero.wrapping_mul(column))
        })
        .collect()
}

/// `M = s_x * s_w / s_y` in f64, rounded once to f32: the requantization multiplier of one
/// output channel.
pub fn requant_multiplier(input_scale: f32, weight_scale: f32, output_scale: f32) -> f32 {
    (input_scale as f64 * weight_scale as f64 / output_scale as f64) as f32
}

/// The global average pool's multiplier `s_in / (s_out * HW)`, in f64 rounded once to f32.
pub fn pool_multiplier(input_scale: f32, output_scale: f32, pixels: usize) -> f32 {
    (input_scale as f64 / (output_scale as f64 * pixels as f64)) as f32
}

/// The classifier's dequantization scale `s_x * s_w[c]`, in f64 rounded once to f32.
pub fn logit_scale(input_scale: f32, weight_scale: f32) -> f32 {
    (input_scale as f64 * weight_scale as f64) as f32
}

/// Where an int8 output goes: its zero point and the bounds its activation clamps to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int8Output {
    pub zero_point: i32,
    pub lo: i32,
    pub hi: i32,
}

impl Int8Output {
    /// The bounds of `activation` on an output of scale `scale` and zero point `zero_point`:
    /// none, [-128, 127]; ReLU from `max(-128, z)` (real 0); ReLU6 also up to
    /// `min(127, z + round_half_even(6 / s))` (real 6, the quotient in f64).
    pub fn new(activation: Activation, scale: f32, zero_point: i32) -> Int8Output {
        let (mut lo, mut hi) = (-128, 127);
        if activation != Activation::None {
            lo = zero_point.max(-128);
        }
        if activation == Activation::Relu6 {
            let six = (6.0 / scale as f64).round_ties_even();
            // Saturating: a tiny scale puts real 6 beyond the int8 range anyway.
            let top = (zero_point as f64 + six).min(127.0);
            hi = top as i32;
        }
        Int8Output {
            zero_point,
            lo,
            hi: hi.max(lo),
        }
    }

    /// No activation: the whole int8 range.
    pub fn linear(zero_point: i32) -> Int8Output {
        Int8Output {
            zero_point,
            lo: -128,
            hi: 127,
        }
    }
}

/// The scale and zero point of an activation tensor: real `r = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Int8Activation {
    pub scale: f32,
    pub zero_point: i32,
}

impl Int8Activation {
    /// `r` as int8: `clamp(round_half_even(r / s) + z, -128, 127)` (how the network input
    /// is quantized on the CPU before upload). The quotient is f32, as ONNX's QuantizeLinear
    /// computes it: normalised 8-bit pixels over a [-1, 1] range land exactly on ties, and an
    /// f64 quotient rounded 15% of them the other way from onnxruntime and tract.
    pub fn quantize(&self, r: f32) -> i8 {
        // Quotients past +-256 saturate whatever the zero point (within the int8 range), so
        // the rounding only meets |t| <= 256, where adding and subtracting 1.5 * 2^23 rounds
        // to an integer, ties to even, as round_ties_even does: the same result without a
        // libm call per value (a 224x224 batch of 8 took 17 ms of a 430 ms int8 batch).
        const ROUND: f32 = 12_582_912.0;
        let t = (r / self.scale).clamp(-256.0, 256.0);
        let rounded = (t + ROUND) - ROUND;
        // Small integers, exact in f32; NaN stays NaN and converts to 0, as before.
        (rounded + self.zero_point as f32).clamp(-128.0, 127.0) as i8
    }

    /// `quantize` of every value: a loop of its own, which the compiler vectorises (a
    /// batch of 8 RGB images at 224 in about 1 ms).
    pub fn quantize_all(&self, values: &[f32]) -> Vec<i8> {
        values.iter().map(|&r| self.quantize(r)).collect()
    }
}

/// One layer's int8 numbers as the int8 file stores them: weights in our float layout
/// (output channels last), one scale per output channel, the int32 bias.
#[derive(Clone, Copy, Debug)]
pub struct Int8LayerParams<'a> {
    pub weight_q: &'a [i8],
    pub weight_scale: &'a [f32],
    pub bias_q: &'a [i32],
}

/// Where an int8 network's numbers come from, by the folded graph's names: each layer with
/// weights by its op's name (`stem.conv`, `blocks.1.dw`, `classifier`), each quantized
/// activation by its tensor's name (the input, every convolution's output, the pool's).
/// The int8 file's model implements it; the compiled plan and the CPU reference read it.
pub trait Int8Numbers {
    fn layer(&self, name: &str) -> Option<Int8LayerParams<'_>>;
    fn activation(&self, tensor: &str) -> Option<Int8Activation>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_puts_the_lowest_channel_in_byte_zero() {
        assert_eq!(pack_i8x4([1, -1, 0x7f, -128]), 0x807f_ff01);
        assert_eq!(unpack_i8x4(0x807f_ff01), [1, -1, 0x7f, -128]);
    }

    #[test]
    fn rows_pad_with_the_given_value_and_unpack_back() {
        let data: Vec<i8> = (0..10).map(|v| v as i8 - 5).collect();
        let words = pack_rows(&data, 5, -128);
        assert_eq!(words.len(), 4);
        assert_eq!(unpack_i8x4(words[1]), [-1, -128, -128, -128]);
        assert_eq!(unpack_rows(&words, 5), data);
    }

    #[test]
    fn every_row_length_packs_as_the_general_loop_does() {
        let data: Vec<i8> = (0..96).map(|i| (i * 37 % 256) as u8 as i8).collect();
        for len in [1, 2, 3, 4, 5, 8, 12, 13] {
            let whole = &data[..data.len() / len * len];
            assert_eq!(
                pack_rows(whole, len, -7),
                pack_rows_with_remainder(whole, len, -7),
                "rows of {len}"
            );
            assert_eq!(unpack_rows(&pack_rows(whole, len, -7), len), whole);
        }
        // A last partial row is padded like the others.
        let words = pack_rows(&data[..7], 3, 9);
        assert_eq!(unpack_i8x4(words[2]), [data[6], 9, 9, 9]);
    }

    #[test]
    fn gemm_weights_are_transposed_and_packed_along_k() {
        // K = 5, N = 2: [k][n] = 10 * k + n.
        let w: Vec<i8> = (0..5).flat_map(|k| [10 * k, 10 * k + 1]).collect();
        let packed = pack_gemm_weights(&w, 5, 2);
        assert_eq!(packed.len(), 4);
        assert_eq!(unpack_i8x4(packed[0]), [0, 10, 20, 30]);
        assert_eq!(unpack_i8x4(packed[1]), [40, 0, 0, 0]);
        assert_eq!(unpack_i8x4(packed[2]), [1, 11, 21, 31]);
    }

    #[test]
    fn bias_fold_subtracts_the_zero_point_times_each_column() {
        // [K=2][N=2]: columns (1, 3) and (-2, 4).
        let folded = fold_bias(&[10, 20], &[1, -2, 3, 4], -128);
        assert_eq!(folded, vec![10 + 128 * 4, 20 + 128 * 2]);
    }

    #[test]
    fn inputs_quantize_half_to_even_and_saturate() {
        let a = Int8Activation {
            scale: 0.5,
            zero_point: -3,
        };
        assert_eq!(a.quantize(1.25), -1, "2.5 -> 2, then -3");
        assert_eq!(a.quantize(1.75), 1, "3.5 -> 4, then -3");
        assert_eq!(a.quantize(1e9), 127);
        assert_eq!(a.quantize(-1e9), -128);
    }

    #[test]
    fn quantizing_matches_round_ties_even_everywhere() {
        let exact = |a: &Int8Activation, r: f32| {
            let q = (r / a.scale).round_ties_even() as f64 + a.zero_point as f64;
            q.clamp(-128.0, 127.0) as i8
        };
        let mut values: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.25).collect();
        // Every tie and its neighbours around the range, and values far outside it.
        values.extend((-600..=600).flat_map(|i| {
            let tie = i as f32 + 0.5;
            [tie, tie.next_down(), tie.next_up()]
        }));
        values.extend([
            1e9,
            -1e9,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ]);
        values.extend([0.0, -0.0, f32::MIN_POSITIVE, 255.5, 256.5, -256.5, 383.5]);
        // Normalised 8-bit pixels, which land on ties at scale 1/127.5.
        values.extend((0..=255).map(|p| p as f32 / 127.5 - 1.0));
        for scale in [1.0, 0.5, 1.0 / 127.5, 0.0078125, 3.7] {
            for zero_point in [-128, -3, 0, 5, 127] {
                let a = Int8Activation { scale, zero_point };
                for &r in &values {
                    assert_eq!(a.quantize(r), exact(&a, r), "{r} at {scale}, {zero_point}");
                }
            }
        }
    }

    #[test]
    fn activation_bounds_follow_the_scheme() {
        assert_eq!(Int8Output::new(Activation::None, 0.1, 5).lo, -128);
        let relu = Int8Output::new(Activation::Relu, 0.1, -128);
        assert_eq!((relu.lo, relu.hi), (-128, 127));
        // 6 / 0.05 = 120: -128 + 120.
        let relu6 = Int8Output::new(Activation::Relu6, 0.05, -128);
        assert_eq!((relu6.lo, relu6.hi), (-128, -8));
        // Real 6 beyond the range: the top of the range.
        let wide = Int8Output::new(Activation::Relu6, 0.01, -10);
        assert_eq!((wide.lo, wide.hi), (-10, 127));
    }
}
