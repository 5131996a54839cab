//! Batch norm in its consumer's prologue: in training, a depthwise, pointwise or pooling
//! layer that reads a batch norm's output can instead read that batch norm's raw input and
//! apply the batch's scale and shift and the activation as it loads each value. The
//! normalised tensor is then neither written by a pass of its own nor kept for the
//! backward pass (the weight gradients recompute it on load the same way).
//!
//! Backward, the same idea the other way round: a depthwise layer before a batch norm can
//! read the batch norm's output gradient and apply the batch norm's input gradient as it
//! loads it, so that gradient is not written by a pass of its own either.

use super::depthwise::{with_depthwise_output_grad, PROLOGUE_WORD as DEPTHWISE_PROLOGUE_WORD};
use super::gemm::GemmWords;
use super::{Activation, Dispatch, GlobalAvgPool, Slot};
use crate::gpu::{Shader, GEMM_PROLOGUE_UNIFORM_BYTES};

/// Where a shader takes the prologue: the binding of the batch norm's statistics and, for
/// the shaders other than the GEMM (whose switch is `GemmWords::prologue`), the uniform word
/// that switches it on (0: off, else 1 + the activation code).
fn prologue_site(shader: Shader) -> Option<(u32, Option<usize>)> {
    match shader {
        Shader::Gemm | Shader::GemmVec4 => Some((5, None)),
        Shader::Depthwise | Shader::DepthwiseVec4 => Some((8, Some(DEPTHWISE_PROLOGUE_WORD))),
        Shader::Pool => Some((
            GlobalAvgPool::PROLOGUE_STATS_BINDING,
            Some(GlobalAvgPool::PROLOGUE_WORD),
        )),
        _ => None,
    }
}

/// `dispatch` reading its input raw and applying the producer's batch norm with
/// `activation` as it loads it. A dispatch that does not read the input is returned as it
/// is; `None` for one that reads it through a shader without the prologue (or a GEMM that
/// reads the input as its B operand).
pub fn with_input_prologue(dispatch: &Dispatch, activation: Activation) -> Option<Dispatch> {
    let input_binding = dispatch
        .bindings
        .iter()
        .find(|(_, slot)| *slot == Slot::Input)
        .map(|(binding, _)| *binding);
    let Some(input_binding) = input_binding else {
        return Some(dispatch.clone());
    };
    let (stats_binding, word) = prologue_site(dispatch.shader)?;
    let code = activation.shader_code() + 1;
    let uniform = match word {
        Some(word) => {
            let mut switched = dispatch.clone();
            switched.set_uniform_word(word, code);
            switched.uniform
        }
        None => gemm_prologue(dispatch, input_binding, code)?.uniform(),
    };
    let mut bindings = dispatch.bindings.clone();
    bindings.retain(|(binding, _)| *binding != stats_binding);
    bindings.push((stats_binding, Slot::InputNorm));
    Some(Dispatch {
        uniform,
        bindings,
        ..dispatch.clone()
    })
}

/// A GEMM's words with the prologue (`code`: 1 + the activation code) applied to A; `None`
/// where the input is not A, or where a vec4 kernel's uniform block cannot hold the scale
/// and shift of A's channels.
fn gemm_prologue(dispatch: &Dispatch, input_binding: u32, code: u32) -> Option<GemmWords> {
    let words = GemmWords::of(dispatch)?;
    if input_binding != 1 {
        return None;
    }
    // X is NHWC, channels contiguous: the contiguous axis of A is the channel.
    let a_strides = words.a_strides();
    let channel_is_row = a_strides[0] == 1 && (a_strides[1] != 1 || words.m == 1);
    let channels = if channel_is_row { words.m } else { words.k } as u64;
    if dispatch.shader == Shader::GemmVec4 && 2 * 4 * channels > GEMM_PROLOGUE_UNIFORM_BYTES {
        return None;
    }
    Some(GemmWords {
        prologue: code,
        prologue_rows: channel_is_row as u32,
        ..words
    })
}

