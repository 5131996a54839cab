//! One module per layer type: shape rules, parameters, cost, and how the layer dispatches
//! its shaders. Ops describe buffers by role (`Slot`); the graph decides which buffers.

mod batchnorm;
mod conv2d;
mod dense;
mod depthwise;
mod kernels;
mod optim;
mod pointwise;
mod pool;
mod softmax;

pub use batchnorm::{BatchNorm, BnPartials};
pub use conv2d::Conv2d;
pub use dense::Dense;
pub use depthwise::Depthwise;
#[doc(hidden)]
pub use kernels::{
    alternatives, Alternatives, Candidate, KernelCaps, ACCESS_KERNELS, GEMM_KERNELS, KERNELS,
};
pub use optim::UpdateRule;
pub use pointwise::Pointwise;
#[doc(hidden)]
pub use pointwise::{
    subgroup_gemm_dispatch, tiled_gemm_dispatch, wide_subgroup_gemm_dispatch, TileRows,
};
pub use pool::GlobalAvgPool;
pub use softmax::Softmax;
#[doc(hidden)]
pub use softmax::{accumulate_metrics, cross_entropy};

use crate::gpu::Shader;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    None,
    #[default]
    Relu,
    Relu6,
}

impl Activation {
    /// The code the shaders switch on (common.wgsl's ACT_* constants).
    #[doc(hidden)]
    pub fn shader_code(self) -> u32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Relu6 => 2,
        }
    }
}

impl FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "linear" => Ok(Activation::None),
            "relu" => Ok(Activation::Relu),
            "relu6" => Ok(Activation::Relu6),
            other => Err(format!(
                "unknown activation {other:?}; expected none, relu or relu6"
            )),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
        })
    }
}

/// How a convolution pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// kernel/2 on every side (PyTorch, timm, the paper).
    #[default]
    Symmetric,
    /// TensorFlow SAME: output = ceil(input / stride), any odd padding goes after (Keras).
    Same,
}

impl Padding {
    /// Output size and padding before the first element along one spatial axis.
    pub fn resolve(self, input: usize, kernel: usize, stride: usize) -> (usize, usize) {
        match self {
            Padding::Symmetric => {
                let pad = kernel / 2;
                ((input + 2 * pad).saturating_sub(kernel) / stride + 1, pad)
            }
            Padding::Same => {
                let out = input.div_ceil(stride);
                let total = ((out - 1) * stride + kernel).saturating_sub(input);
                (out, total / 2)
            }
        }
    }
}

impl FromStr for Padding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "symmetric" | "torch" => Ok(Padding::Symmetric),
            "same" | "tf" | "tf-same" => Ok(Padding::Same),
            other => Err(format!(
                "unknown padding {other:?}; expected symmetric or same"
            )),
        }
    }
}

impl fmt::Display for Padding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Padding::Symmetric => "symmetric",
            Padding::Same => "same",
        })
    }
}

/// Output size and leading padding of a KxK sliding window over an NHWC input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub out_h: usize,
    pub out_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl Window {
    pub fn of(input: &[usize], kernel: usize, stride: usize, padding: Padding) -> Window {
        let (out_h, pad_top) = padding.resolve(input[1], kernel, stride);
        let (out_w, pad_left) = padding.resolve(input[2], kernel, stride);
        Window {
            out_h,
            out_w,
            pad_top,
            pad_left,
        }
    }
}

/// What a parameter is, which decides its initialisation and whether it is trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRole {
    /// A convolution or dense kernel; `fan_in` drives He initialisation. Depthwise filters
    /// are marked because the paper advises no weight decay on them.
    Weight {
        fan_in: usize,
        depthwise: bool,
    },
    Bias,
    Gamma,
    Beta,
    RunningMean,
    RunningVar,
}

impl ParamRole {
    pub fn trainable(self) -> bool {
        !matches!(self, ParamRole::RunningMean | ParamRole::RunningVar)
    }
}

