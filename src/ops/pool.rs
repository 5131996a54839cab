//! Global average pooling: [N, H, W, C] -> [N, C].

use super::{
    chunks, linear_grid, nhwc, uniform_words, Dispatch, ParamSpec, ScratchSpec, Slot, REDUCE_CHUNK,
};
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

    /// pool.wgsl's binding of the input batch norm's statistics (`with_input_prologue`).
    pub(super) const PROLOGUE_STATS_BINDING: u32 = 5;

    /// pool.wgsl's binding of the input batch norm's backward partials (`backward_sums`).
    const INPUT_PARTIALS_BINDING: u32 = 6;

    fn dispatch(entry: &'static str, input: &[usize], threads: usize) -> Dispatch {
        let [n, h, w, c] = [input[0], input[1], input[2], input[3]];
        let words = [n, h * w, c, 0, REDUCE_CHUNK, 0, 0, 0].map(|v| v as u32);
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
                (Self::PROLOGUE_STATS_BINDING, Slot::Unused),
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

/// `dispatch` (the pooling backward, with the input prologue applied: `with_input_prologue`)
/// also summing the backward partials of the batch norm before it over the gradient it
/// writes, into `Slot::InputPartials`, laid out as that batch norm's own `backward_partial`
/// leaves them (one invocation per chunk of `REDUCE_CHUNK` rows and channel); that pass is
/// then not needed. `None` for any other dispatch.
pub(super) fn with_pool_input_sums(dispatch: &Dispatch) -> Option<Dispatch> {
    let prologued = dispatch.uniform_word(GlobalAvgPool::PROLOGUE_WORD) != 0
        && dispatch
            .bindings
            .contains(&(GlobalAvgPool::PROLOGUE_STATS_BINDING, Slot::InputNorm));
    if dispatch.shader != Shader::Pool || dispatch.entry != "backward" || !prologued {
        return None;
    }
    let [n, pixels, c] = [0, 1, 2].map(|i| dispatch.uniform_word(i) as usize);
    let mut bindings = dispatch.bindings.clone();
    bindings.push((GlobalAvgPool::INPUT_PARTIALS_BINDING, Slot::InputPartials));
    Some(Dispatch {
        entry: "backward_sums",
        bindings,
        workgroups: linear_grid(chunks(n * pixels) * c),
        ..dispatch.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{with_input_prologue, Activation};

    #[test]
    fn the_backward_with_the_prologue_sums_the_batch_norm_partials_by_chunk_and_channel() {
        // 3 images of 10 x 10 pixels: 300 rows, two chunks of the batch norm's partials.
        let input = [3, 10, 10, 13];
        let backward = GlobalAvgPool.backward(&input, &[3, 13], true).remove(0);
        assert!(
            with_pool_input_sums(&backward).is_none(),
            "needs the prologue"
        );
        let prologued = with_input_prologue(&backward, Activation::Relu6).expect("prologue");
        let sums = with_pool_input_sums(&prologued).expect("pool backward with sums");
        assert_eq!(sums.entry, "backward_sums");
        assert!(sums.bindings.contains(&(6, Slot::InputPartials)));
        assert!(sums.bindings.contains(&(5, Slot::InputNorm)));
        assert_eq!(sums.uniform_word(4), REDUCE_CHUNK as u32);
        assert_eq!(sums.workgroups, linear_grid(2 * 13));
        let forward = with_input_prologue(
            &GlobalAvgPool.forward(&input, &[3, 13]).remove(0),
            Activation::Relu,
        )
        .expect("prologue");
        assert!(with_pool_input_sums(&forward).is_none());
    }
}
