//! The architecture's settings: the paper's blocks, the published presets and the
//! configuration every build starts from.

use super::ModelError;
use crate::ops::{Activation, Padding};
use std::fmt;
use std::str::FromStr;

/// The 13 depthwise-separable blocks of the paper's Table 1: (output channels, stride).
pub const BLOCKS: [(usize, usize); 13] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
];
/// Output channels of the stem convolution at width 1.0.
pub const STEM_CHANNELS: usize = 32;

/// The published variants users meet; see REFERENCE.md's "Variants" table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// The paper and its seed code: ReLU, symmetric padding.
    Paper,
    /// timm's `mobilenetv1_100`: ReLU6, symmetric padding, BN epsilon 1e-5.
    Timm,
    /// Keras `MobileNet`: ReLU6, TensorFlow SAME padding, BN epsilon 1e-3.
    Keras,
}

impl FromStr for Preset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "paper" => Ok(Preset::Paper),
            "timm" => Ok(Preset::Timm),
            "keras" => Ok(Preset::Keras),
            other => Err(format!(
                "unknown preset {other:?}; expected paper, timm or keras"
            )),
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Preset::Paper => "paper",
            Preset::Timm => "timm",
            Preset::Keras => "keras",
        })
    }
}

/// The architecture: width multiplier, resolution, classes, input channels, stem stride,
/// and the variant's activation, padding and batch-norm epsilon ([`Preset`]).
///
/// ```
/// use mobilenet_wgpu::{Gpu, MobileNetV1Config, ParamStore, Preset};
///
/// // The paper's 1.0 MobileNet-224: 4.2M parameters, 569M mult-adds.
/// let paper = MobileNetV1Config::preset(Preset::Paper).build(1)?.summary();
/// assert_eq!(paper.trainable_params, 4_231_976);
/// assert_eq!(paper.mult_adds, 568_740_352);
///
/// // A small one, run on the GPU with fresh weights: 0.25 width, 32x32, 10 classes.
/// let config = MobileNetV1Config {
///     alpha: 0.25,
///     resolution: 32,
///     classes: 10,
///     ..MobileNetV1Config::preset(Preset::Timm)
/// };
/// let params = ParamStore::initialize(&config.build(1)?.graph, 0);
/// let gpu = Gpu::new()?;
/// let plan = config.inference_plan(&gpu, &params, 2)?; // batch norm folded, batch 2
/// let outputs = plan.run(&vec![0.0; 2 * 32 * 32 * 3])?; // NHWC
/// let (logits, probs) = (&outputs[0], &outputs[1]);
/// assert_eq!((logits.len(), probs.len()), (2 * 10, 2 * 10));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MobileNetV1Config {
    /// Width multiplier: every channel count is scaled by it.
    pub alpha: f32,
    /// Input height and width.
    pub resolution: usize,
    pub classes: usize,
    /// 3 for RGB, 1 for grayscale.
    pub in_channels: usize,
    /// 2 in the paper; 1 keeps small inputs (CIFAR, Fashion-MNIST) from collapsing early.
    pub stem_stride: usize,
    pub activation: Activation,
    pub padding: Padding,
    pub bn_eps: f32,
}

impl Default for MobileNetV1Config {
    fn default() -> Self {
        Self::preset(Preset::Paper)
    }
}

impl MobileNetV1Config {
    /// 1.0 / 224 / 1000 classes / RGB in the given variant.
    pub fn preset(preset: Preset) -> Self {
        let (activation, padding, bn_eps) = match preset {
            Preset::Paper => (Activation::Relu, Padding::Symmetric, 1e-5),
            Preset::Timm => (Activation::Relu6, Padding::Symmetric, 1e-5),
            Preset::Keras => (Activation::Relu6, Padding::Same, 1e-3),
        };
        MobileNetV1Config {
            alpha: 1.0,
            resolution: 224,
            classes: 1000,
            in_channels: 3,
            stem_stride: 2,
            activation,
            padding,
            bn_eps,
        }
    }

    /// A channel count scaled by the width multiplier, as the paper and Keras do
    /// (truncated, at least 1).
    pub fn width(&self, channels: usize) -> usize {
        ((channels as f64 * self.alpha as f64) as usize).max(1)
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        let fail = |m: String| Err(ModelError::Config(m));
        if !(self.alpha.is_finite() && self.alpha > 0.0 && self.alpha <= 8.0) {
            return fail(format!("alpha must be in (0, 8], got {}", self.alpha));
        }
        if self.resolution == 0 || self.resolution > 4096 {
            return fail(format!(
                "resolution must be in 1..=4096, got {}",
                self.resolution
            ));
        }
        if self.classes == 0 {
            return fail("classes must be at least 1".into());
        }
        if self.in_channels == 0 {
            return fail("input channels must be at least 1 (3 for RGB, 1 for grayscale)".into());
        }
        if !(1..=2).contains(&self.stem_stride) {
            return fail(format!(
                "stem stride must be 1 or 2, got {}",
                self.stem_stride
            ));
        }
        if !(self.bn_eps.is_finite() && self.bn_eps > 0.0) {
            return fail(format!("BN epsilon must be positive, got {}", self.bn_eps));
        }
        Ok(())
    }
}