/// A parameter tensor an op owns, named `<op name>.<suffix>` in the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub suffix: &'static str,
    pub shape: Vec<usize>,
    pub role: ParamRole,
}

impl ParamSpec {
    fn new(suffix: &'static str, shape: Vec<usize>, role: ParamRole) -> Self {
        ParamSpec {
            suffix,
            shape,
            role,
        }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// Slot, ScratchSpec, Dispatch and the ops' forward/backward/scratch/workspace methods are
// how ops talk to the graph's planner: public for the crate's own modules and tests, hidden
// from the documentation, not a stable API.

/// Which buffer a shader binding receives. Op-relative slots (`Param`, `ParamGrad`,
/// `Scratch`) are resolved by the plan against the op's own tensors.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    Input,
    Output,
    /// The op's n-th parameter, in `params()` order.
    Param(usize),
    /// Gradient of the loss with respect to the output (read in the backward pass).
    GradOutput,
    /// Gradient with respect to the input (written in the backward pass).
    GradInput,
    /// Gradient of the op's n-th parameter.
    ParamGrad(usize),
    /// The op's n-th scratch buffer, see `ScratchSpec`.
    Scratch(usize),
    /// Class labels of the batch (u32), for the loss.
    Labels,
    /// Per-sample loss, written by the loss.
    Loss,
    /// Running training metrics (loss sum, correct, samples), read back when logged.
    Metrics,
    /// The n-th optimizer state tensor of a parameter.
    OptState(usize),
    /// The optimizer's per-step uniform block (learning rate and friends).
    Hyper,
    /// A placeholder for a binding the dispatch reads only conditionally (e.g. GEMM bias).
    Unused,
    /// Working memory of the forward pass (the stem's unfolded input patches), shared by
    /// all ops and dead after each op; `OpKind::workspace` gives its size.
    Workspace,
}

/// Working memory an op needs beyond its inputs, outputs and parameters.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScratchSpec {
    pub floats: usize,
    /// Persistent scratch survives from the forward to the backward pass (BN statistics);
    /// transient scratch (reduction partials) is only used within one op's dispatches
    /// and may be shared between ops.
    pub persistent: bool,
}

/// One compute dispatch of an op: pipeline, uniform contents (binding 0), the buffers of
/// the other bindings, and the grid size. `bindings` may name more bindings than the entry
/// point uses; the plan binds only those the shader reads (found by naga reflection).
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct Dispatch {
    pub shader: Shader,
    pub entry: &'static str,
    pub uniform: Vec<u8>,
    pub bindings: Vec<(u32, Slot)>,
    pub workgroups: [u32; 3],
}

/// The most workgroups per grid dimension every WebGPU adapter accepts.
const MAX_GROUPS_PER_DIM: u32 = 65535;
/// Must match the default of WG_SIZE in common.wgsl.
const LINEAR_WORKGROUP: usize = 64;
/// Rows summed by one invocation in the first stage of a two-stage reduction.
#[doc(hidden)]
pub const REDUCE_CHUNK: usize = 256;

/// Grid for the one-output-per-invocation kernels (see `linear_index` in common.wgsl).
fn linear_grid(threads: usize) -> [u32; 3] {
    let groups = threads.div_ceil(LINEAR_WORKGROUP).max(1) as u32;
    let x = groups.min(MAX_GROUPS_PER_DIM);
    [x, groups.div_ceil(x), 1]
}

fn uniform_words(words: &[u32]) -> Vec<u8> {
    bytemuck::cast_slice(words).to_vec()
}

/// Number of REDUCE_CHUNK-row chunks covering `rows`.
fn chunks(rows: usize) -> usize {
    rows.div_ceil(REDUCE_CHUNK).max(1)
}

