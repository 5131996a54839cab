//! Backward definitions of every op, the training form of batch norm, and the loss.
//! Each takes the forward operands plus dLoss/dOutput and returns the gradients.

use super::forward::{normalize_activate, taps};
use super::Tensor;
use crate::ops::{Activation, OpKind, Padding, Window};

/// Standard convolution: (dX, dW) for weights [K, K, Cin, Cout].
pub fn conv2d_backward(
    x: &Tensor,
    weight: &[f32],
    dy: &Tensor,
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> (Tensor, Vec<f32>) {
    let [n, h, w, cin] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let [oh, ow, cout] = [dy.shape[1], dy.shape[2], dy.shape[3]];
    let window = Window::of(&x.shape, kernel, stride, padding);
    let mut dx = vec![0.0f64; x.data.len()];
    let mut dw = vec![0.0f64; weight.len()];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for (ky, kx, iy, ix) in taps((oy, ox), kernel, stride, window, (h, w)) {
                    for ci in 0..cin {
                        let xi = ((b * h + iy) * w + ix) * cin + ci;
                        for co in 0..cout {
                            let g = dy.data[((b * oh + oy) * ow + ox) * cout + co] as f64;
                            let wi = ((ky * kernel + kx) * cin + ci) * cout + co;
                            dx[xi] += g * weight[wi] as f64;
                            dw[wi] += g * x.data[xi] as f64;
                        }
                    }
                }
            }
        }
    }
    (Tensor::new(x.shape.clone(), to_f32(dx)), to_f32(dw))
}

/// Depthwise convolution: (dX, dW) for weights [K, K, C].
pub fn depthwise_backward(
    x: &Tensor,
    weight: &[f32],
    dy: &Tensor,
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> (Tensor, Vec<f32>) {
    let [n, h, w, c] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let [oh, ow] = [dy.shape[1], dy.shape[2]];
    let window = Window::of(&x.shape, kernel, stride, padding);
    let mut dx = vec![0.0f64; x.data.len()];
    let mut dw = vec![0.0f64; weight.len()];
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for (ky, kx, iy, ix) in taps((oy, ox), kernel, stride, window, (h, w)) {
                    for ch in 0..c {
                        let g = dy.data[((b * oh + oy) * ow + ox) * c + ch] as f64;
                        let xi = ((b * h + iy) * w + ix) * c + ch;
                        let wi = (ky * kernel + kx) * c + ch;
                        dx[xi] += g * weight[wi] as f64;
                        dw[wi] += g * x.data[xi] as f64;
                    }
                }
            }
        }
    }
    (Tensor::new(x.shape.clone(), to_f32(dx)), to_f32(dw))
}

/// Matrix product layers ([rows, fan_in] x [fan_in, fan_out]): (dX, dW).
fn matmul_backward(
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    fan_in: usize,
    fan_out: usize,
) -> (Vec<f32>, Vec<f32>) {
    let rows = x.len() / fan_in;
    let mut dx = vec![0.0f64; x.len()];
    let mut dw = vec![0.0f64; weight.len()];
    for r in 0..rows {
        for i in 0..fan_in {
            for o in 0..fan_out {
                let g = dy[r * fan_out + o] as f64;
                dx[r * fan_in + i] += g * weight[i * fan_out + o] as f64;
                dw[i * fan_out + o] += g * x[r * fan_in + i] as f64;
            }
        }
    }
    (to_f32(dx), to_f32(dw))
}

/// Pointwise convolution: (dX, dW) for weights [Cin, Cout].
pub fn pointwise_backward(x: &Tensor, weight: &[f32], dy: &Tensor) -> (Tensor, Vec<f32>) {
    let (dx, dw) = matmul_backward(&x.data, weight, &dy.data, x.shape[3], dy.shape[3]);
    (Tensor::new(x.shape.clone(), dx), dw)
}

/// Dense layer: (dX, dW, dbias).
pub fn dense_backward(x: &Tensor, weight: &[f32], dy: &Tensor) -> (Tensor, Vec<f32>, Vec<f32>) {
    let fan_out = dy.shape[1];
    let (dx, dw) = matmul_backward(&x.data, weight, &dy.data, x.shape[1], fan_out);
    let mut db = vec![0.0f64; fan_out];
    for row in dy.data.chunks(fan_out) {
        for (o, &g) in row.iter().enumerate() {
            db[o] += g as f64;
        }
    }
    (Tensor::new(x.shape.clone(), dx), dw, to_f32(db))
}

/// Global average pool: dX spreads each channel's gradient evenly over the pixels.
pub fn pool_backward(x_shape: &[usize], dy: &Tensor) -> Tensor {
    let [n, h, w, c] = [x_shape[0], x_shape[1], x_shape[2], x_shape[3]];
    let mut dx = Tensor::zeros(x_shape.to_vec());
    for b in 0..n {
        for p in 0..h * w {
            for ch in 0..c {
                dx.data[(b * h * w + p) * c + ch] =
                    (dy.data[b * c + ch] as f64 / (h * w) as f64) as f32;
            }
        }
    }
    dx
}

/// Per-channel batch mean and (biased) variance of an NHWC tensor.
pub fn batch_stats(x: &Tensor) -> (Vec<f64>, Vec<f64>) {
    let c = x.shape[3];
    let rows = x.data.len() / c;
    let mut mean = vec![0.0f64; c];
    for (i, &v) in x.data.iter().enumerate() {
        mean[i % c] += v as f64;
    }
    mean.iter_mut().for_each(|m| *m /= rows as f64);
    let mut var = vec![0.0f64; c];
    for (i, &v) in x.data.iter().enumerate() {
        var[i % c] += (v as f64 - mean[i % c]).powi(2);
    }
    var.iter_mut().for_each(|v| *v /= rows as f64);
    (mean, var)
}

