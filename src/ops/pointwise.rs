//! Pointwise (1x1) convolution: on NHWC data it is the GEMM [N*H*W, Cin] x [Cin, Cout]
//! (gemm.rs).

use super::gemm::{input_gradient, weight_gradient, weight_gradient_scratch, weight_layout};
use super::gemm::{weight_strides, Gemm};
use super::{fused_bias, fused_bias_slot, nhwc, Activation, Dispatch, Fused, GpuLayout};
use super::{ParamRole, ParamSpec};
use super::{ScratchSpec, Slot};

#[derive(Clone, Debug, PartialEq)]
pub struct Pointwise {
    pub out_channels: usize,
    /// Batchnorm folded in (inference only): bias and activation in the GEMM epilogue.
    pub fused: Fused,
}

impl Pointwise {
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let [n, h, w, _] = nhwc(input)?;
        if self.out_channels == 0 {
            return Err("output channels must be positive".into());
        }
        Ok(vec![n, h, w, self.out_channels])
    }

    pub fn params(&self, input: &[usize]) -> Vec<ParamSpec> {
        let cin = input[3];
        let weight = ParamSpec::new(
            "weight",
            vec![cin, self.out_channels],
            ParamRole::Weight {
                fan_in: cin,
                depthwise: false,
            },
        )
        .with_layout(self.weight_layout(input));
        std::iter::once(weight)
            .chain(fused_bias(self.fused, self.out_channels))
            .collect()
    }

    pub fn mult_adds(&self, input: &[usize], output: &[usize]) -> u64 {
        output.iter().map(|&d| d as u64).product::<u64>() * input[3] as u64
    }

    fn rows(input: &[usize]) -> usize {
        input[0] * input[1] * input[2]
    }

    /// How the GPU holds the weight (`gemm::weight_layout`): only inference's, whose
    /// batch norm is folded in, is read-only.
    fn weight_layout(&self, input: &[usize]) -> GpuLayout {
        weight_layout(self.fused.is_some(), Self::rows(input), self.out_channels)
    }

    #[doc(hidden)]
    pub fn forward(&self, input: &[usize], _output: &[usize]) -> Vec<Dispatch> {
        let gemm = Gemm {
            activation: self.fused.unwrap_or(Activation::None),
            has_bias: self.fused.is_some(),
            b_strides: weight_strides(self.weight_layout(input), input[3], self.out_channels),
            ..Gemm::plain(Self::rows(input), self.out_channels, input[3])
        };
        vec![gemm.dispatch(
            Slot::Input,
            Slot::Param(0),
            fused_bias_slot(self.fused),
            Slot::Output,
        )]
    }

    #[doc(hidden)]
    pub fn scratch(&self, input: &[usize], _output: &[usize]) -> Vec<ScratchSpec> {
        vec![weight_gradient_scratch(
            Self::rows(input),
            input[3],
            self.out_channels,
        )]
    }

    #[doc(hidden)]
    pub fn backward(&self, input: &[usize], _output: &[usize], input_grad: bool) -> Vec<Dispatch> {
        let rows = Self::rows(input);
        let mut dispatches = Vec::new();
        if input_grad {
            dispatches.push(input_gradient(rows, input[3], self.out_channels));
        }
        dispatches.extend(weight_gradient(
            (Slot::Input, input[3]),
            rows,
            input[3],
            self.out_channels,
            Slot::Scratch(0),
        ));
        dispatches
    }
}
