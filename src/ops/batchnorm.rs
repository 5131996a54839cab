//! Batch normalisation fused with the activation that follows it.

use super::{linear_grid, nhwc, uniform_words, Activation, Dispatch, ParamRole, ParamSpec, Slot};
use crate::gpu::Shader;

#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub eps: f32,
    pub activation: Activation,
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

    pub fn forward(&self, input: &[usize], _output: &[usize]) -> Vec<Dispatch> {
        let total = input.iter().product::<usize>();
        let words = [
            total as u32,
            input[3] as u32,
            self.activation.shader_code(),
            self.eps.to_bits(),
        ];
        vec![Dispatch {
            shader: Shader::BnAct,
            entry: "forward_inference",
            uniform: uniform_words(&words),
            slots: vec![
                Slot::Input,
                Slot::Param(0),
                Slot::Param(1),
                Slot::Param(2),
                Slot::Param(3),
                Slot::Output,
            ],
            workgroups: linear_grid(total),
        }]
    }
}
