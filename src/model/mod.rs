//! MobileNet V1 (Howard et al. 2017): the configuration (`config`), the graph it builds
//! (`build`), the names of its layers (`layers`), batch norm folded into the inference
//! form (`fold`) and the layer table (`summary`); `quantized` compiles a folded graph to the
//! int8 kernels (issue 21).

mod build;
mod config;
mod error;
mod fold;
mod layers;
mod quantized;
mod summary;

pub use build::{Form, MobileNetV1};
pub use config::{MobileNetV1Config, Preset, BLOCKS, STEM_CHANNELS};
pub use error::{FoldError, ModelError};
pub use fold::fold_batchnorm;
#[doc(hidden)]
pub use layers::{conv_bn_pair, POOL_STAGE, STAGES};
pub use layers::{CLASSIFIER, CONV_LAYERS};
pub use quantized::{Int8Outputs, Int8Plan};
pub use summary::{Summary, SummaryRow};
