//! Global average pooling: [N, H, W, C] -> [N, C].

use super::{linear_grid, nhwc, uniform_words, Dispatch, ParamSpec, ScratchSpec, Slot};
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

    /// pool.wgsl's uniform word that switches on its input batch norm's prologue (0: off,
    /// else 1 + the activation code; `with_input_prologue`).
    pub(super) const PROLOGUE_WORD: usize = 3;

    fn dispatch(entry: &'static str, input: &[usize], threads: usize) -> Dispatch {
        let [n, h, w, c] = [input[0], input[1], input[2], input[3]];
        let words = [n as u32, (h * w) as u32, c as u32, 0];
        Dispatch {
            shader: Shader::Pool,
            entry,
            uniform: uniform_words(&words),
            bindings: vec![
                (1, Slot::Input),
                (2, Slot::Output),
                (3, Slot::GradOutput),
                (4, Slot::GradInput),
                // The input's batch norm, bound by `with_input_prologue`.
                (5, Slot::Unused),
            ],
            workgroups: linear_grid(threads),
        }
    }

    #[doc(hidden)]
    pub fn forward(&self, input: &[usize], _output: &[usize]) -> Vec<Dispatch> {
        vec![Self::dispatch("forward", input, input[0] * input[3])]
    }

    #[doc(hidden)]
    pub fn scratch(&self, _input: &[usize], _output: &[usize]) -> Vec<ScratchSpec> {
        Vec::new()
    }

    #[doc(hidden)]
    pub fn backward(&self, input: &[usize], _output: &[usize], input_grad: bool) -> Vec<Dispatch> {
        if !input_grad {
            return Vec::new();
        }
        vec![Self::dispatch("backward", input, input.iter().product())]
    }
}
