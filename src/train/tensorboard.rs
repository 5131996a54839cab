//! TensorBoard's event files, written and read back: TFRecord framing (little-endian u64
//! length, masked CRC-32C of the length, the data, masked CRC-32C of the data) around
//! `Event` protobufs holding scalar summaries.
//!
//! Only the fields a scalar log needs are declared, with the field numbers of TensorFlow's
//! event.proto and summary.proto, so TensorBoard reads them as its own. What a run logs is
//! in `run_events.rs`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use prost::Message;

use crate::atomic_file::write_atomic;

/// The first event of every file; TensorBoard reads version 2 files without guessing.
pub const FILE_VERSION: &str = "brain.Event:2";
/// Event files are `events.out.tfevents.<unix time>.<host>`; TensorBoard picks up any file
/// whose name holds "tfevents".
pub const FILE_PREFIX: &str = "events.out.tfevents.";

/// event.proto's `Event`, with the two members of its `what` oneof a scalar log uses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    #[prost(int64, tag = "2")]
    pub step: i64,
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// summary.proto's `Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// summary.proto's `Summary.Value` in its scalar form. `simple_value` is a oneof member
/// there: its presence is what marks a scalar, so it is written even when it is 0.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    #[prost(string, tag = "1")]
    pub tag: String,
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

/// TFRecord's checksum: CRC-32C rotated right by 15 bits plus a constant, so that a CRC
/// of data that itself holds CRCs does not degenerate.
pub fn masked_crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
        .rotate_right(15)
        .wrapping_add(0xa282_ead8)
}

/// One TFRecord: length, its checksum, the data, its checksum.
pub fn frame(data: &[u8]) -> Vec<u8> {
    let length = (data.len() as u64).to_le_bytes();
    let mut record = Vec::with_capacity(data.len() + 16);
    record.extend_from_slice(&length);
    record.extend_from_slice(&masked_crc(&length).to_le_bytes());
    record.extend_from_slice(data);
    record.extend_from_slice(&masked_crc(data).to_le_bytes());
    record
}

/// The records of `bytes` in order, up to the first one cut short or failing a checksum
/// (a write cut by a kill: TensorBoard stops reading there too), and the bytes they span.
pub fn records(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut found = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 12) {
        let (length, crc) = header.split_at(8);
        let length_ok = masked_crc(length).to_le_bytes() == crc;
        let length = u64::from_le_bytes(length.try_into().unwrap_or_default());
        let start = at + 12;
        let end = usize::try_from(length)
            .ok()
            .and_then(|n| start.checked_add(n));
        let Some(data) = end
            .filter(|_| length_ok)
            .and_then(|end| bytes.get(start..end))
        else {
            break;
        };
        let Some(data_crc) = bytes.get(start + data.len()..start + data.len() + 4) else {
            break;
        };
        if masked_crc(data).to_le_bytes() != data_crc {
            break;
        }
        found.push(data);
        at = start + data.len() + 4;
    }
    (found, at)
}

/// The events of an event file, up to the first damaged record.
pub fn read_events(path: &Path) -> anyhow::Result<Vec<Event>> {
    Ok(decode_file(path)?.0)
}

/// The events of an event file up to the first damaged record, and whether there was none.
fn decode_file(path: &Path) -> anyhow::Result<(Vec<Event>, bool)> {
    let bytes = fs::read(path)
        .with_context(|| format!("cannot read the TensorBoard event file {}", path.display()))?;
    let (found, spanned) = records(&bytes);
    let mut events = Vec::with_capacity(found.len());
    for data in found {
        match Event::decode(data) {
            Ok(event) => events.push(event),
            Err(_) => return Ok((events, false)),
        }
    }
    Ok((events, spanned == bytes.len()))
}

/// The event files in `dir`, sorted by name (TensorBoard's reading order). The temporary
/// file of a rewrite killed before its rename is removed: TensorBoard would read it as a
/// second copy of the points.
pub fn event_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.starts_with(FILE_PREFIX) || !path.is_file() {
            continue;
        }
        match name.ends_with(".tmp") {
            true => fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?,
            false => files.push(path),
        }
    }
    files.sort();
    Ok(files)
}

/// Rewrites an event file (atomically) with only the scalar events `keep` accepts, after
/// its file-version event; deletes it when no scalar is left. A damaged tail is dropped.
/// An intact file that keeps all its points is left alone (a live TensorBoard reads on).
pub fn retain_events(path: &Path, keep: impl Fn(&Event) -> bool) -> anyhow::Result<()> {
    let (events, intact) = decode_file(path)?;
    let scalars: Vec<&Event> = events.iter().filter(|e| e.summary.is_some()).collect();
    let kept: Vec<&Event> = scalars.iter().copied().filter(|e| keep(e)).collect();
    if intact && kept.len() == scalars.len() && !kept.is_empty() {
        return Ok(());
    }
    let what = || {
        format!(
            "cannot rewrite the TensorBoard event file {}",
            path.display()
        )
    };
    if kept.is_empty() {
        return fs::remove_file(path).with_context(what);
    }
    let mut bytes = frame(&version_event().encode_to_vec());
    for event in kept {
        bytes.extend(frame(&event.encode_to_vec()));
    }
    write_atomic(path, &bytes).with_context(what)
}

/// An event file a run appends to, one record per write. Writes are unbuffered, so a live
/// `tensorboard --logdir` sees each point as soon as it is logged.
pub struct EventFile {
    path: PathBuf,
    file: File,
}

