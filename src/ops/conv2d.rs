//! Standard convolution (the stem): weights [KH, KW, Cin, Cout]; a bias and activation only
//! when batchnorm is folded in for inference.

use super::gemm::{weight_gradient, weight_gradient_scratch, Gemm};
use super::{
    fused_bias, fused_bias_slot, linear_grid, nhwc, uniform_words, Activation, Dispatch, Fused,
    Padding, ParamRole, ParamSpec, ScratchSpec, Slot, Window,
};
use crate::gpu::Shader;

#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
    pub fused: Fused,
}

/// The entry points that unfold the input into patches in `Slot::Workspace`: one output
/// pixel per invocation, or (a 3x3 kernel on one or three input channels at stride 1 or 2)
/// a quad of 4 pixels of a row, whose windows share their input columns.
const UNFOLD: &str = "im2col";
const UNFOLD_QUADS: [&str; 4] = [
    "im2col_3x3_c1",
    "im2col_3x3_c1_s2",
    "im2col_3x3_c3",
    "im2col_3x3_c3_s2",
];

/// The quad entry point for a `kernel` x `kernel` convolution on `channels` input channels
/// at `stride`, where there is one; conv2d_int8.wgsl's quads on packed bytes have the same
/// names.
pub(crate) fn quad_unfolding(
    kernel: usize,
    channels: usize,
    stride: usize,
) -> Option<&'static str> {
    match (kernel, channels, stride) {
        (3, 1, 1) => Some(UNFOLD_QUADS[0]),
        (3, 1, 2) => Some(UNFOLD_QUADS[1]),
        (3, 3, 1) => Some(UNFOLD_QUADS[2]),
        (3, 3, 2) => Some(UNFOLD_QUADS[3]),
        _ => None,
    }
}

const BINDINGS: [(u32, Slot); 6] = [
    (1, Slot::Input),
    (2, Slot::Param(0)),
    (3, Slot::Output),
    (4, Slot::GradOutput),
    (5, Slot::GradInput),
    (8, Slot::Workspace),
];

