//! How a calibrated activation range is chosen from the statistics of a tensor: its
//! minimum and maximum, a percentile of its values, or the clip that minimises the mean
//! squared error of quantizing them.

use super::histogram::ActivationStats;
use super::scheme::{ACT_Q_MAX, ACT_Q_MIN};
use std::fmt;
use std::str::FromStr;

/// The percentile `percentile` without a value uses (TensorRT's percentile calibrator's).
pub const DEFAULT_PERCENTILE: f64 = 99.99;
/// Clips the MSE search tries: fractions 1/N, 2/N, ..., 1 of the min/max range.
const MSE_CANDIDATES: usize = 256;

/// The range calibration gives each activation tensor.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "method", rename_all = "lowercase")]
pub enum Method {
    /// The smallest and largest value seen (what TFLite and onnxruntime do by default).
    #[serde(rename = "minmax")]
    MinMax,
    /// The values below the (100 - p)th and above the pth percentile are clipped.
    Percentile { percentile: f64 },
    /// The clip (a fraction of the min/max range) with the least squared error of the
    /// quantized values, the rounding noise inside it and the clipping outside weighed
    /// together.
    Mse,
}

impl Method {
    /// What `mobilenet quantize` uses without `--method`: measured best of the four on the
    /// default Fashion-MNIST job (ReLU, 1,000 calibration images, all 10,000 test images,
    /// int8 simulated on the CPU reference): float 89.36% top-1; minmax 89.33% (99.1% of
    /// predictions agree), percentile:99.99 89.27%, mse 89.25%, percentile:99.9 89.13%.
    pub const DEFAULT: Method = Method::MinMax;

    /// The range [lo, hi] this method chooses for a tensor (not yet widened to hold 0;
    /// `QuantParams::from_range` does that).
    pub fn range(&self, stats: &ActivationStats) -> (f64, f64) {
        let (min, max) = (stats.min as f64, stats.max as f64);
        match *self {
            Method::MinMax => (min, max),
            Method::Percentile { percentile } => {
                let tail = stats.count as f64 * (1.0 - percentile / 100.0);
                let lo = -stats.tail_edge(tail, true);
                let hi = stats.tail_edge(tail, false);
                (lo.max(min), hi.min(max))
            }
            Method::Mse => mse_range(stats),
        }
    }
}

/// The fraction of [min(min, 0), max(max, 0)] whose quantization has the least expected
/// squared error over the histogram: values inside are off by rounding (uniform noise,
/// s^2 / 12), values outside by their distance to the clip.
fn mse_range(stats: &ActivationStats) -> (f64, f64) {
    let (lo0, hi0) = ((stats.min as f64).min(0.0), (stats.max as f64).max(0.0));
    let bins: Vec<(f64, u64)> = stats.bins().collect();
    let error = |lo: f64, hi: f64| -> f64 {
        let step = (hi - lo) / (ACT_Q_MAX - ACT_Q_MIN) as f64;
        bins.iter()
            .map(|&(v, n)| {
                let off = if v < lo {
                    (lo - v).powi(2)
                } else if v > hi {
                    (v - hi).powi(2)
                } else {
                    step * step / 12.0
                };
                n as f64 * off
            })
            .sum()
    };
    let mut best = (lo0, hi0, error(lo0, hi0));
    // From the widest down, so that a tie keeps the wider range.
    for i in (1..MSE_CANDIDATES).rev() {
        let t = i as f64 / MSE_CANDIDATES as f64;
        let e = error(t * lo0, t * hi0);
        if e < best.2 {
            best = (t * lo0, t * hi0, e);
        }
    }
    (best.0, best.1)
}

impl FromStr for Method {
    type Err = String;
    /// `minmax`, `mse`, `percentile` (99.99) or `percentile:P`.
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let (name, value) = match lower.split_once(':') {
            Some((name, value)) => (name, Some(value)),
            None => (lower.as_str(), None),
        };
        match (name, value) {
            ("minmax" | "min-max", None) => Ok(Method::MinMax),
            ("mse", None) => Ok(Method::Mse),
            ("percentile", None) => Ok(Method::Percentile {
                percentile: DEFAULT_PERCENTILE,
            }),
            ("percentile", Some(value)) => match value.parse::<f64>() {
                Ok(p) if p > 50.0 && p <= 100.0 => Ok(Method::Percentile { percentile: p }),
                _ => Err(format!(
                    "percentile {value:?} is not a number in (50, 100], e.g. percentile:99.99"
                )),
            },
            _ => Err(format!(
                "unknown calibration method {s:?}; expected minmax, percentile, \
                 percentile:P (e.g. percentile:99.9) or mse"
            )),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::MinMax => f.write_str("minmax"),
            Method::Percentile { percentile } => write!(f, "percentile:{percentile}"),
            Method::Mse => f.write_str("mse"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_of(values: &[f32]) -> ActivationStats {
        let mut stats = ActivationStats::new();
        stats.add(values);
        stats
    }

    #[test]
    fn an_outlier_is_kept_by_minmax_and_clipped_by_the_others() {
        let mut values: Vec<f32> = (0..100_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        values.push(50.0);
        let stats = stats_of(&values);
        assert_eq!(Method::MinMax.range(&stats), (0.0, 50.0));
        let (lo, hi) = Method::Percentile { percentile: 99.9 }.range(&stats);
        assert!(lo == 0.0 && (0.99..1.1).contains(&hi), "{hi}");
    }

    #[test]
    fn mse_clips_a_long_tail() {
        // Exponentially distributed values: the rare largest ones cost less clipped than
        // the coarser steps keeping them would cost everyone else.
        let n = 100_000;
        let values: Vec<f32> = (0..n)
            .map(|i| -((i as f64 + 0.5) / n as f64).ln() as f32)
            .collect();
        let stats = stats_of(&values);
        let (lo, hi) = Method::Mse.range(&stats);
        assert!(lo == 0.0 && hi > 8.0 && hi < stats.max as f64 - 0.5, "{hi}");
    }

    #[test]
    fn methods_read_and_print_alike() {
        for text in ["minmax", "mse", "percentile:99.9"] {
            let method: Method = text.parse().unwrap();
            assert_eq!(method.to_string(), text);
        }
        let default: Method = "percentile".parse().unwrap();
        assert_eq!(default, Method::Percentile { percentile: 99.99 });
        assert!("percentile:101".parse::<Method>().is_err());
        assert!("entropy".parse::<Method>().is_err());
    }
}
