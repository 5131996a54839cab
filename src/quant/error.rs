//! Why quantization, or reading an int8 file, failed, with the next step for each case.

use crate::data::DataError;
use crate::graph::GraphError;
use crate::model::{FoldError, ModelError};
use crate::weights::WeightsError;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum QuantError {
    #[error(transparent)]
    File(#[from] WeightsError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Fold(#[from] FoldError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Data(#[from] DataError),
    /// Options that cannot work (no images, batch 0).
    #[error("{0}")]
    Options(String),
    /// The float model's activations hold NaN or infinity.
    #[error(
        "the float model produced {count} non-finite values in `{tensor}` during calibration; \
         its weights are broken (a diverged run?): check it with `mobilenet eval` and \
         quantize a checkpoint that evaluates well"
    )]
    NonFinite { tensor: String, count: u64 },
    /// The file is safetensors but not an int8 file of ours.
    #[error("`{}` is not an int8 file written by `mobilenet quantize`: {reason}", path.display())]
    NotInt8 { path: PathBuf, reason: String },
    /// An int8 file whose tensors or metadata do not match its configuration.
    #[error(
        "`{}` is a damaged or mismatched int8 file:\n  {}\nwrite it again with \
         `mobilenet quantize --weights FLOAT_WEIGHTS ... --out {}`",
        path.display(),
        problems.join("\n  "),
        path.display()
    )]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}