/// reduce.wgsl's stage 2: `out[c] = sum_s partials[s, c]` over `parts` partials of `len`.
fn sum_partials(partials: Slot, out: Slot, parts: usize, len: usize) -> Dispatch {
    let words = [parts, len, REDUCE_CHUNK, parts, 0, 0, 0, 0].map(|v| v as u32);
    Dispatch {
        shader: Shader::Reduce,
        entry: "sum_partials",
        uniform: uniform_words(&words),
        bindings: vec![(1, partials), (2, out)],
        workgroups: linear_grid(len),
    }
}

/// The same dispatch adding to its output instead of overwriting it, for the dispatches
/// that write parameter gradients (the GEMM, `sum_partials`): a plan that splits the batch
/// adds each later chunk's share. `None` for any other dispatch.
#[doc(hidden)]
pub fn accumulating(dispatch: &Dispatch) -> Option<Dispatch> {
    let word = match (dispatch.shader, dispatch.entry) {
        (Shader::Gemm | Shader::GemmVec4, _) => 9,
        (Shader::Reduce, "sum_partials") => 4,
        _ => return None,
    };
    let mut words: Vec<u32> = bytemuck::try_cast_slice(&dispatch.uniform).ok()?.to_vec();
    *words.get_mut(word)? = 1;
    Some(Dispatch {
        uniform: uniform_words(&words),
        ..dispatch.clone()
    })
}

/// Column sums of a [rows, cols] tensor into `out`, through `partials` (two stages).
fn column_sum(input: Slot, partials: Slot, out: Slot, rows: usize, cols: usize) -> [Dispatch; 2] {
    let parts = chunks(rows);
    let words = [rows, cols, REDUCE_CHUNK, parts, 0, 0, 0, 0].map(|v| v as u32);
    [
        Dispatch {
            shader: Shader::Reduce,
            entry: "column_partial",
            uniform: uniform_words(&words),
            bindings: vec![(1, input), (2, partials)],
            workgroups: linear_grid(parts * cols),
        },
        sum_partials(partials, out, parts, cols),
    ]
}

/// Checks a rank-4 NHWC shape.
fn nhwc(shape: &[usize]) -> Result<[usize; 4], String> {
    match shape {
        &[n, h, w, c] if n > 0 && h > 0 && w > 0 && c > 0 => Ok([n, h, w, c]),
        _ => Err(format!(
            "expected a non-empty NHWC tensor [N, H, W, C], got {shape:?}"
        )),
    }
}

/// Batchnorm folded into a convolution for inference: a per-output-channel bias, then the
/// activation, applied as the convolution writes its output. `None`: the plain convolution.
/// Fused ops are inference-only (training keeps batchnorm separate).
pub type Fused = Option<Activation>;

/// The fused bias as the op's second parameter.
fn fused_bias(fused: Fused, channels: usize) -> Option<ParamSpec> {
    fused.map(|_| ParamSpec::new("bias", vec![channels], ParamRole::Bias))
}

/// Uniform words (has_bias, act) of a fused epilogue.
fn fused_words(fused: Fused) -> [usize; 2] {
    match fused {
        Some(activation) => [1, activation.shader_code() as usize],
        None => [0, 0],
    }
}

/// Where the shader's bias binding points: the fused bias, or nothing.
fn fused_bias_slot(fused: Fused) -> Slot {
    if fused.is_some() {
        Slot::Param(1)
    } else {
        Slot::Unused
    }
}

/// Checks a rank-2 [N, features] shape.
fn matrix(shape: &[usize]) -> Result<[usize; 2], String> {
    match shape {
        &[n, f] if n > 0 && f > 0 => Ok([n, f]),
        _ => Err(format!(
            "expected a non-empty [N, features] tensor, got {shape:?}"
        )),
    }
}

/// Every layer type the graph can hold.
#[derive(Clone, Debug, PartialEq)]
pub enum OpKind {
    Conv2d(Conv2d),
    Depthwise(Depthwise),
    Pointwise(Pointwise),
    BatchNorm(BatchNorm),
    GlobalAvgPool(GlobalAvgPool),
    Dense(Dense),
    Softmax(Softmax),
}

