//! The dispatches of the int8 layers (issue 21): the stem (im2col, then the GEMM),
//! depthwise, pointwise and dense (the GEMM), global average pooling, and the classifier's
//! GEMM with f32 logits. Shapes are NHWC with real channel counts; tensors are int8 packed
//! four channels a `u32` (`int8::pack_rows`).
//!
//! Every layer binds its tensors by role, as the float ops do: `Slot::Input`,
//! `Slot::Output`, the stem's patches in `Slot::Workspace`, and its parameters as
//! `Slot::Param(0)` (weights, packed as `int8::pack_gemm_weights` or
//! `pack_depthwise_weights`), `Slot::Param(1)` (`bias_eff`, i32, `int8::fold_bias`) and
//! `Slot::Param(2)` (per output channel, f32: the requantization multipliers, or the
//! classifier's dequantization scales). Zero points and clamp bounds travel in the uniform.

use super::conv2d::quad_unfolding;
use super::depthwise::images_per_invocation;
use super::gemm_kernels::subgroup_grid;
use super::int8::{words_for, Int8Output};
use super::{linear_grid, nhwc, uniform_words, Dispatch, Padding, Slot, Window};
use crate::gpu::Shader;

/// Rows and columns of the block one GEMM invocation computes (gemm_int8.wgsl).
const GEMM_BLOCK: [usize; 2] = [8, 8];
/// Rows and columns of C per workgroup of gemm_int8_subgroup.wgsl.
const SUBGROUP_TILE: [usize; 2] = [16, 32];
/// Output pixels one depthwise invocation computes (depthwise_int8.wgsl's PIXELS).
const DEPTHWISE_PIXELS: usize = 4;

/// Output rows one 3x3 depthwise invocation computes (depthwise_int8.wgsl's ROWS); the
/// kernel for other filters computes one.
const DEPTHWISE_3X3_ROWS: usize = 8;

/// depthwise_int8.wgsl's uniform block `DepthwiseInt8Params`, field for field (a test checks
/// the names and offsets against the shader), which its x16 form reads too.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
struct DepthwiseInt8Words {
    batch: u32,
    in_h: u32,
    in_w: u32,
    /// Packed words of 4 channels a pixel.
    words: u32,
    out_h: u32,
    out_w: u32,
    kernel: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
    channels: u32,
    input_zero: i32,
    zero_point: i32,
    lo: i32,
    hi: i32,
    /// Images per invocation of the 3x3 kernels.
    images: u32,
}

/// Invocations of a depthwise dispatch: one per `images` images, `rows` rows of quads of
/// output pixels and access of `words_per_access` channel words (1 in depthwise_int8.wgsl,
/// 4 in its x16 form).
fn depthwise_invocations(
    [n, out_h, out_w]: [usize; 3],
    rows: usize,
    images: usize,
    channel_words: usize,
    words_per_access: usize,
) -> usize {
    n.div_ceil(images)
        * out_h.div_ceil(rows)
        * out_w.div_ceil(DEPTHWISE_PIXELS)
        * (channel_words / words_per_access)
}

/// The parameter bindings every int8 layer with weights shares.
const PARAMS: [(u32, Slot); 3] = [
    (2, Slot::Param(0)),
    (3, Slot::Param(1)),
    (4, Slot::Param(2)),
];

/// Words of a u32 uniform block: signed values as their two's-complement bits.
fn words(values: &[i64]) -> Vec<u8> {
    uniform_words(&values.iter().map(|&v| v as u32).collect::<Vec<u32>>())
}

/// `[rows, k] x [k, n]` on int8: pointwise convolution (rows = N*H*W, k = Cin), dense
/// (rows = N) and the stem after im2col (k = KH*KW*Cin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int8Gemm {
    pub rows: usize,
    pub k: usize,
    pub n: usize,
}