impl Conv2d {
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let [n, _, _, _] = nhwc(input)?;
        if self.kernel == 0 || self.stride == 0 || self.out_channels == 0 {
            return Err("kernel, stride and output channels must be positive".into());
        }
        let window = Window::of(input, self.kernel, self.stride, self.padding);
        Ok(vec![n, window.out_h, window.out_w, self.out_channels])
    }

    pub fn params(&self, input: &[usize]) -> Vec<ParamSpec> {
        let cin = input[3];
        let k = self.kernel;
        let weight = ParamSpec::new(
            "weight",
            vec![k, k, cin, self.out_channels],
            ParamRole::Weight {
                fan_in: k * k * cin,
                depthwise: false,
            },
        );
        std::iter::once(weight)
            .chain(fused_bias(self.fused, self.out_channels))
            .collect()
    }

    pub fn mult_adds(&self, input: &[usize], output: &[usize]) -> u64 {
        let cin = input[3] as u64;
        let k = self.kernel as u64;
        output.iter().map(|&d| d as u64).product::<u64>() * k * k * cin
    }

    fn dispatch(
        &self,
        entry: &'static str,
        input: &[usize],
        output: &[usize],
        threads: usize,
    ) -> Dispatch {
        let window = Window::of(input, self.kernel, self.stride, self.padding);
        let words = [
            input[0],
            input[1],
            input[2],
            input[3],
            output[1],
            output[2],
            output[3],
            self.kernel,
            self.stride,
            window.pad_top,
            window.pad_left,
            0,
            0,
            0,
            0,
            0,
        ]
        .map(|v| v as u32);
        Dispatch {
            shader: Shader::Conv2d,
            entry,
            uniform: uniform_words(&words),
            bindings: BINDINGS.to_vec(),
            workgroups: linear_grid(threads),
        }
    }

    /// Floats of the unfolded patches: one row of KH*KW*Cin values per output pixel, padded
    /// with zeros to a multiple of 4 so that the GEMM reads whole vec4s.
    #[doc(hidden)]
    pub fn workspace(&self, input: &[usize], output: &[usize]) -> usize {
        output[0] * output[1] * output[2] * self.patch_stride(input)
    }

    fn patch_stride(&self, input: &[usize]) -> usize {
        (self.kernel * self.kernel * input[3]).next_multiple_of(4)
    }

    /// im2col into the workspace, then the shared GEMM: patches [pixels, KH*KW*Cin] times
    /// the weights, whose [KH, KW, Cin, Cout] layout is already that matrix. A direct
    /// convolution with 3 input channels would load twice per multiply-add; the GEMM's
    /// register block does 64 per 16 loads.
    #[doc(hidden)]
    pub fn forward(&self, input: &[usize], output: &[usize]) -> Vec<Dispatch> {
        let pixels = output[0] * output[1] * output[2];
        let patch = self.kernel * self.kernel * input[3];
        let stride = self.patch_stride(input);
        let gemm = Gemm {
            activation: self.fused.unwrap_or(Activation::None),
            has_bias: self.fused.is_some(),
            a_strides: [stride, 1],
            a_zero_padded: true,
            ..Gemm::plain(pixels, self.out_channels, patch)
        };
        vec![
            self.unfold(input, output),
            gemm.dispatch(
                Slot::Workspace,
                Slot::Param(0),
                fused_bias_slot(self.fused),
                Slot::Output,
            ),
        ]
    }

    #[doc(hidden)]
    pub fn scratch(&self, input: &[usize], output: &[usize]) -> Vec<ScratchSpec> {
        let pixels = output[0] * output[1] * output[2];
        let patch = self.kernel * self.kernel * input[3];
        vec![weight_gradient_scratch(pixels, patch, self.out_channels)]
    }

    /// dX by a gather over windows when asked; dW as the GEMM patches^T x dY on patches
    /// unfolded again, since other ops' forward passes may have reused the workspace (a
    /// plan that knows the forward's patches are still there leaves out the dispatch that
    /// `unfolds`).
    #[doc(hidden)]
    pub fn backward(&self, input: &[usize], output: &[usize], input_grad: bool) -> Vec<Dispatch> {
        let pixels = output[0] * output[1] * output[2];
        let patch = self.kernel * self.kernel * input[3];
        let mut dispatches = Vec::new();
        if input_grad {
            let inputs = input.iter().product();
            dispatches.push(self.dispatch("backward_input", input, output, inputs));
        }
        let stride = self.patch_stride(input);
        dispatches.push(self.unfold(input, output));
        dispatches.extend(weight_gradient(
            (Slot::Workspace, stride),
            pixels,
            patch,
            self.out_channels,
            Slot::Scratch(0),
        ));
        dispatches
    }

    /// The dispatch that unfolds `input` into the workspace's patches.
    fn unfold(&self, input: &[usize], output: &[usize]) -> Dispatch {
        match quad_unfolding(self.kernel, input[3], self.stride) {
            Some(entry) => {
                let threads = output[0] * output[1] * output[2].div_ceil(4);
                self.dispatch(entry, input, output, threads)
            }
            None => self.dispatch(UNFOLD, input, output, output[0] * output[1] * output[2]),
        }
    }

    /// Whether `dispatch` is one of this op's unfoldings of its input into the workspace.
    #[doc(hidden)]
    pub fn unfolds(dispatch: &Dispatch) -> bool {
        dispatch.shader == Shader::Conv2d
            && (dispatch.entry == UNFOLD || UNFOLD_QUADS.contains(&dispatch.entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unfolding(in_channels: usize, kernel: usize, stride: usize) -> (&'static str, [u32; 3]) {
        let op = Conv2d {
            out_channels: 8,
            kernel,
            stride,
            padding: Padding::Same,
            fused: None,
        };
        let input = [2, 28, 30, in_channels];
        let output = op.output_shape(&input).unwrap();
        let unfold = op.forward(&input, &output).remove(0);
        assert!(Conv2d::unfolds(&unfold));
        (unfold.entry, unfold.workgroups)
    }

    #[test]
    fn one_and_three_channel_3x3_unfold_by_quads_and_the_rest_by_pixels() {
        // 2 images of 28 rows of 8 quads (30 pixels, the last quad of 2) at stride 1, of 14
        // rows of 4 quads (15 pixels) at stride 2.
        let quads = [
            (1, 1, 2 * 28 * 8),
            (1, 2, 2 * 14 * 4),
            (3, 1, 2 * 28 * 8),
            (3, 2, 2 * 14 * 4),
        ];
        for ((in_channels, stride, threads), entry) in quads.into_iter().zip(UNFOLD_QUADS) {
            let expected = (entry, linear_grid(threads));
            assert_eq!(unfolding(in_channels, 3, stride), expected);
        }
        assert_eq!(unfolding(2, 3, 2), (UNFOLD, linear_grid(2 * 14 * 15)));
        assert_eq!(unfolding(1, 5, 1).0, UNFOLD);
        assert_eq!(unfolding(3, 3, 3).0, UNFOLD);
    }
}
