//! Standard convolution (the stem): weights [KH, KW, Cin, Cout], no bias.

use super::{
    linear_grid, nhwc, uniform_words, Dispatch, Padding, ParamRole, ParamSpec, Slot, Window,
};
use crate::gpu::Shader;

#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    pub out_channels: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
}

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
        vec![ParamSpec::new(
            "weight",
            vec![k, k, cin, self.out_channels],
            ParamRole::Weight {
                fan_in: k * k * cin,
            },
        )]
    }

    pub fn mult_adds(&self, input: &[usize], output: &[usize]) -> u64 {
        let cin = input[3] as u64;
        let k = self.kernel as u64;
        output.iter().map(|&d| d as u64).product::<u64>() * k * k * cin
    }

    pub fn forward(&self, input: &[usize], output: &[usize]) -> Vec<Dispatch> {
        let (h, w, cin) = (input[1], input[2], input[3]);
        let Window {
            pad_top, pad_left, ..
        } = Window::of(input, self.kernel, self.stride, self.padding);
        let [n, oh, ow, cout] = [output[0], output[1], output[2], output[3]];
        let words = [
            n,
            h,
            w,
            cin,
            oh,
            ow,
            cout,
            self.kernel,
            self.stride,
            pad_top,
            pad_left,
            0,
        ]
        .map(|v| v as u32);
        vec![Dispatch {
            shader: Shader::Conv2d,
            entry: "forward",
            uniform: uniform_words(&words),
            slots: vec![Slot::Input, Slot::Param(0), Slot::Output],
            workgroups: linear_grid(n * oh * ow * cout),
        }]
    }
}
