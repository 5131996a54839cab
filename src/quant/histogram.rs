//! What calibration keeps of one activation tensor: its exact minimum and maximum, and a
//! histogram of its values for the clipping choices (`range`).
//!
//! The histogram has `HISTOGRAM_BINS` bins on each side of 0 (magnitudes of positive and
//! of negative values apart), all of one width, a power of two. When a later batch holds
//! a larger magnitude the width doubles and neighbouring bins merge, which loses nothing:
//! the histogram is then exactly the one the final width would have given from the start,
//! so the result does not depend on the order images arrive in (as onnxruntime's
//! collector, which re-bins, does).

/// Bins on each side of 0.
pub const HISTOGRAM_BINS: usize = 2048;

#[derive(Clone, Debug, PartialEq)]
pub struct ActivationStats {
    /// The exact extremes of the finite values seen (+inf / -inf before any).
    pub min: f32,
    pub max: f32,
    /// Finite values seen.
    pub count: u64,
    /// NaN and infinite values seen (a float model that produces them cannot be quantized).
    pub non_finite: u64,
    /// 0 until a value other than 0 is seen (all values so far are in bin 0).
    width: f64,
    /// Bin k counts the values in [k * width, (k + 1) * width).
    positive: Vec<u64>,
    /// Bin k counts the values in (-(k + 1) * width, -k * width].
    negative: Vec<u64>,
}

impl Default for ActivationStats {
    fn default() -> Self {
        ActivationStats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            count: 0,
            non_finite: 0,
            width: 0.0,
            positive: vec![0; HISTOGRAM_BINS],
            negative: vec![0; HISTOGRAM_BINS],
        }
    }
}

impl ActivationStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in a batch of values.
    pub fn add(&mut self, values: &[f32]) {
        let mut peak = 0.0f32;
        for &v in values {
            if v.is_finite() {
                self.min = self.min.min(v);
                self.max = self.max.max(v);
                peak = peak.max(v.abs());
            } else {
                self.non_finite += 1;
            }
        }
        self.widen_to(peak as f64);
        let per_width = if self.width > 0.0 {
            1.0 / self.width
        } else {
            0.0
        };
        for &v in values.iter().filter(|v| v.is_finite()) {
            let bin = ((v.abs() as f64 * per_width) as usize).min(HISTOGRAM_BINS - 1);
            if v >= 0.0 {
                self.positive[bin] += 1;
            } else {
                self.negative[bin] += 1;
            }
            self.count += 1;
        }
    }

    /// Makes the bins wide enough that `peak` falls in the last one or before.
    fn widen_to(&mut self, peak: f64) {
        if peak == 0.0 {
            return;
        }
        if self.width == 0.0 {
            // Everything so far is 0 and stays in bin 0 at any width.
            self.width = (peak / HISTOGRAM_BINS as f64).log2().ceil().exp2();
        }
        while peak >= self.width * HISTOGRAM_BINS as f64 {
            for side in [&mut self.positive, &mut self.negative] {
                for k in 0..HISTOGRAM_BINS {
                    side[k] = match 2 * k {
                        i if i < HISTOGRAM_BINS => side[i] + side[i + 1],
                        _ => 0,
                    };
                }
            }
            self.width *= 2.0;
        }
    }

    /// Every non-empty bin as (its centre, pulled within [min, max], and its count): the
    /// distribution the clipping choices weigh.
    pub fn bins(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let (lo, hi) = (self.min as f64, self.max as f64);
        let centre = move |k: usize| (k as f64 + 0.5) * self.width;
        let positive = self
            .positive
            .iter()
            .enumerate()
            .map(move |(k, &n)| (centre(k), n));
        let negative = self
            .negative
            .iter()
            .enumerate()
            .map(move |(k, &n)| (-centre(k), n));
        positive
            .chain(negative)
            .filter(|&(_, n)| n > 0)
            .map(move |(v, n)| (v.clamp(lo.min(hi), hi.max(lo)), n))
    }

    /// The smallest magnitude m with at most `tail` values above m on the positive side
    /// (`negative`: below -m on the negative side), to a bin's upper edge.
    pub fn tail_edge(&self, tail: f64, negative: bool) -> f64 {
        let side = if negative {
            &self.negative
        } else {
            &self.positive
        };
        let mut above = 0u64;
        for k in (0..HISTOGRAM_BINS).rev() {
            above += side[k];
            if above as f64 > tail {
                return (k + 1) as f64 * self.width;
            }
        }
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_merges_bins_as_if_the_width_had_been_known() {
        let values: Vec<f32> = (0..5000)
            .map(|i| (i as f32 * 0.37).sin() * i as f32)
            .collect();
        let mut whole = ActivationStats::new();
        whole.add(&values);
        let mut growing = ActivationStats::new();
        for chunk in values.chunks(7) {
            growing.add(chunk);
        }
        assert_eq!(whole, growing);
        assert_eq!(whole.count, 5000);
        assert_eq!(
            whole.min,
            values.iter().cloned().fold(f32::INFINITY, f32::min)
        );
    }

    #[test]
    fn zeros_and_non_finite_values_are_counted() {
        let mut stats = ActivationStats::new();
        stats.add(&[0.0, 0.0, f32::NAN]);
        stats.add(&[3.0]);
        assert_eq!((stats.count, stats.non_finite), (3, 1));
        assert_eq!(stats.bins().map(|(_, n)| n).sum::<u64>(), 3);
        assert_eq!((stats.min, stats.max), (0.0, 3.0));
    }
}