/// Batch norm in training mode (batch statistics) then the activation.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    activation: Activation,
) -> Tensor {
    let (mean, var) = batch_stats(x);
    normalize_activate(x, &mean, &var, (gamma, beta), eps, activation)
}

/// Moves running statistics towards the batch's: `momentum` is the weight of the new
/// value; the running variance takes the unbiased batch variance.
pub fn update_running_stats(
    x: &Tensor,
    running_mean: &mut [f32],
    running_var: &mut [f32],
    momentum: f32,
) {
    let rows = (x.data.len() / x.shape[3]) as f64;
    let (mean, var) = batch_stats(x);
    let m = momentum as f64;
    for ch in 0..mean.len() {
        let unbiased = if rows > 1.0 {
            var[ch] * rows / (rows - 1.0)
        } else {
            var[ch]
        };
        running_mean[ch] = ((1.0 - m) * running_mean[ch] as f64 + m * mean[ch]) as f32;
        running_var[ch] = ((1.0 - m) * running_var[ch] as f64 + m * unbiased) as f32;
    }
}

/// Training-mode batch norm + activation: (dX, dgamma, dbeta).
pub fn batch_norm_backward(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    activation: Activation,
    dy: &Tensor,
) -> (Tensor, Vec<f32>, Vec<f32>) {
    let c = x.shape[3];
    let m = (x.data.len() / c) as f64;
    let (mean, var) = batch_stats(x);
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps as f64).sqrt()).collect();
    let xhat = |i: usize| (x.data[i] as f64 - mean[i % c]) * inv_std[i % c];
    // Gradient before the activation: zero where the activation is flat.
    let dz: Vec<f64> = (0..x.data.len())
        .map(|i| {
            let z = gamma[i % c] as f64 * xhat(i) + beta[i % c] as f64;
            let passes = match activation {
                Activation::None => true,
                Activation::Relu => z > 0.0,
                Activation::Relu6 => z > 0.0 && z < 6.0,
            };
            if passes {
                dy.data[i] as f64
            } else {
                0.0
            }
        })
        .collect();
    let mut dbeta = vec![0.0f64; c];
    let mut dgamma = vec![0.0f64; c];
    for (i, &d) in dz.iter().enumerate() {
        dbeta[i % c] += d;
        dgamma[i % c] += d * xhat(i);
    }
    let dx = (0..x.data.len())
        .map(|i| {
            let ch = i % c;
            (gamma[ch] as f64 * inv_std[ch] / m * (m * dz[i] - dbeta[ch] - xhat(i) * dgamma[ch]))
                as f32
        })
        .collect();
    (
        Tensor::new(x.shape.clone(), dx),
        to_f32(dgamma),
        to_f32(dbeta),
    )
}

/// Softmax cross-entropy of [N, K] logits: (loss per sample, dlogits of the mean loss).
pub fn cross_entropy(logits: &Tensor, labels: &[u32]) -> (Vec<f32>, Tensor) {
    let k = logits.shape[1];
    let n = labels.len();
    let mut losses = Vec::with_capacity(n);
    let mut grad = Vec::with_capacity(logits.data.len());
    for (row, &label) in logits.data.chunks(k).zip(labels) {
        let peak = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let total: f64 = row.iter().map(|&v| (v as f64 - peak).exp()).sum();
        losses.push((total.ln() - (row[label as usize] as f64 - peak)) as f32);
        for (j, &v) in row.iter().enumerate() {
            let p = (v as f64 - peak).exp() / total;
            let onehot = if j == label as usize { 1.0 } else { 0.0 };
            grad.push(((p - onehot) / n as f64) as f32);
        }
    }
    (losses, Tensor::new(logits.shape.clone(), grad))
}

/// The training-mode forward of one op (batch norm uses batch statistics).
pub fn run_op_train(kind: &OpKind, x: &Tensor, params: &[&[f32]]) -> Tensor {
    match kind {
        OpKind::BatchNorm(op) => batch_norm_train(x, params[0], params[1], op.eps, op.activation),
        other => super::run_op(other, x, params),
    }
}

/// Backward of one op in training mode: dX and the gradients of its trainable
/// parameters, in `params()` order (BN: gamma, beta).
pub fn run_op_backward(
    kind: &OpKind,
    x: &Tensor,
    params: &[&[f32]],
    dy: &Tensor,
) -> (Tensor, Vec<Vec<f32>>) {
    match kind {
        OpKind::Conv2d(op) => {
            let (dx, dw) = conv2d_backward(x, params[0], dy, op.kernel, op.stride, op.padding);
            (dx, vec![dw])
        }
        OpKind::Depthwise(op) => {
            let (dx, dw) = depthwise_backward(x, params[0], dy, op.kernel, op.stride, op.padding);
            (dx, vec![dw])
        }
        OpKind::Pointwise(_) => {
            let (dx, dw) = pointwise_backward(x, params[0], dy);
            (dx, vec![dw])
        }
        OpKind::BatchNorm(op) => {
            let (dx, dgamma, dbeta) =
                batch_norm_backward(x, params[0], params[1], op.eps, op.activation, dy);
            (dx, vec![dgamma, dbeta])
        }
        OpKind::GlobalAvgPool(_) => (pool_backward(&x.shape, dy), Vec::new()),
        OpKind::Dense(_) => {
            let (dx, dw, db) = dense_backward(x, params[0], dy);
            (dx, vec![dw, db])
        }
        // Training differentiates the fused cross-entropy, never the inference softmax.
        OpKind::Softmax(_) => (Tensor::zeros(x.shape.clone()), Vec::new()),
    }
}

fn to_f32(values: Vec<f64>) -> Vec<f32> {
    values.into_iter().map(|v| v as f32).collect()
}
