//! Depthwise convolution: one KxK filter per channel, weights [KH, KW, C], no bias.

use super::{
    linear_grid, nhwc, uniform_words, Dispatch, Padding, ParamRole, ParamSpec, Slot, Window,
};
use crate::gpu::Shader;

#[derive(Clone, Debug, PartialEq)]
pub struct Depthwise {
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
}

impl Depthwise {
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let [n, _, _, c] = nhwc(input)?;
        if self.kernel == 0 || self.stride == 0 {
            return Err("kernel and stride must be positive".into());
        }
        let window = Window::of(input, self.kernel, self.stride, self.padding);
        Ok(vec![n, window.out_h, window.out_w, c])
    }

    pub fn params(&self, input: &[usize]) -> Vec<ParamSpec> {
        let k = self.kernel;
        vec![ParamSpec::new(
            "weight",
            vec![k, k, input[3]],
            ParamRole::Weight { fan_in: k * k },
        )]
    }

    pub fn mult_adds(&self, _input: &[usize], output: &[usize]) -> u64 {
        let k = self.kernel as u64;
        output.iter().map(|&d| d as u64).product::<u64>() * k * k
    }

    pub fn forward(&self, input: &[usize], output: &[usize]) -> Vec<Dispatch> {
        let (h, w) = (input[1], input[2]);
        let Window {
            pad_top, pad_left, ..
        } = Window::of(input, self.kernel, self.stride, self.padding);
        let [n, oh, ow, c] = [output[0], output[1], output[2], output[3]];
        let words = [
            n,
            h,
            w,
            c,
            oh,
            ow,
            self.kernel,
            self.stride,
            pad_top,
            pad_left,
            0,
            0,
        ]
        .map(|v| v as u32);
        vec![Dispatch {
            shader: Shader::Depthwise,
            entry: "forward",
            uniform: uniform_words(&words),
            slots: vec![Slot::Input, Slot::Param(0), Slot::Output],
            workgroups: linear_grid(n * oh * ow * c),
        }]
    }
}
