//! Post-training int8 quantization (issue 21; the arithmetic is fixed in INT8.md).
//!
//! Lower files first: `scheme` is the arithmetic (weight, activation and bias
//! quantization); `histogram` what calibration keeps of a
//! tensor and `range` how a method (min/max, percentile, MSE) turns that into a range;
//! `tensors` which tensors of the folded network are quantized and their names in the
//! file; `error` what goes wrong; `calibrate` runs the float network on the GPU over the
//! user's images; `model` is the quantized network and `quantize`; `file` its safetensors
//! file; `onnx` writes it as a QDQ ONNX model.

mod calibrate;
mod error;
mod file;
mod histogram;
mod model;
pub mod onnx;
mod range;
mod scheme;
mod tensors;

pub use calibrate::{
    calibrate, Calibration, CalibrationOptions, DEFAULT_CALIBRATION_BATCH,
    DEFAULT_CALIBRATION_IMAGES,
};
pub use error::QuantError;
pub use file::SCHEME;
pub use histogram::{ActivationStats, HISTOGRAM_BINS};
pub use model::{quantize, quantize_with_ranges, CalibrationInfo, QuantizedLayer, QuantizedModel};
pub use range::{Method, DEFAULT_PERCENTILE};
pub use scheme::{
    quantize_bias, quantize_weights, QuantParams, QuantizedWeights, ACT_Q_MAX, ACT_Q_MIN,
    WEIGHT_Q_MAX,
};
pub use tensors::{activation_tensors, weight_layers, ActivationTensor, WeightLayer};
