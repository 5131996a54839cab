//! Weight files in the safetensors format, independent of any model: named f32 tensors plus
//! string metadata, and crash-safe writing of run files.
//!
//! `pretrained` maps the MobileNet V1 namings users meet (ours, timm, Keras) onto the model's
//! parameters; `fold` turns trained parameters into the inference form; `onnx` writes the
//! network as an ONNX model.

mod atomic;
mod file;
mod fold;
mod onnx;
mod pretrained;

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

#[doc(hidden)]
pub use atomic::write_atomic;
pub use file::{load_safetensors, save_safetensors};
pub use fold::{fold_batchnorm, FoldError};
pub use onnx::{
    encode_onnx, export_onnx, InputLayout, OnnxError, OnnxOptions, OnnxSummary, ONNX_OPSET,
};
pub use pretrained::{
    default_class_names, export_timm, load_pretrained, Naming, Pretrained, PretrainedError,
};

/// One tensor as the model uses it: row-major f32 values.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Everything usable in a safetensors file, tensors in file (data offset) order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadedFile {
    pub tensors: Vec<NamedTensor>,
    /// The header's `__metadata__` map (empty when the file has none).
    pub metadata: BTreeMap<String, String>,
    /// Integer (or bool) tensors that are not weights, e.g. PyTorch's `num_batches_tracked` (I64): (name, dtype as text).
    pub skipped: Vec<(String, String)>,
}

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
    /// A tensor handed to `save_safetensors` cannot be written as given.
    #[error("cannot save `{}`: tensor `{tensor}` {problem}", path.display())]
    InvalidTensor {
        path: PathBuf,
        tensor: String,
        problem: String,
    },
}

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