impl Int8Gemm {
    fn dispatch(&self, entry: &'static str, output: Int8Output, a: Slot, out: Slot) -> Dispatch {
        let col_blocks = self.n.div_ceil(GEMM_BLOCK[1]);
        let blocks = self.rows.div_ceil(GEMM_BLOCK[0]) * col_blocks;
        let uniform = words(&[
            self.rows as i64,
            self.n as i64,
            words_for(self.k) as i64,
            words_for(self.n) as i64,
            col_blocks as i64,
            output.zero_point as i64,
            output.lo as i64,
            output.hi as i64,
        ]);
        let out_binding = if entry == "forward" { 5 } else { 6 };
        let mut bindings = vec![(1, a), (out_binding, out)];
        bindings.extend(PARAMS);
        Dispatch {
            shader: Shader::GemmInt8,
            entry,
            uniform,
            bindings,
            workgroups: linear_grid(blocks),
        }
    }

    /// Requantized int8 output `[rows][words_for(n)]`, reading `a` (`[rows][words_for(k)]`).
    pub fn forward(&self, output: Int8Output, a: Slot, out: Slot) -> Dispatch {
        self.dispatch("forward", output, a, out)
    }

    /// The classifier: f32 logits `[rows][n]`, `f32(acc) * Param(2)[c]`.
    pub fn logits(&self, a: Slot, out: Slot) -> Dispatch {
        self.dispatch("logits_f32", Int8Output::linear(0), a, out)
    }
}

/// How gemm_int8_subgroup.wgsl multiplies: bytes unpacked to i32 once per load, or
/// `dot4I8Packed`; or (the 32x32 tile, K of at most `F32_EXACT_K`) unpacked and summed in
/// f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Multiply {
    Widened,
    Dot4,
    WidenedF32,
}

/// The longest K (in bytes, rounded up to whole words) whose int8 dot products f32 sums
/// exactly: products of at most 2^14 in magnitude, so partial sums of at most 2^24.
pub const F32_EXACT_K: u32 = 1024;

/// The same int8 GEMM (requantized `forward` or the classifier's `logits_f32`) on
/// gemm_int8_subgroup.wgsl; `None` where that kernel does not apply.
pub fn subgroup_int8_gemm_dispatch(
    dispatch: &Dispatch,
    multiply: Int8Multiply,
) -> Option<Dispatch> {
    let words: &[u32] = bytemuck::try_cast_slice(&dispatch.uniform).ok()?;
    let (rows, n) = (*words.first()?, *words.get(1)?);
    let entry = match (dispatch.entry, multiply) {
        ("forward", Int8Multiply::Widened) => "forward_subgroup_widened",
        ("forward", Int8Multiply::Dot4) => "forward_subgroup_dot4",
        ("logits_f32", Int8Multiply::Widened) => "logits_subgroup_widened",
        ("logits_f32", Int8Multiply::Dot4) => "logits_subgroup_dot4",
        _ => return None,
    };
    if dispatch.shader != Shader::GemmInt8 {
        return None;
    }
    Some(Dispatch {
        shader: Shader::GemmInt8Subgroup,
        entry,
        workgroups: subgroup_grid([rows as usize, n as usize, 1], SUBGROUP_TILE),
        ..dispatch.clone()
    })
}

/// Rows and columns of C per workgroup of gemm_int8_subgroup.wgsl's 32x32 tile.
const TALL_SUBGROUP_TILE: [usize; 2] = [32, 32];

/// The requantized int8 GEMM on gemm_int8_subgroup.wgsl's 32x32 tiles, the bytes unpacked
/// or multiplied by dot4I8Packed; `None` for the classifier's logits (a batch's few rows)
/// and anything else.
pub fn tall_subgroup_int8_gemm_dispatch(
    dispatch: &Dispatch,
    multiply: Int8Multiply,
) -> Option<Dispatch> {
    if dispatch.shader != Shader::GemmInt8 || dispatch.entry != "forward" {
        return None;
    }
    let words: &[u32] = bytemuck::try_cast_slice(&dispatch.uniform).ok()?;
    let (rows, n, k_words) = (*words.first()?, *words.get(1)?, *words.get(2)?);
    let entry = match multiply {
        Int8Multiply::Widened => "forward_subgroup_32_widened",
        Int8Multiply::Dot4 => "forward_subgroup_32_dot4",
        Int8Multiply::WidenedF32 if 4 * k_words <= F32_EXACT_K => "forward_subgroup_32_widened_f32",
        Int8Multiply::WidenedF32 => return None,
    };
    Some(Dispatch {
        shader: Shader::GemmInt8Subgroup,
        entry,
        workgroups: subgroup_grid([rows as usize, n as usize, 1], TALL_SUBGROUP_TILE),
        ..dispatch.clone()
    })
}

