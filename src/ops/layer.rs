//! What describes a layer to the rest of the crate: its activation and padding, the
//! windows of its convolutions, the parameters it owns, the folded-BN epilogue, and the
//! shape checks every op shares.

use super::Slot;
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
    /// Floats between the starts of this [rows, cols] tensor's rows in its GPU buffer,
    /// where the op reads it with rows wider than `cols` (zeros fill the gap); `None`:
    /// stored densely, as everywhere off the GPU.
    pub row_stride: Option<usize>,
}

impl ParamSpec {
    pub(super) fn new(suffix: &'static str, shape: Vec<usize>, role: ParamRole) -> Self {
        ParamSpec {
            suffix,
            shape,
            role,
            row_stride: None,
        }
    }

    /// The same tensor stored with rows `row_stride` floats apart on the GPU (dense where
    /// that is its last dimension).
    pub(super) fn with_row_stride(self, row_stride: usize) -> Self {
        let dense = self.shape.last().copied().unwrap_or(0);
        ParamSpec {
            row_stride: (row_stride != dense).then_some(row_stride),
            ..self
        }
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
