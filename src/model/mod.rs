//! MobileNet V1 (Howard et al. 2017): the configuration (`config`), the graph it builds
//! (`build`), the names of its layers (`layers`), batch norm folded into the inference
//! form (`fold`) and the layer table (`summary`).

mod build;
mod config;
mod error;
mod fold;
mod layers;
mod summary;

pub use build::{Form, MobileNetV1};
pub use config::{MobileNetV1Config, Preset, BLOCKS, STEM_CHANNELS};
pub use error::{FoldError, ModelError};
pub use fold::fold_batchnorm;
#[doc(hidden)]
pub use layers::{conv_bn_pair, POOL_STAGE, STAGES};
pub use layers::{CLASSIFIER, CONV_LAYERS};
pub use summary::{Summary, SummaryRow};
