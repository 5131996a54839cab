//! `OpKind`: every layer type the graph can hold, and the calls the graph makes on any of
//! them (shapes, parameters, cost, dispatches forward and backward).

use super::{
    with_depthwise_epilogue, BatchNorm, BnPartials, Conv2d, Dense, Depthwise, Dispatch, Fused,
    GlobalAvgPool, KernelCaps, ParamSpec, Pointwise, ScratchSpec, Softmax, TrainSettings,
};

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

    /// The inference forward of this op and of `next`, which reads only this op's output,
    /// as one dispatch where a kernel computes both: a pointwise layer and a 3x3 depthwise
    /// layer on small images (`with_depthwise_epilogue`; images of 4x4 pixels where the
    /// adapter runs the subgroup GEMM tiles, `caps`). `None` elsewhere.
    #[doc(hidden)]
    pub fn forward_with_next(
        &self,
        input: &[usize],
        output: &[usize],
        next: &OpKind,
        next_output: &[usize],
        caps: &KernelCaps,
    ) -> Option<Dispatch> {
        let (OpKind::Pointwise(pointwise), OpKind::Depthwise(depthwise)) = (self, next) else {
            return None;
        };
        let [dispatch]: [Dispatch; 1] = pointwise.forward(input, output).try_into().ok()?;
        with_depthwise_epilogue(
            &dispatch,
            depthwise,
            output,
            next_output,
            caps.subgroup_gemm,
        )
    }

    /// Whether the inference forward pass only reshapes its input (global average pooling
    /// over a single pixel): an inference plan then runs nothing for it and reads its
    /// output from its input's buffer. (Training's pooling may normalise as it loads.)
    pub fn only_reshapes(&self, input: &[usize]) -> bool {
        matches!(self, OpKind::GlobalAvgPool(_)) && input.len() == 4 && input[1] * input[2] == 1
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::Shader;
    use crate::ops::{Activation, Padding};

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
}
