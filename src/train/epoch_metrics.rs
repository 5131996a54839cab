//! What one epoch of a run measured (`EpochMetrics`), as `metrics.jsonl` stores it.

/// What one epoch measured. Accuracies are fractions in `[0, 1]` (printed and plotted as %).
/// Losses may be NaN or infinite when training diverges; they are stored as the strings
/// `"NaN"`, `"inf"`, `"-inf"` because JSON has no such numbers.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Learning rate used during the epoch (at its end, for schedules that change within it).
    #[serde(with = "json_float")]
    pub lr: f64,
    #[serde(with = "json_float")]
    pub train_loss: f64,
    #[serde(with = "json_float")]
    pub train_acc: f64,
    #[serde(default, with = "json_float::option")]
    pub val_loss: Option<f64>,
    #[serde(default, with = "json_float::option")]
    pub val_acc: Option<f64>,
    /// Top-5 accuracy; `val_acc` and `test_acc` are top-1.
    #[serde(default, with = "json_float::option")]
    pub val_top5: Option<f64>,
    #[serde(default, with = "json_float::option")]
    pub test_loss: Option<f64>,
    #[serde(default, with = "json_float::option")]
    pub test_acc: Option<f64>,
    #[serde(default, with = "json_float::option")]
    pub test_top5: Option<f64>,
    /// Wall-clock time of the epoch, evaluation included.
    #[serde(with = "json_float")]
    pub seconds: f64,
    /// Training throughput.
    #[serde(with = "json_float")]
    pub images_per_sec: f64,
    /// Training images that could not be decoded this epoch (skipped; reported by path).
    #[serde(default)]
    pub bad_files: usize,
    /// Images per optimizer step over all data-parallel ranks.
    #[serde(default)]
    pub global_batch: usize,
    /// Data-parallel ranks that trained the epoch.
    #[serde(default = "one_rank")]
    pub ranks: usize,
}

fn one_rank() -> usize {
    1
}

/// serde_json writes NaN and infinities as `null`, which does not read back as f64; a diverged
/// run must still be readable, so non-finite values are stored as strings.
mod json_float {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Text(String),
    }

    impl Repr {
        fn value<E: serde::de::Error>(self) -> Result<f64, E> {
            match self {
                Repr::Number(v) => Ok(v),
                Repr::Text(t) => match t.as_str() {
                    "NaN" => Ok(f64::NAN),
                    "inf" => Ok(f64::INFINITY),
                    "-inf" => Ok(f64::NEG_INFINITY),
                    _ => Err(E::custom(format!(
                        "expected a number, \"NaN\", \"inf\" or \"-inf\", found \"{t}\""
                    ))),
                },
            }
        }
    }

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if *v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Repr::deserialize(d)?.value()
    }

    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => super::serialize(v, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
            Option::<super::Repr>::deserialize(d)?
                .map(super::Repr::value)
                .transpose()
        }
    }
}
