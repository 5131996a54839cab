//! The graph a configuration builds: stem, 13 depthwise-separable blocks, pool,
//! classifier and softmax, with batch norm as its own op or folded into the convolutions.

use super::layers::{conv_bn_pair, CLASSIFIER, POOL_STAGE, STAGES};
use super::{MobileNetV1Config, ModelError, Summary, BLOCKS, STEM_CHANNELS};
use crate::graph::{GraphBuilder, TensorId};
use crate::ops::{BatchNorm, Conv2d, Dense, Depthwise, OpKind, Pointwise};

impl MobileNetV1Config {
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
        let mut g = GraphBuilder::new();
        let mut x = self.stage_input(&mut g, batch, range.start)?;
        let stages = StageBuilder { config: self, form };
        let mut probs = None;
        for stage in range {
            x = stages.add(&mut g, stage, x)?;
            if stage == STAGES - 1 {
                probs = Some(g.softmax("softmax", x)?);
            }
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

    /// The graph's input: the image for the whole network, else the output of the stages
    /// before `first_stage` (their shape taken from building them).
    fn stage_input(
        &self,
        g: &mut GraphBuilder,
        batch: usize,
        first_stage: usize,
    ) -> Result<TensorId, ModelError> {
        if first_stage == 0 {
            let shape = [batch, self.resolution, self.resolution, self.in_channels];
            return Ok(g.input("image", &shape));
        }
        let prefix = self.build_stages(batch, 0..first_stage, Form::Train)?;
        let shape = prefix.graph.shape(prefix.logits)?.to_vec();
        Ok(g.input("features", &shape))
    }
}

/// Adds the network's stages to a graph in one form.
struct StageBuilder<'a> {
    config: &'a MobileNetV1Config,
    form: Form,
}

impl StageBuilder<'_> {
    /// Stage `stage` (0 the stem, 1..=13 the blocks, the pool, the classifier) reading `x`.
    fn add(&self, g: &mut GraphBuilder, stage: usize, x: TensorId) -> Result<TensorId, ModelError> {
        let config = self.config;
        let fused = match self.form {
            Form::Train => None,
            Form::Folded => Some(config.activation),
        };
        match stage {
            0 => {
                let stem = Conv2d {
                    out_channels: config.width(STEM_CHANNELS),
                    kernel: 3,
                    stride: config.stem_stride,
                    padding: config.padding,
                    fused,
                };
                self.conv_bn(g, x, conv_bn_pair(0), OpKind::Conv2d(stem))
            }
            block @ 1..=13 => {
                let (channels, stride) = BLOCKS[block - 1];
                let dw = Depthwise {
                    kernel: 3,
                    stride,
                    padding: config.padding,
                    fused,
                };
                let x = self.conv_bn(g, x, conv_bn_pair(2 * block - 1), OpKind::Depthwise(dw))?;
                let pw = Pointwise {
                    out_channels: config.width(channels),
                    fused,
                };
                self.conv_bn(g, x, conv_bn_pair(2 * block), OpKind::Pointwise(pw))
            }
            POOL_STAGE => Ok(g.global_avg_pool("pool", x)?),
            _ => {
                let classifier = Dense {
                    out_features: config.classes,
                    read_only: self.form == Form::Folded,
                };
                Ok(g.dense(CLASSIFIER, x, classifier)?)
            }
        }
    }

    /// A convolution, then its batchnorm: separate, or folded into the convolution.
    fn conv_bn(
        &self,
        g: &mut GraphBuilder,
        x: TensorId,
        [conv, norm]: [String; 2],
        op: OpKind,
    ) -> Result<TensorId, ModelError> {
        let y = g.add(&conv, op, x)?;
        match self.form {
            Form::Train => {
                let bn = BatchNorm {
                    eps: self.config.bn_eps,
                    activation: self.config.activation,
                };
                Ok(g.batch_norm(&norm, y, bn)?)
            }
            Form::Folded => Ok(y),
        }
    }
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
