//! Global average pooling: [N, H, W, C] -> [N, C].

use super::{linear_grid, nhwc, uniform_words, Dispatch, ParamSpec, Slot};
use crate::gpu::Shader;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct GlobalAvgPool;

impl GlobalAvgPool {
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let [n, _, _, c] = nhwc(input)?;
        Ok(vec![n, c])
    }

    pub fn params(&self, _input: &[usize]) -> Vec<ParamSpec> {
        Vec::new()
    }

    pub fn mult_adds(&self, _input: &[usize], _output: &[usize]) -> u64 {
        0
    }

    pub fn forward(&self, input: &[usize], _output: &[usize]) -> Vec<Dispatch> {
        let [n, h, w, c] = [input[0], input[1], input[2], input[3]];
        let words = [n as u32, (h * w) as u32, c as u32, 0];
        vec![Dispatch {
            shader: Shader::Pool,
            entry: "forward",
            uniform: uniform_words(&words),
            slots: vec![Slot::Input, Slot::Output],
            workgroups: linear_grid(n * c),
        }]
    }
}
