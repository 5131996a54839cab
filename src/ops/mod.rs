//! One module per layer type: shape rules, parameters, cost, and how the layer dispatches
//! its shaders. Ops describe buffers by role (`Slot`); the graph decides which buffers.

mod batchnorm;
mod conv2d;
mod dense;
mod depthwise;
mod dispatch;
mod kernels;
mod layer;
mod op_kind;
mod optim;
mod pointwise;
mod pool;
mod prologue;
mod softmax;

#[doc(hidden)]
pub use crate::gpu::{ACCESS_KERNELS, GEMM_KERNELS, KERNELS};
pub use batchnorm::{BatchNorm, BnPartials};
pub use conv2d::Conv2d;
pub use dense::Dense;
pub use depthwise::Depthwise;
pub use dispatch::TrainSettings;
#[doc(hidden)]
pub use dispatch::{accumulating, Dispatch, ScratchSpec, Slot, REDUCE_CHUNK};
// For the ops' own files: the helpers they share.
use dispatch::{chunks, column_sum, linear_grid, sum_partials, uniform_words, LINEAR_WORKGROUP};
#[doc(hidden)]
pub use kernels::{alternatives, Alternatives, Candidate, KernelCaps};
use layer::{fused_bias, fused_bias_slot, fused_words, matrix, nhwc};
pub use layer::{Activation, Fused, Padding, ParamRole, ParamSpec, Window};
pub use op_kind::OpKind;
pub use optim::UpdateRule;
pub use pointwise::Pointwise;
#[doc(hidden)]
pub use pointwise::{
    subgroup_gemm_dispatch, tiled_gemm_dispatch, wide_subgroup_gemm_dispatch, TileRows,
};
pub use pool::GlobalAvgPool;
#[doc(hidden)]
pub use prologue::with_input_prologue;
pub use softmax::Softmax;
#[doc(hidden)]
pub use softmax::{accumulate_metrics, cross_entropy};
