//! Per-epoch training metrics: `metrics.jsonl` (one JSON object per line) and the one-line
//! epoch report.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::weights::{write_atomic, WeightsError};

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
    #[serde(default, with = "json_float::option")]
    pub test_loss: Option<f64>,
    #[serde(default, with = "json_float::option")]
    pub test_acc: Option<f64>,
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

/// Why a metrics file could not be read or written; messages name the file (and line).
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot {action} `{}`: {error}", path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        error: io::Error,
    },
    #[error(
        "{}:{line}: not an epoch metrics record ({error}); fix or delete that line",
        path.display()
    )]
    BadLine {
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        error: serde_json::Error,
    },
    #[error("cannot encode the metrics of epoch {epoch} as JSON: {error}")]
    Encode {
        epoch: usize,
        error: serde_json::Error,
    },
    #[error(transparent)]
    Write(#[from] WeightsError),
}

/// One JSON object per line (metrics.jsonl). Appending must not corrupt earlier lines.
///
/// Creates the file if needed. The record goes out in one write followed by fsync, so a kill
/// can at worst leave this one line torn. A torn last line left by an earlier kill is cut off
/// first, so the new record starts on a line of its own.
pub fn append_metrics(path: &Path, m: &EpochMetrics) -> Result<(), MetricsError> {
    let mut line = serde_json::to_vec(m).map_err(|error| MetricsError::Encode {
        epoch: m.epoch,
        error,
    })?;
    line.push(b'\n');

    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io_err(path, "open"))?;
    // The file holds one short line per epoch, so reading it all is cheap.
    let mut content = Vec::new();
    file.read_to_end(&mut content)
        .map_err(io_err(path, "read"))?;
    let tail_start = content
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let tail = &content[tail_start..];
    if !tail.is_empty() {
        if parse_record(tail).is_ok() {
            // A complete record that only lacks its newline (e.g. edited by hand): keep it.
            line.insert(0, b'\n');
        } else {
            file.set_len(tail_start as u64)
                .map_err(io_err(path, "repair the torn last line of"))?;
        }
    }
    // O_APPEND: the write lands at the current end, after the truncation above.
    file.write_all(&line)
        .and_then(|()| file.sync_data())
        .map_err(io_err(path, "append to"))
}

/// Reads all lines; a torn last line (killed mid-write) is ignored, any other bad line is an
/// error naming file:line. Blank lines are ignored.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>, MetricsError> {
    let content = fs::read(path).map_err(io_err(path, "read"))?;
    Ok(parse_lines(path, &content)?
        .into_iter()
        .map(|(_, m)| m)
        .collect())
}

/// For resume: rewrite the file keeping only epochs <= last_epoch (atomically).
///
/// Kept lines are copied byte for byte; a torn last line is dropped. A missing file is left
/// missing (there is nothing to keep). A bad line is an error and the file stays unchanged.
pub fn truncate_metrics(path: &Path, last_epoch: usize) -> Result<(), MetricsError> {
    let content = match fs::read(path) {
        Ok(content) => content,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path, "read")(e)),
    };
    let mut kept = Vec::with_capacity(content.len());
    for (line, m) in parse_lines(path, &content)? {
        if m.epoch <= last_epoch {
            kept.extend_from_slice(line);
            kept.push(b'\n');
        }
    }
    Ok(write_atomic(path, &kept)?)
}

/// The one-line epoch report printed after each epoch, Lightning-style, e.g.
/// "epoch 3/10  lr 0.0450  train loss 0.4123 acc 85.12%  val loss 0.3977 acc 86.00%  test loss 0.4011 acc 85.70%  41.2 s  1456 img/s"
///
/// Missing validation or test values are left out.
pub fn format_epoch_line(m: &EpochMetrics, total_epochs: usize) -> String {
    let mut line = format!("epoch {}/{}  lr {}", m.epoch, total_epochs, format_lr(m.lr));
    for (split, loss, acc) in [
        ("train", Some(m.train_loss), Some(m.train_acc)),
        ("val", m.val_loss, m.val_acc),
        ("test", m.test_loss, m.test_acc),
    ] {
        if loss.is_none() && acc.is_none() {
            continue;
        }
        line.push_str("  ");
        line.push_str(split);
        if let Some(loss) = loss {
            line.push_str(&format!(" loss {loss:.4}"));
        }
        if let Some(acc) = acc {
            line.push_str(&format!(" acc {:.2}%", acc * 100.0));
        }
    }
    line.push_str(&format!(
        "  {:.1} s  {:.0} img/s",
        m.seconds, m.images_per_sec
    ));
    if m.ranks > 1 {
        line.push_str(&format!(
            "  global batch {} ({} ranks)",
            m.global_batch, m.ranks
        ));
    }
    if m.bad_files > 0 {
        line.push_str(&format!("  {} bad files skipped", m.bad_files));
    }
    line
}

/// Four decimals hide small learning rates (1e-5 would print as 0.0000), so those go
/// scientific.
fn format_lr(lr: f64) -> String {
    if lr == 0.0 || lr.abs() >= 1e-3 {
        format!("{lr:.4}")
    } else {
        format!("{lr:.2e}")
    }
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> MetricsError + 'a {
    move |error| MetricsError::Io {
        path: path.to_path_buf(),
        action,
        error,
    }
}

/// The records of `content` with the text of their lines (without line ends).
fn parse_lines<'a>(
    path: &Path,
    content: &'a [u8],
) -> Result<Vec<(&'a [u8], EpochMetrics)>, MetricsError> {
    let mut records = Vec::new();
    for (index, raw) in content.split_inclusive(|&b| b == b'\n').enumerate() {
        let complete = raw.ends_with(b"\n");
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.trim_ascii().is_empty() {
            continue;
        }
        match parse_record(line) {
            Ok(m) => records.push((line, m)),
            // Only the last piece can lack its newline: a write cut short by a kill.
            Err(_) if !complete => {}
            Err(error) => {
                return Err(MetricsError::BadLine {
                    path: path.to_path_buf(),
                    line: index + 1,
                    error,
                })
            }
        }
    }
    Ok(records)
}

fn parse_record(line: &[u8]) -> Result<EpochMetrics, serde_json::Error> {
    serde_json::from_slice(line)
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
