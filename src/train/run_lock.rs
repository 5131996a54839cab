//! One run per run directory. Two `mobilenet train --out D` started together would both write
//! `D` (metrics.jsonl then holds every epoch twice), so a run holds an advisory lock on
//! `D/.lock` for its whole life. The operating system drops the lock when the process ends,
//! however it ends, so a killed run never blocks the next one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context};

/// The lock file's name inside a run directory.
pub const LOCK: &str = ".lock";

/// Held while a run writes its directory; dropping it releases the directory.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

impl RunLock {
    /// Locks `dir` for this process, or says which process holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<RunLock> {
        let path = dir.join(LOCK);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the run lock {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                bail!(
                    "{} is in use by another run (process {}); wait for it to finish, stop it, or choose another --out",
                    dir.display(),
                    holder.trim()
                );
            }
            Err(TryLockError::Error(error)) => {
                return Err(error)
                    .with_context(|| format!("cannot lock the run directory {}", dir.display()))
            }
        }
        // The holder's process id, for the message a second run prints.
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.sync_all())
            .with_context(|| format!("cannot write the run lock {}", path.display()))?;
        Ok(RunLock { _file: file })
    }
}
