//! Optimizer choice as users name it, and which parameters decay.

use crate::graph::ParamInfo;
use crate::ops::{ParamRole, UpdateRule};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// TensorFlow's RMSProp, the paper's recipe (decay 0.9, momentum 0.9, eps 1.0 inside
    /// the square root).
    Rmsprop,
    /// PyTorch's RMSprop (alpha 0.99, eps 1e-8 outside the square root).
    RmspropTorch,
    /// SGD with momentum, optionally Nesterov.
    Sgd,
}

impl FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "rmsprop" | "rmsprop-tf" => Ok(OptimizerKind::Rmsprop),
            "rmsprop-torch" => Ok(OptimizerKind::RmspropTorch),
            "sgd" => Ok(OptimizerKind::Sgd),
            other => Err(format!(
                "unknown optimizer {other:?}; expected rmsprop (TensorFlow form), rmsprop-torch or sgd"
            )),
        }
    }
}

impl fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OptimizerKind::Rmsprop => "rmsprop",
            OptimizerKind::RmspropTorch => "rmsprop-torch",
            OptimizerKind::Sgd => "sgd",
        })
    }
}

/// An optimizer with its hyper-parameters; `None` fields take the kind's defaults.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptimizerConfig {
    pub kind: OptimizerKind,
    pub momentum: Option<f32>,
    /// RMSProp's decay (TensorFlow) or alpha (PyTorch).
    pub decay: Option<f32>,
    pub eps: Option<f32>,
    pub nesterov: bool,
    /// L2 coefficient, added to the gradient.
    pub weight_decay: f32,
    /// Also decay depthwise filters (the paper advises against it).
    pub decay_depthwise: bool,
}

impl OptimizerConfig {
    pub fn new(kind: OptimizerKind) -> Self {
        OptimizerConfig {
            kind,
            momentum: None,
            decay: None,
            eps: None,
            nesterov: false,
            weight_decay: 0.0,
            decay_depthwise: false,
        }
    }

    pub fn rule(&self) -> UpdateRule {
        match self.kind {
            OptimizerKind::Rmsprop => UpdateRule::RmspropTf {
                decay: self.decay.unwrap_or(0.9),
                momentum: self.momentum.unwrap_or(0.9),
                eps: self.eps.unwrap_or(1.0),
            },
            OptimizerKind::RmspropTorch => UpdateRule::RmspropTorch {
                alpha: self.decay.unwrap_or(0.99),
                momentum: self.momentum.unwrap_or(0.0),
                eps: self.eps.unwrap_or(1e-8),
            },
            OptimizerKind::Sgd => UpdateRule::Sgd {
                momentum: self.momentum.unwrap_or(0.9),
                nesterov: self.nesterov,
            },
        }
    }

    /// Weight decay of one parameter: kernels decay; depthwise filters only when asked;
    /// BN scales and shifts and biases never (the paper's advice).
    pub fn weight_decay_for(&self, param: &ParamInfo) -> f32 {
        match param.role {
            ParamRole::Weight {
                depthwise: false, ..
            } => self.weight_decay,
            ParamRole::Weight {
                depthwise: true, ..
            } if self.decay_depthwise => self.weight_decay,
            _ => 0.0,
        }
    }
}
