//! Why a weight file could not be read or written, with the next step for each case.

use crate::atomic_file::AtomicWriteError;
use std::io;
use std::path::PathBuf;

/// Why a weight file could not be read or written. Every message names the file and says what
/// to do; the underlying error's text is part of the message (not a separate `source`), so
/// printing the error alone is enough.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The operating system refused to read or write the file.
    #[error("cannot {action} `{}`: {error}{}", path.display(), io_hint(error))]
    Io {
        path: PathBuf,
        /// What was being done, e.g. "read" or "write".
        action: &'static str,
        error: io::Error,
    },
    /// The bytes are not a well-formed safetensors file.
    #[error(
        "`{}` is not a valid safetensors file: {reason}; re-export it or copy it again \
         (interrupted downloads and copies leave files like this)",
        path.display()
    )]
    NotSafetensors { path: PathBuf, reason: String },
    /// A tensor's element type cannot be turned into f32 weights.
    #[error(
        "`{}`: tensor `{tensor}` is stored as {dtype}{}, which cannot be loaded as weights; \
         supported are F32, F64, F16 and BF16 (wider integer and BOOL tensors are skipped); \
         convert it to float32 when exporting",
        path.display(),
        dtype_hint(dtype)
    )]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    /// An int8 file of `mobilenet quantize` where float weights are needed.
    #[error(
        "`{}` is an int8 file written by `mobilenet quantize`; {INT8_FILE_USE}",
        path.display()
    )]
    Int8File { path: PathBuf },
    /// A tensor handed to `save_safetensors` cannot be written as given.
    #[error("cannot save `{}`: tensor `{tensor}` {problem}", path.display())]
    InvalidTensor {
        path: PathBuf,
        tensor: String,
        problem: String,
    },
}

impl From<AtomicWriteError> for WeightsError {
    fn from(e: AtomicWriteError) -> Self {
        WeightsError::Io {
            path: e.path,
            action: e.action,
            error: e.error,
        }
    }
}

/// What to do with an int8 file offered where float weights are needed. Kept in one place
/// so that it changes once when more commands take int8 files.
const INT8_FILE_USE: &str = "this command needs float weights (eval, predict, bench --mode \
     infer --weights and export --format onnx take int8 files; train, finetune, export \
     --format timm and preprocess read float files only): pass the float checkpoint it was \
     quantized from";

/// A next step for the common I/O failures.
fn io_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::NotFound => " (check the path; its directory must exist)",
        io::ErrorKind::PermissionDenied => " (check the permissions of the file and its directory)",
        io::ErrorKind::StorageFull => " (free some disk space and retry)",
        _ => "",
    }
}

/// 8-bit integers in checkpoints are normally quantised weights, useless without their scales.
fn dtype_hint(dtype: &str) -> &'static str {
    match dtype {
        "U8" | "I8" => " (8-bit integers usually hold quantised weights)",
        _ => "",
    }
}
