//! Fully connected layer with bias: [N, in] x [in, out] + bias, on the shared GEMM.

use super::pointwise::Gemm;
use super::{matrix, Dispatch, ParamRole, ParamSpec, Slot};

#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    pub out_features: usize,
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
                ParamRole::Weight { fan_in },
            ),
            ParamSpec::new("bias", vec![self.out_features], ParamRole::Bias),
        ]
    }

    pub fn mult_adds(&self, input: &[usize], _output: &[usize]) -> u64 {
        (input[0] * input[1] * self.out_features) as u64
    }

    pub fn forward(&self, input: &[usize], _output: &[usize]) -> Vec<Dispatch> {
        let gemm = Gemm {
            has_bias: true,
            ..Gemm::plain(input[0], self.out_features, input[1])
        };
        vec![gemm.dispatch(Slot::Input, Slot::Param(0), Slot::Param(1), Slot::Output)]
    }
}