/// An int8 pointwise convolution on an NHWC input: the GEMM over its pixels.
pub fn int8_pointwise(input: &[usize], out_channels: usize, output: Int8Output) -> Dispatch {
    let pixels = input[..3].iter().product();
    Int8Gemm {
        rows: pixels,
        k: input[3],
        n: out_channels,
    }
    .forward(output, Slot::Input, Slot::Output)
}

/// A convolution's window over an int8 input, whose padding reads the input's zero point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int8Window {
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
    /// The input's zero point: what padded taps read (real 0).
    pub input_zero: i32,
}

impl Int8Window {
    /// `[N, OH, OW]` of the output and the window, for an NHWC input.
    fn resolve(&self, input: &[usize]) -> Result<([usize; 3], Window), String> {
        let [n, _, _, _] = nhwc(input)?;
        if self.kernel == 0 || self.stride == 0 {
            return Err("kernel and stride must be positive".into());
        }
        let window = Window::of(input, self.kernel, self.stride, self.padding);
        Ok(([n, window.out_h, window.out_w], window))
    }

    /// The output shape `[N, OH, OW, channels]`.
    pub fn output_shape(&self, input: &[usize], channels: usize) -> Result<Vec<usize>, String> {
        let ([n, h, w], _) = self.resolve(input)?;
        Ok(vec![n, h, w, channels])
    }
}

/// Int8 depthwise convolution: 3x3 at stride 1 or 2 (MobileNet's) on kernels of their own,
/// any other square filter and stride on the general one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int8Depthwise {
    pub window: Int8Window,
    pub output: Int8Output,
}

impl Int8Depthwise {
    pub fn forward(&self, input: &[usize]) -> Result<Dispatch, String> {
        let ([n, out_h, out_w], window) = self.window.resolve(input)?;
        let channels = input[3];
        let channel_words = words_for(channels);
        // The 3x3 kernels share each input row among the output rows they compute, and
        // the taps and epilogue among the images they take.
        let (entry, rows) = match (self.window.kernel, self.window.stride) {
            (3, 1) => ("forward_3x3", DEPTHWISE_3X3_ROWS),
            (3, 2) => ("forward_3x3_s2", DEPTHWISE_3X3_ROWS),
            _ => ("forward", 1),
        };
        let images = if rows == 1 {
            1
        } else {
            let per_image = depthwise_invocations([1, out_h, out_w], rows, 1, channel_words, 1);
            images_per_invocation(n, out_h * out_w, per_image)
        };
        let [batch, in_h, in_w] = [n, input[1], input[2]].map(|d| d as u32);
        let uniform = DepthwiseInt8Words {
            batch,
            in_h,
            in_w,
            words: channel_words as u32,
            out_h: out_h as u32,
            out_w: out_w as u32,
            kernel: self.window.kernel as u32,
            stride: self.window.stride as u32,
            pad_top: window.pad_top as u32,
            pad_left: window.pad_left as u32,
            channels: channels as u32,
            input_zero: self.window.input_zero,
            zero_point: self.output.zero_point,
            lo: self.output.lo,
            hi: self.output.hi,
            images: images as u32,
        };
        let uniform = bytemuck::bytes_of(&uniform).to_vec();
        let mut bindings = vec![(1, Slot::Input), (5, Slot::Output)];
        bindings.extend(PARAMS);
        let quads = depthwise_invocations([n, out_h, out_w], rows, images, channel_words, 1);
        Ok(Dispatch {
            shader: Shader::DepthwiseInt8,
            entry,
            uniform,
            bindings,
            workgroups: linear_grid(quads),
        })
    }
}

