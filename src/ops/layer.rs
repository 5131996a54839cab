//! What describes a layer to the rest of the crate: its activation and padding, the
//! windows of its convolutions, the parameters it owns, the folded-BN epilogue, and the
//! shape checks every op shares.

use super::Slot;
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    None,
    #[default]
    Relu,
    Relu6,
}

impl Activation {
    /// The code the shaders switch on (common.wgsl's ACT_* constants).
    #[doc(hidden)]
    pub fn shader_code(self) -> u32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::Relu6 => 2,
        }
    }
}

impl FromStr for Activation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "linear" => Ok(Activation::None),
            "relu" => Ok(Activation::Relu),
            "relu6" => Ok(Activation::Relu6),
            other => Err(format!(
                "unknown activation {other:?}; expected none, relu or relu6"
            )),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Activation::None => "none",
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
        })
    }
}

/// How a convolution pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// kernel/2 on every side (PyTorch, timm, the paper).
    #[default]
    Symmetric,
    /// TensorFlow SAME: output = ceil(input / stride), any odd padding goes after (Keras).
    Same,
}

impl Padding {
    /// Output size and padding before the first element along one spatial axis.
    pub fn resolve(self, input: usize, kernel: usize, stride: usize) -> (usize, usize) {
        match self {
            Padding::Symmetric => {
                let pad = kernel / 2;
                ((input + 2 * pad).saturating_sub(kernel) / stride + 1, pad)
            }
            Padding::Same => {
                let out = input.div_ceil(stride);
                let total = ((out - 1) * stride + kernel).saturating_sub(input);
                (out, total / 2)
            }
        }
    }
}

impl FromStr for Padding {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "symmetric" | "torch" => Ok(Padding::Symmetric),
            "same" | "tf" | "tf-same" => Ok(Padding::Same),
            other => Err(format!(
                "unknown padding {other:?}; expected symmetric or same"
            )),
        }
    }
}

impl fmt::Display for Padding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Padding::Symmetric => "symmetric",
            Padding::Same => "same",
        })
    }
}

/// Output size and leading padding of a KxK sliding window over an NHWC input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub out_h: usize,
    pub out_w: usize,
    pub pad_top: usize,
    pub pad_left: usize,
}

impl Window {
    pub fn of(input: &[usize], kernel: usize, stride: usize, padding: Padding) -> Window {
        let (out_h, pad_top) = padding.resolve(input[1], kernel, stride);
        let (out_w, pad_left) = padding.resolve(input[2], kernel, stride);
        Window {
            out_h,
            out_w,
            pad_top,
            pad_left,
        }
    }
}

/// What a parameter is, which decides its initialisation and whether it is trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamRole {
    /// A convolution or dense kernel; `fan_in` drives He initialisation. Depthwise filters
    /// are marked because the paper advises no weight decay on them.
    Weight {
        fan_in: usize,
        depthwise: bool,
    },
    Bias,
    Gamma,
    Beta,
    RunningMean,
    RunningVar,
}

impl ParamRole {
    pub fn trainable(self) -> bool {
        !matches!(self, ParamRole::RunningMean | ParamRole::RunningVar)
    }
}

/// A parameter tensor an op owns, named `<op name>.<suffix>` in the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub suffix: &'static str,
    pub shape: Vec<usize>,
    pub role: ParamRole,
    /// How its GPU buffer holds it, where the op reads it other than densely.
    pub layout: GpuLayout,
}

/// How a [rows, cols] parameter is laid out in its GPU buffer. Only an inference graph's
/// weights take anything but `Dense`: training's gradients, optimizer states and
/// checkpoints are dense, as everywhere off the GPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GpuLayout {
    #[default]
    Dense,
    /// Rows this many floats apart (zeros fill the gap).
    PaddedRows(usize),
    /// Stored as its transpose, [cols, rows].
    Transposed,
}

impl GpuLayout {
    /// The shape the GPU buffer holds for a tensor of `shape`.
    pub fn stored_shape(self, shape: &[usize]) -> Vec<usize> {
        let mut stored = shape.to_vec();
        match (self, stored.as_mut_slice()) {
            (GpuLayout::PaddedRows(stride), [.., last]) => *last = stride,
            (GpuLayout::Transposed, [.., rows, cols]) => std::mem::swap(rows, cols),
            _ => {}
        }
        stored
    }

    /// `values` (dense, of `shape`) as the GPU buffer holds them; borrowed where the
    /// layout is dense.
    pub fn to_stored<'a>(self, values: &'a [f32], shape: &[usize]) -> Cow<'a, [f32]> {
        let (rows, cols) = rows_and_cols(shape);
        if rows * cols == 0 {
            return Cow::Borrowed(values);
        }
        match self {
            GpuLayout::Dense => Cow::Borrowed(values),
            GpuLayout::PaddedRows(stride) => {
                let mut out = vec![0.0; rows * stride];
                for (row, dst) in values.chunks(cols).zip(out.chunks_mut(stride)) {
                    dst[..cols].copy_from_slice(row);
                }
                Cow::Owned(out)
            }
            GpuLayout::Transposed => Cow::Owned(transpose(values, rows, cols)),
        }
    }

    /// The inverse of `to_stored`: the buffer's `stored` values as the dense tensor of
    /// `shape`.
    pub fn to_dense(self, stored: Vec<f32>, shape: &[usize]) -> Vec<f32> {
        let (rows, cols) = rows_and_cols(shape);
        if rows * cols == 0 {
            return stored;
        }
        match self {
            GpuLayout::Dense => stored,
            GpuLayout::PaddedRows(stride) => stored
                .chunks(stride)
                .flat_map(|row| &row[..cols])
                .copied()
                .collect(),
            GpuLayout::Transposed => transpose(&stored, cols, rows),
        }
    }
}

