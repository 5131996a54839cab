//! Optimizer update rules as dispatches of optim.wgsl, one per parameter tensor.

use super::{linear_grid, uniform_words, Dispatch, Slot};
use crate::gpu::Shader;

/// How a parameter moves given its gradient; the state tensors each rule keeps are named
/// by `state_names`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "rule", rename_all = "kebab-case")]
pub enum UpdateRule {
    /// SGD with momentum (PyTorch's form), optionally Nesterov.
    Sgd { momentum: f32, nesterov: bool },
    /// TensorFlow's RMSProp, the paper's optimizer: epsilon inside the square root.
    RmspropTf { decay: f32, momentum: f32, eps: f32 },
    /// PyTorch's RMSprop: epsilon outside the square root; `alpha` is the decay.
    RmspropTorch { alpha: f32, momentum: f32, eps: f32 },
}

impl UpdateRule {
    fn entry(&self) -> &'static str {
        match self {
            UpdateRule::Sgd { .. } => "sgd",
            UpdateRule::RmspropTf { .. } => "rmsprop_tf",
            UpdateRule::RmspropTorch { .. } => "rmsprop_torch",
        }
    }

    /// Names of the per-parameter state tensors, in `Slot::OptState` order.
    pub fn state_names(&self) -> &'static [&'static str] {
        match self {
            UpdateRule::Sgd { .. } => &["momentum"],
            UpdateRule::RmspropTf { .. } => &["ms", "mom"],
            UpdateRule::RmspropTorch { .. } => &["square_avg", "momentum"],
        }
    }

    /// Initial value of state tensor `index`. TensorFlow's RMSPropOptimizer starts the
    /// mean square at one, which keeps the first steps from being huge.
    pub fn state_init(&self, index: usize) -> f32 {
        match (self, index) {
            (UpdateRule::RmspropTf { .. }, 0) => 1.0,
            _ => 0.0,
        }
    }

    /// The shared per-step uniform block (optim.wgsl's `Hyper`).
    pub fn hyper_words(&self, lr: f32) -> [u32; 8] {
        let (decay, momentum, eps, nesterov) = match *self {
            UpdateRule::Sgd { momentum, nesterov } => (0.0, momentum, 0.0, nesterov),
            UpdateRule::RmspropTf {
                decay,
                momentum,
                eps,
            } => (decay, momentum, eps, false),
            UpdateRule::RmspropTorch {
                alpha,
                momentum,
                eps,
            } => (alpha, momentum, eps, false),
        };
        [
            lr.to_bits(),
            decay.to_bits(),
            momentum.to_bits(),
            eps.to_bits(),
            nesterov as u32,
            0,
            0,
            0,
        ]
    }

    /// The update of one parameter tensor of `len` elements.
    pub fn dispatch(&self, len: usize, weight_decay: f32) -> Dispatch {
        Dispatch {
            shader: Shader::Optim,
            entry: self.entry(),
            uniform: uniform_words(&[len as u32, weight_decay.to_bits(), 0, 0]),
            bindings: vec![
                (1, Slot::Hyper),
                (2, Slot::Param(0)),
                (3, Slot::ParamGrad(0)),
                (4, Slot::OptState(0)),
                (5, Slot::OptState(1)),
            ],
            // optim.wgsl updates one vec4 per invocation.
            workgroups: linear_grid(len.div_ceil(4)),
        }
    }
}
