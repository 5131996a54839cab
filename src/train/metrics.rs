//! A run's `metrics.jsonl`: one `EpochMetrics` per line, appended, read back and truncated
//! so that a killed run resumes with a readable file.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::weights::{write_atomic, WeightsError};

/// How much of a file's end is read to find its last line: far more than one record.
const TAIL_BYTES: u64 = 64 * 1024;

/// The record and the epoch line were defined here once; kept reachable at their old paths.
pub use super::epoch_line::format_epoch_line;
pub use super::epoch_metrics::EpochMetrics;

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
    let line = serde_json::to_vec(m).map_err(|error| MetricsError::Encode {
        epoch: m.epoch,
        error,
    })?;
    append_line(path, line, |tail| parse_record(tail).is_ok())
}

/// Appends `line` and a newline to a JSON-lines file, as [`append_metrics`] describes;
/// `is_record` tells a complete last line that only lacks its newline from a torn one.
pub(super) fn append_line(
    path: &Path,
    mut line: Vec<u8>,
    is_record: impl Fn(&[u8]) -> bool,
) -> Result<(), MetricsError> {
    line.push(b'\n');
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io_err(path, "open"))?;
    // Lines are short, so the end of the file holds the whole last line; the steps file
    // grows long enough over a run that reading all of it at every append would show.
    let length = file.metadata().map_err(io_err(path, "read"))?.len();
    let start = length.saturating_sub(TAIL_BYTES);
    let mut content = Vec::new();
    file.seek(SeekFrom::Start(start))
        .and_then(|_| file.read_to_end(&mut content))
        .map_err(io_err(path, "read"))?;
    let newline = content.iter().rposition(|&b| b == b'\n');
    let tail_start = newline.map_or(0, |i| i + 1);
    let tail = &content[tail_start..];
    if !tail.is_empty() {
        // A last line longer than the window is none of ours: keep it rather than cut it.
        if is_record(tail) || (newline.is_none() && start > 0) {
            // A complete record that only lacks its newline (e.g. edited by hand): keep it.
            line.insert(0, b'\n');
        } else {
            file.set_len(start + tail_start as u64)
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
