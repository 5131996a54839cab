//! MobileNet V1 (Howard et al. 2017): the configuration and the graph it builds.

mod summary;

pub use summary::{Summary, SummaryRow};

use crate::graph::{GraphBuilder, GraphError, TensorId};
use crate::ops::{Activation, BatchNorm, Conv2d, Dense, Depthwise, OpKind, Padding, Pointwise};
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

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid MobileNet V1 configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Fold(#[from] crate::weights::FoldError),
}

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

    /// Builds the graph for a batch: stem, 13 blocks, pool, classifier, softmax, with
    /// batchnorm as separate ops (the form training needs). Parameters are named
    /// `stem.conv.weight`, `blocks.<i>.dw.weight`, `blocks.<i>.pw_bn.gamma`,
    /// `classifier.bias`, ... with blocks numbered 1..=13 as in the paper.
    pub fn build(&self, batch: usize) -> Result<MobileNetV1, ModelError> {
        self.build_stages(batch, 0..STAGES, Form::Train)
    }

    /// The inference form: every batchnorm folded into the convolution before it (a bias
    /// and the activation in its epilogue), so a batch runs fewer passes. Load it with
    /// `weights::fold_batchnorm` of the unfolded parameters.
    pub fn build_folded(&self, batch: usize) -> Result<MobileNetV1, ModelError> {
        self.build_stages(batch, 0..STAGES, Form::Folded)
    }

    /// The compiled inference form for `batch` images with unfolded `params` (as trained and
    /// stored) folded in: what predict, eval and the inference benchmark run.
    pub fn inference_plan(
        &self,
        gpu: &crate::gpu::Gpu,
        params: &crate::graph::ParamStore,
        batch: usize,
    ) -> Result<crate::graph::Plan, ModelError> {
        let folded = crate::weights::fold_batchnorm(params, self.bn_eps)?;
        let plan = self.build_folded(batch)?.graph.compile(gpu)?;
        plan.load_params(&folded)?;
        Ok(plan)
    }

    /// A slice of the network: stages `range` (see `STAGES`), reading the previous stage's
    /// output as its input. The graph's outputs are the last stage's output (and the
    /// probabilities when the range includes the classifier). Parameter names are those of
    /// the whole network, so the parts of a fine-tuned model merge back by name.
    #[doc(hidden)]
    pub fn build_stages(
        &self,
        batch: usize,
        range: std::ops::Range<usize>,
        form: Form,
    ) -> Result<MobileNetV1, ModelError> {
        self.validate()?;
        if batch == 0 {
            return Err(ModelError::Config("batch must be at least 1".into()));
        }
        if range.is_empty() || range.end > STAGES {
            return Err(ModelError::Config(format!(
                "stage range {range:?} is not within 0..{STAGES}"
            )));
        }
        let input_shape = if range.start == 0 {
            vec![batch, self.resolution, self.resolution, self.in_channels]
        } else {
            let prefix = self.build_stages(batch, 0..range.start, Form::Train)?;
            prefix.graph.shape(prefix.logits)?.to_vec()
        };
        let bn = BatchNorm {
            eps: self.bn_eps,
            activation: self.activation,
        };
        let fused = match form {
            Form::Train => None,
            Form::Folded => Some(self.activation),
        };
        let mut g = GraphBuilder::new();
        let mut x = g.input(
            if range.start == 0 {
                "image"
            } else {
                "features"
            },
            &input_shape,
        );
        let mut probs = None;
        // Adds a convolution, then its batchnorm: separate, or folded into the convolution.
        let conv_bn = |g: &mut GraphBuilder, x: TensorId, [conv, norm]: [String; 2], op: OpKind| {
            let y = g.add(&conv, op, x)?;
            match form {
                Form::Train => g.batch_norm(&norm, y, bn.clone()),
                Form::Folded => Ok(y),
            }
        };
        for stage in range {
            x = match stage {
                0 => {
                    let stem = Conv2d {
                        out_channels: self.width(STEM_CHANNELS),
                        kernel: 3,
                        stride: self.stem_stride,
                        padding: self.padding,
                        fused,
                    };
                    conv_bn(&mut g, x, conv_bn_pair(0), OpKind::Conv2d(stem))?
                }
                block @ 1..=13 => {
                    let (channels, stride) = BLOCKS[block - 1];
                    let dw = Depthwise {
                        kernel: 3,
                        stride,
                        padding: self.padding,
                        fused,
                    };
                    let x = conv_bn(
                        &mut g,
                        x,
                        conv_bn_pair(2 * block - 1),
                        OpKind::Depthwise(dw),
                    )?;
                    let pw = Pointwise {
                        out_channels: self.width(channels),
                        fused,
                    };
                    conv_bn(&mut g, x, conv_bn_pair(2 * block), OpKind::Pointwise(pw))?
                }
                POOL_STAGE => g.global_avg_pool("pool", x)?,
                _ => {
                    let logits = g.dense(
                        CLASSIFIER,
                        x,
                        Dense {
                            out_features: self.classes,
                        },
                    )?;
                    probs = Some(g.softmax("softmax", logits)?);
                    logits
                }
            };
        }
        g.output(x)?;
        if let Some(p) = probs {
            g.output(p)?;
        }
        Ok(MobileNetV1 {
            config: self.clone(),
            graph: g,
            logits: x,
            probs: probs.unwrap_or(x),
        })
    }
}

/// Stages of the network, in order: 0 the stem, 1..=13 the blocks, then the pool and the
/// classifier.
#[doc(hidden)]
pub const STAGES: usize = 16;
/// The global average pool's stage; stages before it are the backbone.
#[doc(hidden)]
pub const POOL_STAGE: usize = 14;
pub const CLASSIFIER: &str = "classifier";
/// Convolutions in the network, each followed by a batchnorm: the stem, then every block's
/// depthwise and pointwise.
pub const CONV_LAYERS: usize = 1 + 2 * BLOCKS.len();

/// Op names of the `layer`-th convolution (0..CONV_LAYERS) and of its batchnorm:
/// `stem.conv`/`stem.bn`, `blocks.<b>.dw`/`blocks.<b>.dw_bn`, `blocks.<b>.pw`/`blocks.<b>.pw_bn`.
/// BN folding and the checkpoint name maps walk the same list.
#[doc(hidden)]
pub fn conv_bn_pair(layer: usize) -> [String; 2] {
    if layer == 0 {
        return ["stem.conv".into(), "stem.bn".into()];
    }
    let block = layer.div_ceil(2);
    let kind = if layer % 2 == 1 { "dw" } else { "pw" };
    [
        format!("blocks.{block}.{kind}"),
        format!("blocks.{block}.{kind}_bn"),
    ]
}

/// Batchnorm kept as its own op (training, and what checkpoints store) or folded into the
/// convolutions (inference).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[doc(hidden)]
pub enum Form {
    Train,
    Folded,
}

/// A built MobileNet V1 graph and its two outputs (logits, then probabilities).
#[derive(Clone, Debug)]
pub struct MobileNetV1 {
    pub config: MobileNetV1Config,
    pub graph: GraphBuilder,
    pub logits: TensorId,
    pub probs: TensorId,
}

impl MobileNetV1 {
    /// The layer table for one image.
    pub fn summary(&self) -> Summary {
        Summary::of(&self.graph)
    }
}