/// A tensor as a matrix: its last dimension against all the others.
fn rows_and_cols(shape: &[usize]) -> (usize, usize) {
    let cols = shape.last().copied().unwrap_or(1);
    (shape.iter().product::<usize>() / cols.max(1), cols)
}

/// The transpose of the dense [rows, cols] matrix `values`.
fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|c| (0..rows).map(move |r| values[r * cols + c]))
        .collect()
}

impl ParamSpec {
    pub(super) fn new(suffix: &'static str, shape: Vec<usize>, role: ParamRole) -> Self {
        ParamSpec {
            suffix,
            shape,
            role,
            layout: GpuLayout::Dense,
        }
    }

    pub(super) fn with_layout(self, layout: GpuLayout) -> Self {
        ParamSpec { layout, ..self }
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Checks a rank-4 NHWC shape.
pub(super) fn nhwc(shape: &[usize]) -> Result<[usize; 4], String> {
    match shape {
        &[n, h, w, c] if n > 0 && h > 0 && w > 0 && c > 0 => Ok([n, h, w, c]),
        _ => Err(format!(
            "expected a non-empty NHWC tensor [N, H, W, C], got {shape:?}"
        )),
    }
}

/// Batchnorm folded into a convolution for inference: a per-output-channel bias, then the
/// activation, applied as the convolution writes its output. `None`: the plain convolution.
/// Fused ops are inference-only (training keeps batchnorm separate).
pub type Fused = Option<Activation>;

/// The fused bias as the op's second parameter.
pub(super) fn fused_bias(fused: Fused, channels: usize) -> Option<ParamSpec> {
    fused.map(|_| ParamSpec::new("bias", vec![channels], ParamRole::Bias))
}

/// Uniform words (has_bias, act) of a fused epilogue.
pub(super) fn fused_words(fused: Fused) -> [usize; 2] {
    match fused {
        Some(activation) => [1, activation.shader_code() as usize],
        None => [0, 0],
    }
}

/// Where the shader's bias binding points: the fused bias, or nothing.
pub(super) fn fused_bias_slot(fused: Fused) -> Slot {
    if fused.is_some() {
        Slot::Param(1)
    } else {
        Slot::Unused
    }
}

/// Checks a rank-2 [N, features] shape.
pub(super) fn matrix(shape: &[usize]) -> Result<[usize; 2], String> {
    match shape {
        &[n, f] if n > 0 && f > 0 => Ok([n, f]),
        _ => Err(format!(
            "expected a non-empty [N, features] tensor, got {shape:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_gpu_layout_stores_its_shape_and_reads_back_dense() {
        let values: Vec<f32> = (0..15).map(|v| v as f32).collect();
        let shape = [3, 5];
        let stored = |layout: GpuLayout| layout.to_stored(&values, &shape).into_owned();
        assert_eq!(stored(GpuLayout::Dense), values);
        let padded = stored(GpuLayout::PaddedRows(8));
        assert_eq!(GpuLayout::PaddedRows(8).stored_shape(&shape), [3, 8]);
        assert_eq!(padded[8..16], [5.0, 6.0, 7.0, 8.0, 9.0, 0.0, 0.0, 0.0]);
        let transposed = stored(GpuLayout::Transposed);
        assert_eq!(GpuLayout::Transposed.stored_shape(&shape), [5, 3]);
        // Row 1 of the stored transpose is column 1 of the tensor.
        assert_eq!(transposed[3..6], [1.0, 6.0, 11.0]);
        for layout in [
            GpuLayout::Dense,
            GpuLayout::PaddedRows(8),
            GpuLayout::Transposed,
        ] {
            assert_eq!(
                layout.to_dense(stored(layout), &shape),
                values,
                "{layout:?}"
            );
        }
    }

    #[test]
    fn symmetric_padding_matches_pytorch_sizes() {
        assert_eq!(Padding::Symmetric.resolve(224, 3, 2), (112, 1));
        assert_eq!(Padding::Symmetric.resolve(7, 3, 2), (4, 1));
        assert_eq!(Padding::Symmetric.resolve(15, 3, 1), (15, 1));
        assert_eq!(Padding::Symmetric.resolve(1, 3, 2), (1, 1));
    }

    #[test]
    fn same_padding_matches_tensorflow_sizes() {
        // Even input, stride 2: nothing before, one after.
        assert_eq!(Padding::Same.resolve(224, 3, 2), (112, 0));
        // Odd input, stride 2: one on each side.
        assert_eq!(Padding::Same.resolve(7, 3, 2), (4, 1));
        assert_eq!(Padding::Same.resolve(15, 3, 1), (15, 1));
        assert_eq!(Padding::Same.resolve(1, 3, 2), (1, 1));
    }
}
