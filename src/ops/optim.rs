//! Optimizer update rules as dispatches of optim.wgsl: one dispatch updates many
//! parameter tensors, which live in flat buffers (see `UpdateTensor`).

use super::{linear_grid, uniform_words, Dispatch, Slot, LINEAR_WORKGROUP};
use crate::gpu::Shader;

/// Tensors one update dispatch takes (optim.wgsl's `UPDATE_TABLE_TENSORS`); a longer list
/// is split over several dispatches.
pub const UPDATE_TABLE_TENSORS: usize = 256;

/// Vec4s each invocation of an update updates (optim.wgsl's `VEC4S_PER_INVOCATION`).
const UPDATE_VEC4S_PER_INVOCATION: usize = 16;

/// One tensor of an update dispatch: where it starts, in vec4s (16 bytes) from the start
/// of the bound parameter range and of the bound gradient range (each state tensor has the
/// gradients' layout), its length in elements and its weight decay.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UpdateTensor {
    pub param_vec4: u32,
    pub grad_vec4: u32,
    pub len: u32,
    pub weight_decay: f32,
}

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
    /// optim.wgsl's `RULE_*` code.
    fn code(&self) -> u32 {
        match self {
            UpdateRule::Sgd { .. } => 0,
            UpdateRule::RmspropTf { .. } => 1,
            UpdateRule::RmspropTorch { .. } => 2,
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

    /// The update of `tensors` (at most `UPDATE_TABLE_TENSORS`, at least one) in one
    /// dispatch, each tensor's vec4s handled by workgroups of their own.
    pub fn dispatch(&self, tensors: &[UpdateTensor]) -> Dispatch {
        assert!(
            (1..=UPDATE_TABLE_TENSORS).contains(&tensors.len()),
            "an update dispatch takes 1 to {UPDATE_TABLE_TENSORS} tensors, not {}",
            tensors.len()
        );
        let mut entries = Vec::with_capacity(UPDATE_TABLE_TENSORS * 8);
        let mut workgroups = 0u32;
        for t in tensors {
            entries.extend([workgroups, t.param_vec4, t.grad_vec4, t.len]);
            entries.extend([t.weight_decay.to_bits(), 0, 0, 0]);
            let vec4s = (t.len as usize).div_ceil(4).max(1);
            let per_workgroup = LINEAR_WORKGROUP * UPDATE_VEC4S_PER_INVOCATION;
            workgroups += vec4s.div_ceil(per_workgroup) as u32;
        }
        // A uniform array is bound whole: the unused entries are zeros.
        entries.resize(UPDATE_TABLE_TENSORS * 8, 0);
        let mut words = vec![tensors.len() as u32, workgroups, self.code(), 0];
        words.extend(entries);
        Dispatch {
            shader: Shader::Optim,
            entry: "update",
            uniform: uniform_words(&words),
            bindings: vec![
                (1, Slot::Hyper),
                (2, Slot::Param(0)),
                (3, Slot::ParamGrad(0)),
                (4, Slot::OptState(0)),
                (5, Slot::OptState(1)),
            ],
            workgroups: linear_grid(workgroups as usize * LINEAR_WORKGROUP),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shader_declares_the_table_the_host_fills() {
        let source = Shader::Optim.source();
        let table = format!("const UPDATE_TABLE_TENSORS: u32 = {UPDATE_TABLE_TENSORS}u;");
        let per_invocation =
            format!("const VEC4S_PER_INVOCATION: u32 = {UPDATE_VEC4S_PER_INVOCATION}u;");
        assert!(source.contains(&table) && source.contains(&per_invocation));
        let rules = [
            UpdateRule::Sgd {
                momentum: 0.0,
                nesterov: false,
            },
            UpdateRule::RmspropTf {
                decay: 0.9,
                momentum: 0.0,
                eps: 1.0,
            },
            UpdateRule::RmspropTorch {
                alpha: 0.9,
                momentum: 0.0,
                eps: 1.0,
            },
        ];
        for (rule, name) in rules.iter().zip(["SGD", "RMSPROP_TF", "RMSPROP_TORCH"]) {
            let code = format!("const RULE_{name}: u32 = {}u;", rule.code());
            assert!(source.contains(&code), "{code}");
        }
    }

    #[test]
    fn each_tensor_gets_whole_workgroups_of_its_own() {
        let rule = UpdateRule::Sgd {
            momentum: 0.9,
            nesterov: false,
        };
        let tensor = |len| UpdateTensor {
            param_vec4: 0,
            grad_vec4: 0,
            len,
            weight_decay: 0.0,
        };
        // A workgroup takes 64 x 16 vec4s: 1025 of them need 2 workgroups, 1 element 1,
        // and 4096 vec4s 4.
        let dispatch = rule.dispatch(&[tensor(4100), tensor(1), tensor(16384)]);
        let words: &[u32] = bytemuck::cast_slice(&dispatch.uniform);
        assert_eq!(words.len(), 4 + UPDATE_TABLE_TENSORS * 8);
        assert_eq!(&words[..3], &[3, 7, 0]);
        let firsts: Vec<u32> = (0..3).map(|i| words[4 + 8 * i]).collect();
        assert_eq!(firsts, [0, 2, 3]);
        let invocations: u32 = dispatch.workgroups.iter().product::<u32>() * 64;
        assert!(invocations >= 7 * 64);
    }
}