macro_rules! each_op {
    ($self:ident, $op:ident => $body:expr) => {
        match $self {
            OpKind::Conv2d($op) => $body,
            OpKind::Depthwise($op) => $body,
            OpKind::Pointwise($op) => $body,
            OpKind::BatchNorm($op) => $body,
            OpKind::GlobalAvgPool($op) => $body,
            OpKind::Dense($op) => $body,
            OpKind::Softmax($op) => $body,
        }
    };
}

impl OpKind {
    /// The short type name shown in summaries and errors.
    pub fn type_name(&self) -> &'static str {
        match self {
            OpKind::Conv2d(_) => "Conv2d",
            OpKind::Depthwise(_) => "DepthwiseConv2d",
            OpKind::Pointwise(_) => "PointwiseConv2d",
            OpKind::BatchNorm(_) => "BatchNorm+Act",
            OpKind::GlobalAvgPool(_) => "GlobalAvgPool",
            OpKind::Dense(_) => "Dense",
            OpKind::Softmax(_) => "Softmax",
        }
    }

    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        each_op!(self, op => op.output_shape(input))
    }

    pub fn params(&self, input: &[usize]) -> Vec<ParamSpec> {
        each_op!(self, op => op.params(input))
    }

    /// Multiply-accumulates of one forward pass, counted as the paper counts them:
    /// convolutions and the classifier only.
    pub fn mult_adds(&self, input: &[usize], output: &[usize]) -> u64 {
        each_op!(self, op => op.mult_adds(input, output))
    }

    /// The folded-batchnorm epilogue of a convolution, if it has one (see `Fused`).
    pub fn fused(&self) -> Fused {
        match self {
            OpKind::Conv2d(op) => op.fused,
            OpKind::Depthwise(op) => op.fused,
            OpKind::Pointwise(op) => op.fused,
            _ => None,
        }
    }

    /// Dispatches of the inference forward pass.
    #[doc(hidden)]
    pub fn forward(&self, input: &[usize], output: &[usize]) -> Vec<Dispatch> {
        each_op!(self, op => op.forward(input, output))
    }

    /// Dispatches of the training forward pass (batch norm uses batch statistics).
    #[doc(hidden)]
    pub fn forward_train(
        &self,
        input: &[usize],
        output: &[usize],
        train: &TrainSettings,
    ) -> Vec<Dispatch> {
        match self {
            OpKind::BatchNorm(op) => op.forward_train(input, train),
            other => other.forward(input, output),
        }
    }

    /// Dispatches of the backward pass: parameter gradients always, the input gradient
    /// only when `input_grad` (the first op of a network does not need it).
    #[doc(hidden)]
    pub fn backward(
        &self,
        input: &[usize],
        output: &[usize],
        input_grad: bool,
        train: &TrainSettings,
    ) -> Vec<Dispatch> {
        match self {
            OpKind::BatchNorm(op) => op.backward(input, output, input_grad, train),
            OpKind::Conv2d(op) => op.backward(input, output, input_grad),
            OpKind::Depthwise(op) => op.backward(input, output, input_grad),
            OpKind::Pointwise(op) => op.backward(input, output, input_grad),
            OpKind::Dense(op) => op.backward(input, output, input_grad),
            OpKind::GlobalAvgPool(op) => op.backward(input, output, input_grad),
            OpKind::Softmax(op) => op.backward(input, output, input_grad),
        }
    }

    /// The layout of the partial sums batch norm exchanges under sync-BN; None for other ops.
    #[doc(hidden)]
    pub fn bn_partials(&self, input: &[usize]) -> Option<BnPartials> {
        match self {
            OpKind::BatchNorm(op) => Some(op.partials(input)),
            _ => None,
        }
    }

    /// Floats of `Slot::Workspace` the forward pass needs.
    #[doc(hidden)]
    pub fn workspace(&self, input: &[usize], output: &[usize]) -> usize {
        match self {
            OpKind::Conv2d(op) => op.workspace(input, output),
            _ => 0,
        }
    }

    /// Scratch buffers the training dispatches use, indexed by `Slot::Scratch`.
    #[doc(hidden)]
    pub fn scratch(&self, input: &[usize], output: &[usize]) -> Vec<ScratchSpec> {
        each_op!(self, op => op.scratch(input, output))
    }
}