/// The same 3x3 int8 depthwise dispatch on depthwise_int8_x16.wgsl, 16 channels per
/// invocation; `None` where that kernel does not apply (another filter, or a channel count
/// that is not a multiple of 16).
pub fn x16_int8_depthwise_dispatch(dispatch: &Dispatch) -> Option<Dispatch> {
    let is_3x3 = matches!(dispatch.entry, "forward_3x3" | "forward_3x3_s2");
    if dispatch.shader != Shader::DepthwiseInt8 || !is_3x3 {
        return None;
    }
    let words: DepthwiseInt8Words = bytemuck::try_pod_read_unaligned(&dispatch.uniform).ok()?;
    let [n, channel_words, out_h, out_w] =
        [words.batch, words.words, words.out_h, words.out_w].map(|d| d as usize);
    if channel_words % 4 != 0 {
        return None;
    }
    let rows = DEPTHWISE_3X3_ROWS;
    // A quarter of the base kernel's invocations per image: its own images per invocation.
    let per_image = depthwise_invocations([1, out_h, out_w], rows, 1, channel_words, 4);
    let images = images_per_invocation(n, out_h * out_w, per_image);
    let quads = depthwise_invocations([n, out_h, out_w], rows, images, channel_words, 4);
    let words = DepthwiseInt8Words {
        images: images as u32,
        ..words
    };
    Some(Dispatch {
        shader: Shader::DepthwiseInt8X16,
        uniform: bytemuck::bytes_of(&words).to_vec(),
        workgroups: linear_grid(quads),
        ..dispatch.clone()
    })
}

/// The int8 stem: a standard convolution as im2col into the workspace, then the GEMM
/// (weights `[Cout][KH*KW*Cin]` packed along the reduction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int8Stem {
    pub out_channels: usize,
    pub window: Int8Window,
    pub output: Int8Output,
}

impl Int8Stem {
    fn patch(&self, input: &[usize]) -> usize {
        self.window.kernel * self.window.kernel * input[3]
    }

    /// The im2col entry point for `channels` input channels and how many invocations it
    /// takes over `rows` output rows of `out_w` pixels (conv2d_int8.wgsl). An invocation
    /// unfolds a quad of 4 pixels of a row (a 3x3 kernel on one or three channels at
    /// stride 1 or 2), else one pixel's row (other inputs of one word a pixel), else one
    /// word of a row.
    fn unfolding(
        &self,
        channels: usize,
        rows: usize,
        out_w: usize,
        patch_words: usize,
    ) -> (&'static str, usize) {
        match quad_unfolding(self.window.kernel, channels, self.window.stride) {
            Some(entry) => (entry, rows * out_w.div_ceil(4)),
            None if words_for(channels) == 1 => ("im2col_pixel", rows * out_w),
            None => ("im2col", rows * out_w * patch_words),
        }
    }

    /// Words of the unfolded patches: one row of `words_for(KH*KW*Cin)` per output pixel.
    pub fn workspace_words(&self, input: &[usize]) -> Result<usize, String> {
        let ([n, h, w], _) = self.window.resolve(input)?;
        Ok(n * h * w * words_for(self.patch(input)))
    }

    pub fn forward(&self, input: &[usize]) -> Result<[Dispatch; 2], String> {
        let ([n, out_h, out_w], window) = self.window.resolve(input)?;
        let patch_words = words_for(self.patch(input));
        let pixels = n * out_h * out_w;
        let uniform = words(&[
            n as i64,
            input[1] as i64,
            input[2] as i64,
            words_for(input[3]) as i64,
            out_h as i64,
            out_w as i64,
            self.window.kernel as i64,
            self.window.stride as i64,
            window.pad_top as i64,
            window.pad_left as i64,
            input[3] as i64,
            patch_words as i64,
            self.window.input_zero as i64,
            0,
            0,
            0,
        ]);
        let (entry, invocations) = self.unfolding(input[3], n * out_h, out_w, patch_words);
        let im2col = Dispatch {
            shader: Shader::Conv2dInt8,
            entry,
            uniform,
            bindings: vec![(1, Slot::Input), (2, Slot::Workspace)],
            workgroups: linear_grid(invocations),
        };
        let gemm = Int8Gemm {
            rows: pixels,
            k: self.patch(input),
            n: self.out_channels,
        };
        Ok([
            im2col,
            gemm.forward(self.output, Slot::Workspace, Slot::Output),
        ])
    }
}

/// Int8 global average pooling, `[N, H, W, C] -> [N, C]`, with its own output scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Int8Pool {
    pub input_zero: i32,
    pub output_zero: i32,
    /// `s_in / (s_out * H*W)` (`int8::pool_multiplier`).
    pub multiplier: f32,
}

