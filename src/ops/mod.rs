//! One module per layer type: shape rules, parameters, cost, and how the layer dispatches
//! its shaders. Ops describe buffers by role (`Slot`); the graph decides which buffers.
//! The int8 layers (issue 21) are `int8` (the scheme's packing, bias fold, multipliers and
//! bounds) and `int8_ops` (their dispatches).

mod batchnorm;
mod conv2d;
mod dense;
mod depthwise;
mod depthwise_epilogue;
mod dispatch;
mod epilogue;
mod gemm;
mod gemm_kernels;
pub mod int8;
mod int8_ops;
mod kernels;
mod layer;
mod op_kind;
mod optim;
mod pointwise;
mod pool;
mod prologue;
mod softmax;

#[doc(hidden)]
pub use crate::gpu::{ACCESS_KERNELS, GEMM_KERNELS, INT8_GEMM_KERNELS, KERNELS, WORDS64_KERNEL};
pub use batchnorm::{BatchNorm, BnPartials};
pub use conv2d::Conv2d;
pub use dense::Dense;
pub use depthwise::Depthwise;
#[doc(hidden)]
pub use depthwise_epilogue::with_depthwise_epilogue;
pub use dispatch::TrainSettings;
#[doc(hidden)]
pub use dispatch::{Dispatch, ScratchSpec, Slot, REDUCE_CHUNK};
pub use epilogue::{with_input_sums, with_output_stats};
// For the ops' own files: the helpers they share.
use dispatch::{
    chunks, column_sum, linear_grid, linear_grid_of, sum_partials, uniform_words, LINEAR_WORKGROUP,
    SUM_PARTIALS_ACCUMULATE_WORD, SUM_PARTIALS_BINDINGS,
};
#[doc(hidden)]
pub use gemm::accumulating;
#[doc(hidden)]
pub use gemm_kernels::{
    narrow_subgroup_gemm_dispatch, subgroup_gemm_dispatch, tall_subgroup_gemm_dispatch,
    tiled_gemm_dispatch, wide_subgroup_gemm_dispatch, TileRows,
};
pub use int8::{Int8Activation, Int8LayerParams, Int8Numbers, Int8Output};
pub use int8_ops::{int8_pointwise, Int8Depthwise, Int8Gemm, Int8Pool, Int8Stem, Int8Window};
#[doc(hidden)]
pub use kernels::{alternatives, Alternatives, Candidate, KernelCaps};
use layer::{fused_bias, fused_bias_slot, fused_words, matrix, nhwc};
pub use layer::{Activation, Fused, GpuLayout, Padding, ParamRole, ParamSpec, Window};
pub use op_kind::OpKind;
pub use optim::{UpdateRule, UpdateTensor, UPDATE_TABLE_TENSORS};
pub use pointwise::Pointwise;
pub use pool::GlobalAvgPool;
#[doc(hidden)]
pub use prologue::{with_input_prologue, with_output_grad_prologue};
pub use softmax::Softmax;
#[doc(hidden)]
pub use softmax::{accumulate_metrics, cross_entropy};