/// Training hyper-parameters the ops themselves need.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrainSettings {
    /// Weight of the batch statistic in the running-statistics update (PyTorch's
    /// convention: 0.1 there; Keras' momentum 0.99 is 0.01 here).
    pub bn_momentum: f32,
    /// Replicas whose batches batch norm pools its statistics over (sync-BN); 1: each
    /// replica normalises with its own batch's. Above 1 the plan exchanges each BN's
    /// partial sums with the other replicas between the dispatches of `BatchNorm::SYNC_AFTER`.
    pub synced_replicas: usize,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            bn_momentum: 0.1,
            synced_replicas: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaders(dispatches: &[Dispatch]) -> Vec<Shader> {
        dispatches.iter().map(|d| d.shader).collect()
    }

    // Channel counts that divide by 4 (all of MobileNet's at the usual widths) take the
    // vec4 forms, which are several times faster on lavapipe; others still work.
    #[test]
    fn depthwise_and_batchnorm_take_vec4_forms_when_channels_divide_by_4() {
        let depthwise = Depthwise {
            kernel: 3,
            stride: 2,
            padding: Padding::Symmetric,
            fused: None,
        };
        let (aligned, aligned_out) = ([2, 16, 16, 32], [2, 8, 8, 32]);
        let (odd, odd_out) = ([2, 16, 16, 13], [2, 8, 8, 13]);
        for dispatches in [
            depthwise.forward(&aligned, &aligned_out),
            depthwise.backward(&aligned, &aligned_out, true),
        ] {
            let first = dispatches[0].shader;
            assert_eq!(first, Shader::DepthwiseVec4, "{:?}", shaders(&dispatches));
        }
        assert_eq!(
            depthwise.forward(&odd, &odd_out)[0].shader,
            Shader::Depthwise
        );
        let bn = BatchNorm {
            eps: 1e-5,
            activation: Activation::Relu,
        };
        let settings = TrainSettings::default();
        assert!(shaders(&bn.forward_train(&aligned, &settings))
            .iter()
            .all(|&s| s == Shader::BnActVec4));
        assert!(
            shaders(&bn.backward(&aligned, &aligned, true, &TrainSettings::default()))
                .iter()
                .all(|&s| s == Shader::BnActVec4)
        );
        assert!(shaders(&bn.forward_train(&odd, &settings))
            .iter()
            .all(|&s| s == Shader::BnAct));
    }

    #[test]
    fn symmetric_padding_matches_pytorch_sizes() {
        assert_eq!(Padding::Symmetric.resolve(224, 3, 2), (112, 1));
        assert_eq!(Padding::Symmetric.resolve(7, 3, 2), (4, 1));
        assert_eq!(Padding::Symmetric.resolve(15, 3, 1), (15, 1));
        assert_eq!(Padding::Symmetric.resolve(1, 3, 2), (1, 1));
    }

    #[test]
    fn same_padding_matches_tensorflow_sizes() {
        // Even input, stride 2: nothing before, one after.
        assert_eq!(Padding::Same.resolve(224, 3, 2), (112, 0));
        // Odd input, stride 2: one on each side.
        assert_eq!(Padding::Same.resolve(7, 3, 2), (4, 1));
        assert_eq!(Padding::Same.resolve(15, 3, 1), (15, 1));
        assert_eq!(Padding::Same.resolve(1, 3, 2), (1, 1));
    }

    #[test]
    fn grid_covers_more_than_one_dimension_allows() {
        let grid = linear_grid(64 * 70000);
        assert_eq!(grid[0], 65535);
        assert!(grid[0] as usize * grid[1] as usize * 64 >= 64 * 70000);
    }
}
