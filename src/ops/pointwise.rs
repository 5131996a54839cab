//! Pointwise (1x1) convolution: on NHWC data it is the GEMM [N*H*W, Cin] x [Cin, Cout].

use super::{nhwc, Activation, Dispatch, ParamRole, ParamSpec, Slot};
use crate::gpu::Shader;

#[derive(Clone, Debug, PartialEq)]
pub struct Pointwise {
    pub out_channels: usize,
}

/// Threads per workgroup along each axis and outputs per thread along each axis; must
/// match TILE_X/TILE_Y and BLOCK in gemm.wgsl.
const GEMM_TILE: usize = 16;
const GEMM_BLOCK: usize = 4;
const MAX_GROUPS_PER_DIM: usize = 65535;

/// Dimensions and operand layout of one GEMM: C[m, n] = A[m, k] x B[k, n].
#[derive(Clone, Copy, Debug)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a_strides: [usize; 2],
    pub b_strides: [usize; 2],
    pub activation: Activation,
    pub has_bias: bool,
    pub accumulate: bool,
}

impl Gemm {
    /// Row-major A [m, k] and B [k, n], overwrite C, no bias, no activation.
    pub fn plain(m: usize, n: usize, k: usize) -> Self {
        Gemm {
            m,
            n,
            k,
            a_strides: [k, 1],
            b_strides: [n, 1],
            activation: Activation::None,
            has_bias: false,
            accumulate: false,
        }
    }

    /// The dispatch, binding A, B, bias and C to the given slots.
    pub fn dispatch(&self, a: Slot, b: Slot, bias: Slot, c: Slot) -> Dispatch {
        let words = [
            self.m,
            self.n,
            self.k,
            self.activation.shader_code() as usize,
            self.a_strides[0],
            self.a_strides[1],
            self.b_strides[0],
            self.b_strides[1],
            self.has_bias as usize,
            self.accumulate as usize,
            0,
            0,
        ]
        .map(|v| v as u32);
        let col_groups = self.n.div_ceil(GEMM_BLOCK * GEMM_TILE).max(1);
        let row_groups = self.m.div_ceil(GEMM_BLOCK * GEMM_TILE).max(1);
        let y = row_groups.min(MAX_GROUPS_PER_DIM);
        Dispatch {
            shader: Shader::Gemm,
            entry: "forward",
            uniform: bytemuck::cast_slice(&words).to_vec(),
            slots: vec![a, b, bias, c],
            workgroups: [col_groups as u32, y as u32, row_groups.div_ceil(y) as u32],
        }
    }
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
        vec![ParamSpec::new(
            "weight",
            vec![cin, self.out_channels],
            ParamRole::Weight { fan_in: cin },
        )]
    }

    pub fn mult_adds(&self, input: &[usize], output: &[usize]) -> u64 {
        output.iter().map(|&d| d as u64).product::<u64>() * input[3] as u64
    }

    pub fn forward(&self, input: &[usize], output: &[usize]) -> Vec<Dispatch> {
        let m = output[0] * output[1] * output[2];
        let gemm = Gemm::plain(m, self.out_channels, input[3]);
        vec![gemm.dispatch(Slot::Input, Slot::Param(0), Slot::Unused, Slot::Output)]
    }
}
