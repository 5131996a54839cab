//! Batch normalisation fused with the activation that follows it.

use super::{
    chunks, linear_grid, nhwc, uniform_words, Activation, Dispatch, ParamRole, ParamSpec,
    ScratchSpec, Slot, TrainSettings, REDUCE_CHUNK,
};
use crate::gpu::Shader;

#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub eps: f32,
    pub activation: Activation,
}

/// bn_act.wgsl's bindings; Scratch(0) holds per-channel statistics kept for the backward
/// pass, Scratch(1) the reduction partials.
const BINDINGS: [(u32, Slot); 12] = [
    (1, Slot::Input),
    (2, Slot::Param(0)),
    (3, Slot::Param(1)),
    (4, Slot::Param(2)),
    (5, Slot::Param(3)),
    (6, Slot::Output),
    (7, Slot::Scratch(0)),
    (8, Slot::Scratch(1)),
    (9, Slot::GradOutput),
    (10, Slot::GradInput),
    (11, Slot::ParamGrad(0)),
    (12, Slot::ParamGrad(1)),
];

/// Rows of one channel each element-wise training invocation handles (ROWS_PER_INVOCATION
/// in bn_act.wgsl).
const ROWS_PER_INVOCATION: usize = 8;

/// Invocations of the element-wise training passes: one per channel and block of rows.
fn row_block_threads(input: &[usize]) -> usize {
    let rows = input[0] * input[1] * input[2];
    rows.div_ceil(ROWS_PER_INVOCATION) * input[3]
}

impl BatchNorm {
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        nhwc(input)?;
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(format!(
                "epsilon must be positive and finite, got {}",
                self.eps
            ));
        }
        Ok(input.to_vec())
    }

    pub fn params(&self, input: &[usize]) -> Vec<ParamSpec> {
        let c = vec![input[3]];
        vec![
            ParamSpec::new("gamma", c.clone(), ParamRole::Gamma),
            ParamSpec::new("beta", c.clone(), ParamRole::Beta),
            ParamSpec::new("running_mean", c.clone(), ParamRole::RunningMean),
            ParamSpec::new("running_var", c, ParamRole::RunningVar),
        ]
    }

    /// Not counted: the paper's mult-add totals cover convolutions and the classifier.
    pub fn mult_adds(&self, _input: &[usize], _output: &[usize]) -> u64 {
        0
    }

    fn rows(input: &[usize]) -> usize {
        input[0] * input[1] * input[2]
    }

    fn dispatch(
        &self,
        entry: &'static str,
        input: &[usize],
        momentum: f32,
        threads: usize,
    ) -> Dispatch {
        let rows = Self::rows(input);
        let words = [
            rows as u32,
            input[3] as u32,
            self.activation.shader_code(),
            self.eps.to_bits(),
            REDUCE_CHUNK as u32,
            chunks(rows) as u32,
            momentum.to_bits(),
            0,
        ];
        // Every thread count is a multiple of the channel count; the vec4 form of the
        // shader takes 4 channels per invocation.
        let (shader, channels_per_invocation) = if input[3].is_multiple_of(4) {
            (Shader::BnActVec4, 4)
        } else {
            (Shader::BnAct, 1)
        };
        Dispatch {
            shader,
            entry,
            uniform: uniform_words(&words),
            bindings: BINDINGS.to_vec(),
            workgroups: linear_grid(threads / channels_per_invocation),
        }
    }

    #[doc(hidden)]
    pub fn forward(&self, input: &[usize], _output: &[usize]) -> Vec<Dispatch> {
        let total = input.iter().product();
        vec![self.dispatch("forward_inference", input, 0.0, total)]
    }

    #[doc(hidden)]
    pub fn forward_train(&self, input: &[usize], train: &TrainSettings) -> Vec<Dispatch> {
        let channels = input[3];
        let parts = chunks(Self::rows(input)) * channels;
        let m = train.bn_momentum;
        vec![
            self.dispatch("stats_partial", input, m, parts),
            self.dispatch("stats_finalize", input, m, channels),
            self.dispatch("forward_train", input, m, row_block_threads(input)),
        ]
    }

    #[doc(hidden)]
    pub fn scratch(&self, input: &[usize], _output: &[usize]) -> Vec<ScratchSpec> {
        let channels = input[3];
        vec![
            ScratchSpec {
                floats: 4 * channels,
                persistent: true,
            },
            ScratchSpec {
                floats: 2 * chunks(Self::rows(input)) * channels,
                persistent: false,
            },
        ]
    }

    #[doc(hidden)]
    pub fn backward(&self, input: &[usize], _output: &[usize], input_grad: bool) -> Vec<Dispatch> {
        let channels = input[3];
        let parts = chunks(Self::rows(input)) * channels;
        let mut dispatches = vec![
            self.dispatch("backward_partial", input, 0.0, parts),
            self.dispatch("backward_finalize", input, 0.0, channels),
        ];
        if input_grad {
            dispatches.push(self.dispatch("backward_input", input, 0.0, row_block_threads(input)));
        }
        dispatches
    }
}
