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

    /// The file was read but its contents are not what the format requires.
    #[error("{}: {problem}. {help}", path.display())]
    Invalid {
        path: PathBuf,
        problem: String,
        help: String,
    },

    /// An image file in an image folder could not be decoded.
    #[error(
        "{}: cannot decode image: {source}. Re-save it as PNG or JPEG, or move it out of the dataset folder.",
        path.display()
    )]
    Decode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },

    /// A parameter passed by the caller cannot work (for example 2 channels).
    #[error("invalid argument: {0}")]
    Argument(String),

    /// The operating system refused to start the batch-loading thread.
    #[error("cannot start the batch-loading thread: {0}. The system is out of threads or memory.")]
    Thread(#[source] std::io::Error),
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