/// `dispatch` (a backward dispatch) reading its dY as the output gradient of the batch
/// norm after its op, with `activation`, and applying that batch norm's input gradient as
/// it loads it, so the batch norm's `backward_input` pass is neither run nor written: the
/// depthwise backward. A dispatch that does not read dY is returned as it is; `None` for
/// one that reads it through a shader without this form.
pub fn with_output_grad_prologue(dispatch: &Dispatch, activation: Activation) -> Option<Dispatch> {
    if !dispatch
        .bindings
        .iter()
        .any(|(_, slot)| *slot == Slot::GradOutput)
    {
        return Some(dispatch.clone());
    }
    with_depthwise_output_grad(dispatch, activation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Depthwise, Padding, Pointwise};

    #[test]
    fn pointwise_forward_and_weight_gradient_take_the_prologue_along_the_channel() {
        let op = Pointwise {
            out_channels: 8,
            fused: None,
        };
        let (input, output) = ([2, 4, 4, 12], [2, 4, 4, 8]);
        let forward = &op.forward(&input, &output)[0];
        let fused = with_input_prologue(forward, Activation::Relu6).expect("a GEMM");
        let words = GemmWords::of(&fused).expect("a GEMM");
        assert_eq!((words.prologue, words.prologue_rows), (3, 0));
        assert!(fused.bindings.contains(&(5, Slot::InputNorm)));
        let backward = op.backward(&input, &output, true);
        let d_weight = backward
            .iter()
            .find(|d| d.bindings.contains(&(1, Slot::Input)))
            .expect("dW reads the input");
        let fused = with_input_prologue(d_weight, Activation::Relu).expect("a GEMM");
        let words = GemmWords::of(&fused).expect("a GEMM");
        assert_eq!((words.prologue, words.prologue_rows), (2, 1));
        // dX reads the output gradient only: unchanged.
        let d_input = &backward[0];
        let unchanged = with_input_prologue(d_input, Activation::Relu).expect("unchanged");
        assert_eq!(
            (unchanged.uniform, unchanged.bindings),
            (d_input.uniform.clone(), d_input.bindings.clone())
        );
    }

    #[test]
    fn a_vec4_gemm_takes_it_up_to_the_channels_its_uniform_block_holds() {
        let takes = |channels: usize| {
            let op = Pointwise {
                out_channels: 8,
                fused: None,
            };
            let (input, output) = ([1, 2, 2, channels], [1, 2, 2, 8]);
            let forward = &op.forward(&input, &output)[0];
            assert_eq!(forward.shader, Shader::GemmVec4);
            with_input_prologue(forward, Activation::Relu).is_some()
        };
        let most = (GEMM_PROLOGUE_UNIFORM_BYTES / 8) as usize;
        assert!(takes(most));
        // Past it the batch norm keeps its own normalise pass.
        assert!(!takes(most + 4));
    }

    #[test]
    fn depthwise_and_pool_take_it_and_others_refuse() {
        let depthwise = Depthwise {
            kernel: 3,
            stride: 1,
            padding: Padding::Symmetric,
            fused: None,
        };
        let shape = [1, 5, 5, 8];
        let forward = &depthwise.forward(&shape, &shape)[0];
        let fused = with_input_prologue(forward, Activation::None).expect("depthwise");
        assert!(fused.bindings.contains(&(8, Slot::InputNorm)));
        // No activation: code 0, plus one.
        assert_eq!(fused.uniform_word(DEPTHWISE_PROLOGUE_WORD), 1);
        let pool = &GlobalAvgPool.forward(&shape, &[1, 8])[0];
        let fused = with_input_prologue(pool, Activation::Relu).expect("pool");
        assert_eq!(fused.uniform_word(GlobalAvgPool::PROLOGUE_WORD), 2);
        let mut other = forward.clone();
        other.shader = Shader::Conv2d;
        assert!(with_input_prologue(&other, Activation::Relu).is_none());
    }
}
