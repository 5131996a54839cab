//! The optimizer update rules on the CPU, element by element as optim.wgsl defines them.

use crate::ops::UpdateRule;

/// Updates `param` in place from `grad`; `state` holds the rule's state tensors (as many
/// as `UpdateRule::state_names`), updated in place too.
pub fn apply_update(
    rule: &UpdateRule,
    param: &mut [f32],
    grad: &[f32],
    state: &mut [Vec<f32>],
    lr: f32,
    weight_decay: f32,
) {
    let (lr, wd) = (lr as f64, weight_decay as f64);
    for i in 0..param.len() {
        let w = param[i] as f64;
        let g = grad[i] as f64 + wd * w;
        let step = match *rule {
            UpdateRule::Sgd { momentum, nesterov } => {
                let buf = momentum as f64 * state[0][i] as f64 + g;
                state[0][i] = buf as f32;
                lr * if nesterov {
                    g + momentum as f64 * buf
                } else {
                    buf
                }
            }
            UpdateRule::RmspropTf {
                decay,
                momentum,
                eps,
            } => {
                let ms = decay as f64 * state[0][i] as f64 + (1.0 - decay as f64) * g * g;
                let mom = momentum as f64 * state[1][i] as f64 + lr * g / (ms + eps as f64).sqrt();
                state[0][i] = ms as f32;
                state[1][i] = mom as f32;
                mom
            }
            UpdateRule::RmspropTorch {
                alpha,
                momentum,
                eps,
            } => {
                let sq = alpha as f64 * state[0][i] as f64 + (1.0 - alpha as f64) * g * g;
                let buf = momentum as f64 * state[1][i] as f64 + g / (sq.sqrt() + eps as f64);
                state[0][i] = sq as f32;
                state[1][i] = buf as f32;
                lr * buf
            }
        };
        param[i] = (w - step) as f32;
    }
}
