//! Weight files: safetensors (named f32 tensors plus string metadata, `file`; raw tensors
//! of any dtype for the int8 file, which float loaders refuse there), run
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
pub use file::{
    load_safetensors, load_safetensors_raw, parse_metadata, save_safetensors, save_safetensors_raw,
    write_atomic, LoadedFile, NamedTensor, RawFile, RawTensor, INT8_FORMAT,
};
/// The ONNX writer's pieces, for the int8 exporter in `quant`.
pub(crate) use onnx::{
    activation_node, common_metadata, conv_attributes, finish_model, input_node, int, onnx_layout,
    GraphWriter, ModelParts, INT32, INT8,
};
pub use onnx::{
    encode_onnx, export_onnx, InputLayout, OnnxError, OnnxOptions, OnnxSummary, ONNX_OPSET,
};
pub use pretrained::{
    default_class_names, export_timm, load_pretrained, Naming, Pretrained, PretrainedError,
};
