use std::path::{Path, PathBuf};

/// Why a dataset could not be loaded. Every variant that concerns a file names it, says what is
/// wrong with it and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A dataset directory or file is not where it was expected.
    #[error("{}: not found. {help}", path.display())]
    Missing { path: PathBuf, help: String },

    /// The file exists but the operating system refused to read it.
    #[error("{}: cannot read: {source}. Check that the path is right and readable.", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file could not be written or replaced (for example a full disk or a read-only folder).
    #[error("{}: cannot write: {source}. Check that the folder is writable and the disk has space.", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file was read but its contents are not what the format requires.
    #[error("{}: {problem}. {help}", path.display())]
    Invalid {
        path: PathBuf,
        problem: String,
        help: String,
    },

    /// An image file could not be decoded.
    #[error(
        "{}: cannot decode image: {reason}. Re-save it as PNG or JPEG, or move it out of the dataset folder.",
        path.display()
    )]
    Decode { path: PathBuf, reason: String },

    /// More of a data set's files failed to decode than the run tolerates.
    #[error(
        "{bad} of {total} images could not be decoded, more than --max-bad-fraction {max_fraction} allows{}. \
         Fix or remove the files reported above (a half-copied or half-downloaded data set looks like this), \
         or raise --max-bad-fraction.",
        last.as_ref().map(|bad| format!(" (latest: {bad})")).unwrap_or_default()
    )]
    TooManyBad {
        bad: usize,
        total: usize,
        max_fraction: f64,
        last: Option<BadSample>,
    },

    /// Every image of a batch failed to decode, so it cannot be filled.
    #[error(
        "every image of batch {batch} failed to decode{}; fix or remove these files",
        last.as_ref().map(|bad| format!(" (latest: {bad})")).unwrap_or_default()
    )]
    AllBad {
        batch: usize,
        last: Option<BadSample>,
    },

    /// A loading thread failed in a way that is not the data's fault.
    #[error("data loading failed: {0}")]
    Worker(String),

    /// A parameter passed by the caller cannot work (for example 2 channels).
    #[error("invalid argument: {0}")]
    Argument(String),

    /// The operating system refused to start the batch-loading thread.
    #[error("cannot start the batch-loading thread: {0}. The system is out of threads or memory.")]
    Thread(#[source] std::io::Error),
}

/// A sample that could not be read or decoded: skipped, counted and reported by origin.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct BadSample {
    /// The file's path, or `SHARD:KEY` for a shard member.
    pub origin: String,
    pub reason: String,
}

impl std::fmt::Display for BadSample {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.origin, self.reason)
    }
}

impl DataError {
    pub(crate) fn invalid(
        path: &Path,
        problem: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        DataError::Invalid {
            path: path.to_path_buf(),
            problem: problem.into(),
            help: help.into(),
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Rejects the first label that is not a valid class index, so a corrupt label can never become an
/// out-of-bounds index on the GPU.
pub(crate) fn check_labels(
    path: &Path,
    labels: &[u32],
    class_count: usize,
    help: &str,
) -> Result<(), DataError> {
    match labels
        .iter()
        .position(|&label| label as usize >= class_count)
    {
        None => Ok(()),
        Some(index) => Err(DataError::invalid(
            path,
            format!(
                "label {} of sample {index} is out of range (expected 0..{class_count})",
                labels[index]
            ),
            help,
        )),
    }
}

/// The text a panic carried, for reporting a crashed thread as an error.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        return (*text).to_string();
    }
    if let Some(text) = payload.downcast_ref::<String>() {
        return text.clone();
    }
    "panic without a message".to_string()
}

impl From<crate::atomic_file::AtomicWriteError> for DataError {
    fn from(e: crate::atomic_file::AtomicWriteError) -> Self {
        DataError::Write {
            path: e.path,
            source: e.error,
        }
    }
}
