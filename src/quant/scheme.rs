//! The int8 arithmetic of INT8.md (scheme `int8-v1`): symmetric per-channel weights,
//! asymmetric per-tensor activations and int32 biases (the requantization multipliers are
//! computed where the kernels' numbers are packed, `ops::int8`). Everything is computed in f64 and rounded once to what is stored, so the kernels, the
//! CPU reference and the file agree on every value.

/// Weights are int8 in [-127, 127]: -128 is left out so that the range is symmetric.
pub const WEIGHT_Q_MAX: i32 = 127;
/// Activations use the whole int8 range.
pub const ACT_Q_MIN: i32 = -128;
pub const ACT_Q_MAX: i32 = 127;
/// The width a calibrated range gets when it is a single point (a tensor that is always 0):
/// any tiny positive width keeps the scale finite.
const EMPTY_RANGE_WIDTH: f64 = 1e-8;

/// A real value r stored as q: `r = scale * (q - zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantParams {
    pub scale: f32,
    pub zero_point: i32,
}

impl QuantParams {
    /// An activation's parameters from its calibrated range [lo, hi]: the range is widened
    /// to contain 0 (so that real 0, the padding and ReLU's floor, is exact), then spread
    /// over the 256 levels. After ReLU lo = 0, so the zero point is -128.
    pub fn from_range(lo: f64, hi: f64) -> QuantParams {
        let lo = lo.min(0.0);
        let mut hi = hi.max(0.0);
        if hi <= lo {
            hi = lo + EMPTY_RANGE_WIDTH;
        }
        let scale = (hi - lo) / (ACT_Q_MAX - ACT_Q_MIN) as f64;
        let zero_point = (ACT_Q_MIN as f64 - lo / scale)
            .round_ties_even()
            .clamp(ACT_Q_MIN as f64, ACT_Q_MAX as f64) as i32;
        QuantParams {
            scale: scale as f32,
            zero_point,
        }
    }

    /// The real value of `q`.
    pub fn dequantize(&self, q: i32) -> f32 {
        (self.scale as f64 * (q - self.zero_point) as f64) as f32
    }
}

/// A weight tensor quantized per output channel (the last axis of every layout we store).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedWeights {
    pub values: Vec<i8>,
    /// One per output channel.
    pub scales: Vec<f32>,
}

/// Symmetric per-channel quantization of `weights` whose last axis has `channels` entries:
/// `s[c] = max|w[.., c]| / 127` (1.0 for an all-zero channel), `q = round(w / s[c])`
/// clamped to [-127, 127]. `q` is taken against the stored f32 scale, so that `s * q` is
/// within s/2 of `w` for the scale the file holds.
pub fn quantize_weights(weights: &[f32], channels: usize) -> QuantizedWeights {
    let channels = channels.max(1);
    let mut peak = vec![0.0f64; channels];
    for (i, &w) in weights.iter().enumerate() {
        let c = i % channels;
        peak[c] = peak[c].max((w as f64).abs());
    }
    let scales: Vec<f32> = peak
        .iter()
        .map(|&p| match p {
            0.0 => 1.0,
            p => (p / WEIGHT_Q_MAX as f64) as f32,
        })
        .collect();
    let max = WEIGHT_Q_MAX as f64;
    let values = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let q = (w as f64 / scales[i % channels] as f64).round_ties_even();
            q.clamp(-max, max) as i8
        })
        .collect();
    QuantizedWeights { values, scales }
}

/// Int32 biases: `q_b[c] = round(b[c] / (s_x * s_w[c]))`, saturated to i32, so that the
/// bias adds straight onto the accumulator of products of q_x and q_w.
pub fn quantize_bias(bias: &[f32], input_scale: f32, weight_scales: &[f32]) -> Vec<i32> {
    bias.iter()
        .zip(weight_scales)
        .map(|(&b, &s_w)| {
            let s_b = input_scale as f64 * s_w as f64;
            // `as` saturates: a bias beyond the i32 range clamps rather than wrapping.
            (b as f64 / s_b).round_ties_even() as i32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relu_ranges_get_the_lowest_zero_point() {
        let p = QuantParams::from_range(0.0, 6.0);
        assert_eq!(p.zero_point, -128);
        assert_eq!(p.scale, (6.0f64 / 255.0) as f32);
        assert_eq!(p.dequantize(-128), 0.0);
    }

    #[test]
    fn ranges_are_widened_to_hold_zero() {
        let p = QuantParams::from_range(1.0, 3.0);
        assert_eq!(p.zero_point, -128);
        let p = QuantParams::from_range(-4.0, -2.0);
        assert_eq!(p.zero_point, 127);
        let p = QuantParams::from_range(-1.0, 3.0);
        assert_eq!(p.zero_point, -64, "-128 + 63.75, rounded");
        let p = QuantParams::from_range(0.0, 0.0);
        assert!(p.scale > 0.0 && p.scale.is_finite());
    }

    #[test]
    fn weights_use_the_symmetric_range_per_channel() {
        // Two channels, the last axis: c0 = {1, 0.25, 0}, c1 = {-3, 4, 0}.
        let q = quantize_weights(&[1.0, -3.0, 0.25, 4.0, 0.0, 0.0], 2);
        assert_eq!(
            q.scales,
            vec![(1.0f64 / 127.0) as f32, (4.0f64 / 127.0) as f32]
        );
        assert_eq!(q.values, [127, -95, 32, 127, 0, 0]);
        let zero = quantize_weights(&[0.0, 0.0], 1);
        assert_eq!((zero.scales[0], zero.values[0]), (1.0, 0));
    }

    #[test]
    fn biases_follow_the_scales() {
        assert_eq!(quantize_bias(&[1.0, -1.0], 0.5, &[0.25, 0.5]), vec![8, -4]);
        assert_eq!(quantize_bias(&[1e30], 1e-3, &[1e-3]), vec![i32::MAX]);
    }
}