impl EventFile {
    /// Opens `dir/events.out.tfevents.<unix time>.<host>`, appending when a run of the
    /// same second already made it; a new file starts with the file-version event.
    pub fn create(dir: &Path) -> anyhow::Result<EventFile> {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = dir.join(format!("{FILE_PREFIX}{seconds}.{}", host_name()));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| {
                format!(
                    "cannot create the TensorBoard event file {}; check that the run directory is writable",
                    path.display()
                )
            })?;
        let events = EventFile { path, file };
        let empty = events.file.metadata().map(|m| m.len() == 0).unwrap_or(true);
        if empty {
            events.write(&version_event())?;
        }
        Ok(events)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One event holding `scalars` (tag, value) at `step`, as f32 as TensorBoard keeps them.
    pub fn write_scalars(&self, step: usize, scalars: &[(&str, f64)]) -> anyhow::Result<()> {
        let value = scalars
            .iter()
            .map(|&(tag, v)| SummaryValue {
                tag: tag.to_string(),
                simple_value: Some(v as f32),
            })
            .collect();
        self.write(&Event {
            wall_time: now(),
            step: i64::try_from(step).unwrap_or(i64::MAX),
            file_version: None,
            summary: Some(Summary { value }),
        })
    }

    /// One record in one write: a kill leaves at most this record torn, which readers skip.
    fn write(&self, event: &Event) -> anyhow::Result<()> {
        (&self.file)
            .write_all(&frame(&event.encode_to_vec()))
            .with_context(|| {
                format!(
                    "cannot write the TensorBoard event file {}; free some disk space and resume with --resume",
                    self.path.display()
                )
            })
    }
}

fn version_event() -> Event {
    Event {
        wall_time: now(),
        step: 0,
        file_version: Some(FILE_VERSION.to_string()),
        summary: None,
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The machine's name for the file name (TensorFlow's convention), reduced to characters
/// safe in a file name.
fn host_name() -> String {
    let raw = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    match name.is_empty() {
        true => "localhost".to_string(),
        false => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn masked_crc_matches_tensorboard() {
        // tensorboard.compat.tensorflow_stub.pywrap_tensorflow.masked_crc32c(b"123456789")
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }

    /// The bytes TensorBoard's own RecordWriter wrote for the same events (Python,
    /// tensorboard 2.21: event_pb2.Event serialised and framed).
    #[test]
    fn records_match_tensorboards_writer() {
        let scalar = Event {
            wall_time: 1.5,
            step: 3,
            file_version: None,
            summary: Some(Summary {
                value: vec![SummaryValue {
                    tag: "train/loss".into(),
                    simple_value: Some(0.0),
                }],
            }),
        };
        assert_eq!(
            hex(&frame(&scalar.encode_to_vec())),
            "200000000000000029eda95009000000000000f83f10032a130a110a0a747261696e2f6c6f73731500000000b376c999"
        );
        let version = Event {
            wall_time: 1.5,
            ..version_event()
        };
        assert_eq!(
            hex(&frame(&version.encode_to_vec())),
            "1800000000000000a37f4b2209000000000000f83f1a0d627261696e2e4576656e743a322a28646c"
        );
    }

    #[test]
    fn a_torn_or_corrupt_record_ends_the_file() {
        let mut bytes = frame(b"first");
        bytes.extend(frame(b"second"));
        let whole = bytes.len();
        assert_eq!(records(&bytes), (vec![&b"first"[..], b"second"], whole));
        let torn = &bytes[..whole - 3];
        assert_eq!(records(torn), (vec![&b"first"[..]], frame(b"first").len()));
        let mut corrupt = bytes.clone();
        corrupt[whole - 6] ^= 1;
        assert_eq!(records(&corrupt).0, vec![&b"first"[..]]);
    }

    #[test]
    fn written_events_read_back_and_retain_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let file = EventFile::create(dir.path()).unwrap();
        file.write_scalars(1, &[("a", 0.5), ("b", 0.0)]).unwrap();
        file.write_scalars(2, &[("a", 0.25)]).unwrap();
        let events = read_events(file.path()).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].file_version.as_deref(), Some(FILE_VERSION));
        let values = &events[1].summary.as_ref().unwrap().value;
        assert_eq!(values[1].simple_value, Some(0.0));
        retain_events(file.path(), |e| e.step <= 1).unwrap();
        let steps: Vec<i64> = read_events(file.path())
            .unwrap()
            .iter()
            .map(|e| e.step)
            .collect();
        assert_eq!(steps, [0, 1]);
        // A torn last record (a kill mid-write) is cut off even when every point stays.
        let mut torn = fs::read(file.path()).unwrap();
        torn.extend_from_slice(&frame(b"torn")[..7]);
        fs::write(file.path(), &torn).unwrap();
        retain_events(file.path(), |_| true).unwrap();
        let bytes = fs::read(file.path()).unwrap();
        assert_eq!(records(&bytes).1, bytes.len());
        assert_eq!(read_events(file.path()).unwrap().len(), 2);
        let stale = dir.path().join(format!("{FILE_PREFIX}1.host.123-0.tmp"));
        fs::write(&stale, b"a rewrite cut short").unwrap();
        retain_events(file.path(), |_| false).unwrap();
        assert!(event_files(dir.path()).unwrap().is_empty());
        assert!(!stale.exists());
    }
}
