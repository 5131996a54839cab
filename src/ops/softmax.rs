//! Row-wise softmax over [N, classes], and the fused softmax + cross-entropy loss head.

use super::{linear_grid, matrix, uniform_words, Dispatch, ParamSpec, ScratchSpec, Slot};
use crate::gpu::Shader;

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Softmax;

fn dispatch(entry: &'static str, rows: usize, cols: usize, count: usize) -> Dispatch {
    Dispatch {
        shader: Shader::Softmax,
        entry,
        uniform: uniform_words(&[rows as u32, cols as u32, count as u32, 0]),
        bindings: vec![
            (1, Slot::Input),
            (2, Slot::Output),
            (3, Slot::Labels),
            (4, Slot::Loss),
            (5, Slot::GradInput),
            (6, Slot::Metrics),
        ],
        workgroups: linear_grid(rows),
    }
}

/// Adds the loss sum, correct count and sample count of the first `count` rows to
/// `Metrics` (after `cross_entropy`, which writes the per-sample loss it reads).
pub fn accumulate_metrics(rows: usize, cols: usize, count: usize) -> Dispatch {
    Dispatch {
        workgroups: [1, 1, 1],
        ..dispatch("accumulate_metrics", rows, cols, count)
    }
}

/// Per-sample cross-entropy of [rows, cols] logits (`Input`) against `Labels` into `Loss`,
/// and the gradient of the mean loss over the first `count` rows into `GradInput`.
pub fn cross_entropy(rows: usize, cols: usize, count: usize) -> Dispatch {
    dispatch("cross_entropy", rows, cols, count)
}

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

    #[doc(hidden)]
    pub fn forward(&self, input: &[usize], _output: &[usize]) -> Vec<Dispatch> {
        vec![dispatch("forward", input[0], input[1], input[0])]
    }

    #[doc(hidden)]
    pub fn scratch(&self, _input: &[usize], _output: &[usize]) -> Vec<ScratchSpec> {
        Vec::new()
    }

    /// Softmax is the inference head; training differentiates the fused cross-entropy
    /// instead, so a graph is trained up to its logits.
    #[doc(hidden)]
    pub fn backward(
        &self,
        _input: &[usize],
        _output: &[usize],
        _input_grad: bool,
    ) -> Vec<Dispatch> {
        Vec::new()
    }
}