impl Int8Pool {
    pub fn forward(&self, input: &[usize]) -> Result<Dispatch, String> {
        let [n, h, w, c] = nhwc(input)?;
        let channel_words = words_for(c);
        let mut uniform = words(&[
            n as i64,
            (h * w) as i64,
            channel_words as i64,
            c as i64,
            self.input_zero as i64,
            self.output_zero as i64,
        ]);
        uniform.extend_from_slice(&self.multiplier.to_le_bytes());
        uniform.extend_from_slice(&[0; 4]);
        Ok(Dispatch {
            shader: Shader::PoolInt8,
            entry: "forward",
            uniform,
            bindings: vec![(1, Slot::Input), (2, Slot::Output)],
            workgroups: linear_grid(n * channel_words),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// depthwise_int8.wgsl's `DepthwiseInt8Params` and `DepthwiseInt8Words` name the same
    /// words in the same places.
    #[test]
    fn the_depthwise_words_match_the_shaders_uniform_block() {
        use super::super::dispatch::{check_words_against_shader, field_offsets};
        let fields = field_offsets!(DepthwiseInt8Words;
            batch, in_h, in_w, words, out_h, out_w, kernel, stride, pad_top, pad_left,
            channels, input_zero, zero_point, lo, hi, images);
        for shader in [Shader::DepthwiseInt8, Shader::DepthwiseInt8X16] {
            let size = std::mem::size_of::<DepthwiseInt8Words>();
            check_words_against_shader(shader, "DepthwiseInt8Params", &fields, size);
        }
    }

    #[test]
    fn gemm_uniform_carries_signed_zero_points() {
        let output = Int8Output {
            zero_point: -128,
            lo: -128,
            hi: 5,
        };
        let d = Int8Gemm {
            rows: 9,
            k: 5,
            n: 10,
        }
        .forward(output, Slot::Input, Slot::Output);
        let w: &[u32] = bytemuck::cast_slice(&d.uniform);
        assert_eq!(w, &[9, 10, 2, 3, 2, (-128i32) as u32, (-128i32) as u32, 5]);
        // 2 row blocks by 2 column blocks.
        assert_eq!(d.workgroups, [1, 1, 1]);
    }

    #[test]
    fn stems_unfold_by_quads_rows_or_words() {
        let stem = |channels: usize, kernel: usize, stride: usize| {
            let op = Int8Stem {
                out_channels: 8,
                window: Int8Window {
                    kernel,
                    stride,
                    padding: Padding::Symmetric,
                    input_zero: 0,
                },
                output: Int8Output::linear(0),
            };
            op.forward(&[1, 8, 7, channels]).expect("a valid stem")[0].clone()
        };
        assert_eq!(stem(1, 3, 1).entry, "im2col_3x3_c1");
        assert_eq!(stem(1, 3, 2).entry, "im2col_3x3_c1_s2");
        assert_eq!(stem(3, 3, 1).entry, "im2col_3x3_c3");
        assert_eq!(stem(3, 3, 2).entry, "im2col_3x3_c3_s2");
        // 4 quads of the 4x4 output at stride 2 (one of the 8x7 at stride 1 is partial).
        assert_eq!(stem(3, 3, 2).workgroups, linear_grid(4));
        assert_eq!(stem(1, 3, 1).workgroups, linear_grid(8 * 2));
        assert_eq!(stem(2, 3, 2).entry, "im2col_pixel");
        assert_eq!(stem(3, 5, 2).entry, "im2col_pixel");
        assert_eq!(stem(4, 3, 2).entry, "im2col_pixel");
        assert_eq!(stem(5, 3, 2).entry, "im2col");
    }

    #[test]
    fn every_int8_shader_validates() {
        for shader in [
            Shader::GemmInt8,
            Shader::DepthwiseInt8,
            Shader::DepthwiseInt8X16,
            Shader::PoolInt8,
            Shader::Conv2dInt8,
        ] {
            shader
                .validate()
                .unwrap_or_else(|e| panic!("{shader} failed naga validation:\n{e}"));
        }
    }
}
