//! Inference's pointwise layer and the 3x3 depthwise layer after it in one dispatch, where
//! the depthwise layer's images are small (at 32x32 MobileNet's blocks 5 to 13: images of
//! 4x4, 2x2 and 1x1 pixels): the GEMM's rows are those images' pixels, so every
//! invocation's block of rows holds whole images, and the GEMM applies the depthwise layer
//! to its block in registers and stores only that layer's output. Images of at most 2x2
//! take gemm.wgsl's `forward_dw` (every GEMM kernel's 8-row blocks hold them); images of
//! 4x4 need the 32x32 subgroup tile (`forward_subgroup_32_dw16`, a 16-row half per image).
//! The pointwise output is never stored or read back, and the depthwise layer runs no
//! dispatch of its own.

use super::depthwise::{small_images, Depthwise};
#[cfg(test)]
use super::gemm::is_depthwise_epilogue;
use super::gemm::GemmWords;
use super::gemm_kernels::tall_subgroup_gemm_dispatch;
use super::{Dispatch, Slot, Window};
use crate::gpu::Shader;

/// Where gemm.wgsl's `forward_*_dw` entry points read the depthwise layer's weight and
/// bias.
const DW_WEIGHT_BINDING: u32 = 9;
const DW_BIAS_BINDING: u32 = 10;

/// `pointwise` (an inference pointwise GEMM's dispatch) computing also `depthwise` on its
/// output, `dw_input` in shape, in its epilogue: its C is then the depthwise layer's output
/// (`Slot::Output` must resolve to that), and it reads the depthwise weight and bias from
/// `Slot::EpilogueParam(0)` and `(1)`. `None` where no kernel does both: the depthwise layer
/// not folded (inference only) or not 3x3, its images larger than 2x2 in or out (4x4 in
/// where the adapter runs the 32x32 subgroup tile, `subgroup_tiles`), or a GEMM that is not
/// the plain vec4 forward, B as stored or transposed (channel counts that are not
/// multiples of 4).
pub fn with_depthwise_epilogue(
    pointwise: &Dispatch,
    depthwise: &Depthwise,
    dw_input: &[usize],
    dw_output: &[usize],
    subgroup_tiles: bool,
) -> Option<Dispatch> {
    let words = GemmWords::of(pointwise)?;
    let b_transposed = pointwise.entry == "forward_bt";
    let plain_vec4_forward = pointwise.shader == Shader::GemmVec4
        && matches!(pointwise.entry, "forward" | "forward_bt")
        && words.splits == 1
        && words.accumulate == 0
        && words.prologue == 0;
    let dw_act = depthwise.fused?;
    let images_of_16 = subgroup_tiles && dw_input[1..3] == [4, 4];
    let small = small_images(dw_input, dw_output);
    if !plain_vec4_forward || !depthwise.is_3x3() || !(small || images_of_16) {
        return None;
    }
    let window = Window::of(
        dw_input,
        depthwise.kernel,
        depthwise.stride,
        depthwise.padding,
    );
    let [dw_in_h, dw_in_w, dw_out_h, dw_out_w] =
        [dw_input[1], dw_input[2], dw_output[1], dw_output[2]].map(|v| v as u32);
    let words = GemmWords {
        dw_in_h,
        dw_in_w,
        dw_out_h,
        dw_out_w,
        dw_stride: depthwise.stride as u32,
        dw_pad_top: window.pad_top as u32,
        dw_pad_left: window.pad_left as u32,
        dw_act: dw_act.shader_code(),
        ..words
    };
    let mut bindings = pointwise.bindings.clone();
    bindings.push((DW_WEIGHT_BINDING, Slot::EpilogueParam(0)));
    bindings.push((DW_BIAS_BINDING, Slot::EpilogueParam(1)));
    let fused = Dispatch {
        entry: match (small, b_transposed) {
            (true, false) => "forward_dw",
            (true, true) => "forward_dw_bt",
            (false, false) => "forward_dw16",
            (false, true) => "forward_dw16_bt",
        },
        uniform: words.uniform(),
        bindings,
        ..pointwise.clone()
    };
    if small {
        Some(fused)
    } else {
        // Only the 32x32 subgroup tile has the entry point: no alternatives to time.
        tall_subgroup_gemm_dispatch(&fused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Activation, Padding, Pointwise};

    fn pointwise(input: &[usize], out_channels: usize) -> Dispatch {
        let op = Pointwise {
            out_channels,
            fused: Some(Activation::Relu),
        };
        op.forward(input, &[input[0], input[1], input[2], out_channels])
            .remove(0)
    }

    fn depthwise(kernel: usize, stride: usize, fused: Option<Activation>) -> Depthwise {
        Depthwise {
            kernel,
            stride,
            padding: Padding::Symmetric,
            fused,
        }
    }

    #[test]
    fn folded_3x3_depthwise_layers_on_small_images_join_the_gemm() {
        let relu6 = Some(Activation::Relu6);
        let pw = pointwise(&[32, 2, 2, 256], 512);
        let fused = with_depthwise_epilogue(
            &pw,
            &depthwise(3, 2, relu6),
            &[32, 2, 2, 512],
            &[32, 1, 1, 512],
            false,
        )
        .expect("MobileNet's blocks.12 at 32x32");
        assert_eq!(fused.entry, "forward_dw");
        let words = GemmWords::of(&fused).expect("a GEMM");
        assert_eq!(
            [words.dw_in_h, words.dw_in_w, words.dw_out_h, words.dw_out_w],
            [2, 2, 1, 1]
        );
        assert_eq!(
            [words.dw_stride, words.dw_pad_top, words.dw_pad_left],
            [2, 1, 1]
        );
        assert_eq!(words.dw_act, Activation::Relu6.shader_code());
        assert!(fused
            .bindings
            .contains(&(DW_BIAS_BINDING, Slot::EpilogueParam(1))));
        assert!(is_depthwise_epilogue(&fused) && !is_depthwise_epilogue(&pw));

        let small = [32, 2, 2, 512];
        let (four, eight) = ([32, 4, 4, 512], [32, 8, 8, 512]);
        // Images of 4x4 on the 32x32 subgroup tile alone, where the adapter runs it.
        let dw = depthwise(3, 1, relu6);
        let tall = with_depthwise_epilogue(&pw, &dw, &four, &four, true).expect("4x4");
        assert_eq!(
            (tall.shader, tall.entry),
            (Shader::GemmSubgroupVec4, "forward_subgroup_32_dw16")
        );
        assert!(with_depthwise_epilogue(&pw, &dw, &four, &four, false).is_none());
        // Images of 8x8, training's unfolded layer, another kernel size: apart.
        assert!(with_depthwise_epilogue(&pw, &dw, &eight, &eight, true).is_none());
        assert!(
            with_depthwise_epilogue(&pw, &depthwise(3, 1, None), &small, &small, true).is_none()
        );
        assert!(
            with_depthwise_epilogue(&pw, &depthwise(5, 1, relu6), &small, &small, true).is_none()
        );
        // Channel counts that are not multiples of 4 take the scalar GEMM: apart.
        let odd = pointwise(&[32, 2, 2, 256], 510);
        let odd_shape = [32, 2, 2, 510];
        assert!(with_depthwise_epilogue(
            &odd,
            &depthwise(3, 1, relu6),
            &odd_shape,
            &odd_shape,
            true
        )
        .is_none());
    }
}
