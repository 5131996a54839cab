//! Weight files: safetensors (named f32 tensors plus string metadata, `file`), run
//! checkpoints (`checkpoint`), and their errors (`error`).
//!
//! `pretrained` maps the MobileNet V1 namings users meet (ours, timm, Keras) onto the model's
//! parameters; `onnx` writes the
//! network as an ONNX model.

pub mod checkpoint;
mod error;
mod file;
mod onnx;
mod pretrained;

/// BN folding lives with the model; kept reachable where weight tools look for it.
pub use crate::model::{fold_batchnorm, FoldError};
pub use error::WeightsError;
pub use file::{load_safetensors, save_safetensors, write_atomic, LoadedFile, NamedTensor};
pub use onnx::{
    encode_onnx, export_onnx, InputLayout, OnnxError, OnnxOptions, OnnxSummary, ONNX_OPSET,
};
pub use pretrained::{
    default_class_names, export_timm, load_pretrained, Naming, Pretrained, PretrainedError,
};
