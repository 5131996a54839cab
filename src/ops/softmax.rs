//! Row-wise softmax over [N, classes].

use super::{linear_grid, matrix, uniform_words, Dispatch, ParamSpec, Slot};
use crate::gpu::Shader;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Softmax;

impl Softmax {
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        matrix(input)?;
        Ok(input.to_vec())
    }

    pub fn params(&self, _input: &[usize]) -> Vec<ParamSpec> {
        Vec::new()
    }

    pub fn mult_adds(&self, _input: &[usize], _output: &[usize]) -> u64 {
        0
    }

    pub fn forward(&self, input: &[usize], _output: &[usize]) -> Vec<Dispatch> {
        let words = [input[0] as u32, input[1] as u32, 0, 0];
        vec![Dispatch {
            shader: Shader::Softmax,
            entry: "forward",
            uniform: uniform_words(&words),
            slots: vec![Slot::Input, Slot::Output],
            workgroups: linear_grid(input[0]),
        }]
    }
}
