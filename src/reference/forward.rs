//! Forward definitions of every op.

use super::Tensor;
use crate::ops::{Activation, OpKind, Padding, Window};

pub fn activate(x: f64, activation: Activation) -> f64 {
    match activation {
        Activation::None => x,
        Activation::Relu => x.max(0.0),
        Activation::Relu6 => x.clamp(0.0, 6.0),
    }
}

/// Every kernel tap (ky, kx, iy, ix) of output pixel (oy, ox) that lands inside the
/// input; taps in the padding contribute zero and are skipped.
pub(super) fn taps(
    (oy, ox): (usize, usize),
    kernel: usize,
    stride: usize,
    window: Window,
    (h, w): (usize, usize),
) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let inside = move |o: usize, k: usize, pad: usize, size: usize| {
        (o * stride + k).checked_sub(pad).filter(|&i| i < size)
    };
    (0..kernel).flat_map(move |ky| {
        (0..kernel).filter_map(move |kx| {
            let iy = inside(oy, ky, window.pad_top, h)?;
            let ix = inside(ox, kx, window.pad_left, w)?;
            Some((ky, kx, iy, ix))
        })
    })
}

/// Standard convolution; weights [K, K, Cin, Cout].
pub fn conv2d(
    x: &Tensor,
    weight: &[f32],
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> Tensor {
    let [n, h, w, cin] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let window = Window::of(&x.shape, kernel, stride, padding);
    let (oh, ow) = (window.out_h, window.out_w);
    let mut y = Tensor::zeros(vec![n, oh, ow, out_channels]);
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for co in 0..out_channels {
                    let mut acc = 0.0f64;
                    for (ky, kx, iy, ix) in taps((oy, ox), kernel, stride, window, (h, w)) {
                        for ci in 0..cin {
                            let xv = x.data[((b * h + iy) * w + ix) * cin + ci];
                            let wv = weight[((ky * kernel + kx) * cin + ci) * out_channels + co];
                            acc += xv as f64 * wv as f64;
                        }
                    }
                    y.data[((b * oh + oy) * ow + ox) * out_channels + co] = acc as f32;
                }
            }
        }
    }
    y
}

/// Depthwise convolution; weights [K, K, C].
pub fn depthwise(
    x: &Tensor,
    weight: &[f32],
    kernel: usize,
    stride: usize,
    padding: Padding,
) -> Tensor {
    let [n, h, w, c] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let window = Window::of(&x.shape, kernel, stride, padding);
    let (oh, ow) = (window.out_h, window.out_w);
    let mut y = Tensor::zeros(vec![n, oh, ow, c]);
    for b in 0..n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let acc: f64 = taps((oy, ox), kernel, stride, window, (h, w))
                        .map(|(ky, kx, iy, ix)| {
                            let xv = x.data[((b * h + iy) * w + ix) * c + ch];
                            xv as f64 * weight[(ky * kernel + kx) * c + ch] as f64
                        })
                        .sum();
                    y.data[((b * oh + oy) * ow + ox) * c + ch] = acc as f32;
                }
            }
        }
    }
    y
}

/// Pointwise (1x1) convolution; weights [Cin, Cout].
pub fn pointwise(x: &Tensor, weight: &[f32], out_channels: usize) -> Tensor {
    let cin = x.shape[3];
    let pixels = x.data.len() / cin;
    let mut y = Tensor::zeros(vec![x.shape[0], x.shape[1], x.shape[2], out_channels]);
    for p in 0..pixels {
        for co in 0..out_channels {
            let acc: f64 = (0..cin)
                .map(|ci| x.data[p * cin + ci] as f64 * weight[ci * out_channels + co] as f64)
                .sum();
            y.data[p * out_channels + co] = acc as f32;
        }
    }
    y
}

