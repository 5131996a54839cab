//! Fully connected layer with bias: [N, in] x [in, out] + bias, on the shared GEMM.

use super::gemm::{input_gradient, weight_gradient, weight_gradient_scratch, weight_layout};
use super::gemm::{weight_strides, Gemm};
use super::Slot;
use super::{chunks, column_sum, matrix, Dispatch, GpuLayout, ParamRole, ParamSpec, ScratchSpec};

#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub out_features: usize,
    /// Weights only read (an inference graph): stored as `gemm::weight_layout` says,
    /// which training's gradients, optimizer states and checkpoints cannot follow.
    pub read_only: bool,
}

impl Dense {
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let [n, _] = matrix(input)?;
        if self.out_features == 0 {
            return Err("output features must be positive".into());
        }
        Ok(vec![n, self.out_features])
    }

    pub fn params(&self, input: &[usize]) -> Vec<ParamSpec> {
        let fan_in = input[1];
        vec![
            ParamSpec::new(
                "weight",
                vec![fan_in, self.out_features],
                ParamRole::Weight {
                    fan_in,
                    depthwise: false,
                },
            )
            .with_layout(self.weight_layout(input)),
            ParamSpec::new("bias", vec![self.out_features], ParamRole::Bias),
        ]
    }

    fn weight_layout(&self, input: &[usize]) -> GpuLayout {
        weight_layout(self.read_only, input[0], self.out_features)
    }

    pub fn mult_adds(&self, input: &[usize], _output: &[usize]) -> u64 {
        (input[0] * input[1] * self.out_features) as u64
    }

    #[doc(hidden)]
    pub fn forward(&self, input: &[usize], _output: &[usize]) -> Vec<Dispatch> {
        let gemm = Gemm {
            has_bias: true,
            b_strides: weight_strides(self.weight_layout(input), input[1], self.out_features),
            ..Gemm::plain(input[0], self.out_features, input[1])
        };
        vec![gemm.dispatch(Slot::Input, Slot::Param(0), Slot::Param(1), Slot::Output)]
    }

    #[doc(hidden)]
    pub fn scratch(&self, input: &[usize], _output: &[usize]) -> Vec<ScratchSpec> {
        vec![
            weight_gradient_scratch(input[0], input[1], self.out_features),
            ScratchSpec {
                floats: chunks(input[0]) * self.out_features,
                persistent: false,
            },
        ]
    }

    #[doc(hidden)]
    pub fn backward(&self, input: &[usize], _output: &[usize], input_grad: bool) -> Vec<Dispatch> {
        let [rows, fan_in] = [input[0], input[1]];
        let mut dispatches = Vec::new();
        if input_grad {
            dispatches.push(input_gradient(rows, fan_in, self.out_features));
        }
        dispatches.extend(weight_gradient(
            (Slot::Input, fan_in),
            rows,
            fan_in,
            self.out_features,
            Slot::Scratch(0),
        ));
        let bias_sum = column_sum(
            Slot::GradOutput,
            Slot::Scratch(1),
            Slot::ParamGrad(1),
            rows,
            self.out_features,
        );
        dispatches.extend(bias_sum);
        dispatches
    }
}
