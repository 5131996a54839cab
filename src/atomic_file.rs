//! Crash-safe file replacement: a reader sees either the old file or the new one, never a mix.
//! Every file a run leaves behind (checkpoints, metrics, curves, shards, the kernel cache)
//! is written through here.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A write that failed; `path` and what was being done name it, the old file is intact.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} `{}`: {error}", path.display())]
pub struct AtomicWriteError {
    pub path: PathBuf,
    /// What was being done, e.g. "write".
    pub action: &'static str,
    pub error: io::Error,
}

/// Distinguishes temporary files of concurrent writes from one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Enough to step over any stale temporaries a killed earlier run with the same pid left behind.
const MAX_TEMP_ATTEMPTS: u32 = 1000;

/// Atomic write of arbitrary bytes (also used for other run files): temp file in the same dir,
/// fsync, rename, fsync dir.
///
/// The temporary file is named `<file name>.<pid>-<n>.tmp` next to `path`, so the rename never
/// crosses file systems. On any error the temporary file is removed and an existing `path` is
/// left as it was. An existing file's permissions are carried over to its replacement.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), AtomicWriteError> {
    write_atomic_with(path, |file, _| {
        file.write_all(bytes).map_err(|error| AtomicWriteError {
            path: path.to_path_buf(),
            action: "write",
            error,
        })
    })
}

/// [`write_atomic`] of whatever `body` writes into the temporary file (buffered; the second
/// argument is the temporary file's path, for messages). A `body` error leaves `path` as
/// it was.
pub fn write_atomic_with<E: From<AtomicWriteError>>(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>, &Path) -> Result<(), E>,
) -> Result<(), E> {
    let io_err = |action, error| AtomicWriteError {
        path: path.to_path_buf(),
        action,
        error,
    };
    let file_name = path.file_name().ok_or_else(|| {
        io_err(
            "write",
            io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"),
        )
    })?;
    // `Path::parent` is `Some("")` for a bare file name, which means the current directory.
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };

    let (tmp_path, file) = create_temp(dir, &file_name.to_string_lossy())
        .map_err(|e| io_err("create a temporary file next to", e))?;

    let mut writer = BufWriter::new(file);
    let written = body(&mut writer, &tmp_path)
        .and_then(|()| finish(writer, &tmp_path, path).map_err(|e| E::from(io_err("write", e))));
    if written.is_err() {
        // Best effort: the write already failed, and a leftover temp file is harmless.
        let _ = fs::remove_file(&tmp_path);
        return written;
    }
    sync_dir(dir).map_err(|e| E::from(io_err("sync the directory of", e)))
}

/// Flushes the temporary file to disk with the old file's permissions, then renames it
/// over `path`: on disk before the rename, so a crash cannot leave the name over missing data.
fn finish(writer: BufWriter<File>, tmp_path: &Path, path: &Path) -> io::Result<()> {
    let file = writer.into_inner().map_err(|e| e.into_error())?;
    if let Ok(existing) = fs::metadata(path) {
        file.set_permissions(existing.permissions())?;
    }
    file.sync_all()?;
    drop(file);
    fs::rename(tmp_path, path)
}

/// Creates a fresh temporary file in `dir`, never opening one that already exists (a stale file
/// from a killed write, or a concurrent writer's).
fn create_temp(dir: &Path, file_name: &str) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    for _ in 0..MAX_TEMP_ATTEMPTS {
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp_path = dir.join(format!("{file_name}.{pid}-{n}.tmp"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
        {
            Ok(file) => return Ok((tmp_path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{MAX_TEMP_ATTEMPTS} temporary file names were taken; \
             remove stale `{file_name}.*.tmp` files in {}",
            dir.display()
        ),
    ))
}

/// Makes the rename itself durable: without this a power loss can bring back the old file.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Directories cannot be opened as files on other platforms; their renames are durable enough.
#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}