/// (x - mean) / sqrt(var + eps) * gamma + beta, then the activation, per channel (last
/// axis); the statistics are either the running ones or the batch's.
pub(super) fn normalize_activate(
    x: &Tensor,
    mean: &[f64],
    var: &[f64],
    (gamma, beta): (&[f32], &[f32]),
    eps: f32,
    activation: Activation,
) -> Tensor {
    let c = *x.shape.last().unwrap_or(&1);
    let data = x
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = i % c;
            let xhat = (v as f64 - mean[ch]) / (var[ch] + eps as f64).sqrt();
            activate(xhat * gamma[ch] as f64 + beta[ch] as f64, activation) as f32
        })
        .collect();
    Tensor::new(x.shape.clone(), data)
}

/// Batch norm with running statistics, then the activation.
pub fn batch_norm(
    x: &Tensor,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
    activation: Activation,
) -> Tensor {
    let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    normalize_activate(x, &widen(mean), &widen(var), (gamma, beta), eps, activation)
}

/// Mean over H and W: [N, H, W, C] -> [N, C].
pub fn global_avg_pool(x: &Tensor) -> Tensor {
    let [n, h, w, c] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let mut y = Tensor::zeros(vec![n, c]);
    for b in 0..n {
        for ch in 0..c {
            let sum: f64 = (0..h * w)
                .map(|p| x.data[(b * h * w + p) * c + ch] as f64)
                .sum();
            y.data[b * c + ch] = (sum / (h * w) as f64) as f32;
        }
    }
    y
}

/// Fully connected: [N, in] x [in, out] + bias.
pub fn dense(x: &Tensor, weight: &[f32], bias: &[f32]) -> Tensor {
    let [n, fin] = [x.shape[0], x.shape[1]];
    let fout = bias.len();
    let mut y = Tensor::zeros(vec![n, fout]);
    for b in 0..n {
        for o in 0..fout {
            let acc: f64 = (0..fin)
                .map(|i| x.data[b * fin + i] as f64 * weight[i * fout + o] as f64)
                .sum();
            y.data[b * fout + o] = (acc + bias[o] as f64) as f32;
        }
    }
    y
}

/// Softmax along the last axis of [N, classes].
pub fn softmax(x: &Tensor) -> Tensor {
    let cols = x.shape[1];
    let data = x
        .data
        .chunks(cols)
        .flat_map(|row| {
            let peak = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let exps: Vec<f64> = row.iter().map(|&v| (v as f64 - peak).exp()).collect();
            let total: f64 = exps.iter().sum();
            exps.into_iter().map(move |e| (e / total) as f32)
        })
        .collect();
    Tensor::new(x.shape.clone(), data)
}

/// Runs one op of a graph; `params` are in the op's `params()` order.
pub fn run_op(kind: &OpKind, x: &Tensor, params: &[&[f32]]) -> Tensor {
    let y = run_unfused(kind, x, params);
    match kind.fused() {
        Some(activation) => add_bias_activate(y, params[1], activation),
        None => y,
    }
}

/// A folded batchnorm's epilogue: per-channel bias (the last axis), then the activation.
pub fn add_bias_activate(mut y: Tensor, bias: &[f32], activation: Activation) -> Tensor {
    let channels = bias.len();
    for (i, v) in y.data.iter_mut().enumerate() {
        *v = activate(*v as f64 + bias[i % channels] as f64, activation) as f32;
    }
    y
}

fn run_unfused(kind: &OpKind, x: &Tensor, params: &[&[f32]]) -> Tensor {
    match kind {
        OpKind::Conv2d(op) => conv2d(
            x,
            params[0],
            op.out_channels,
            op.kernel,
            op.stride,
            op.padding,
        ),
        OpKind::Depthwise(op) => depthwise(x, params[0], op.kernel, op.stride, op.padding),
        OpKind::Pointwise(op) => pointwise(x, params[0], op.out_channels),
        OpKind::BatchNorm(op) => batch_norm(
            x,
            params[0],
            params[1],
            params[2],
            params[3],
            op.eps,
            op.activation,
        ),
        OpKind::GlobalAvgPool(_) => global_avg_pool(x),
        OpKind::Dense(_) => dense(x, params[0], params[1]),
        OpKind::Softmax(_) => softmax(x),
    }
}
