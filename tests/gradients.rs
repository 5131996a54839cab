//! Backward pass checks, for every op on the forward tests' edge shapes:
//! 1. the reference backward against central finite differences of the reference
//!    forward (loss = sum(r * y) with a fixed random r);
//! 2. the GPU backward against the reference backward.

mod common;

use common::{assert_close, gpu, random_params, rng, uniform};
use mobilenet_wgpu::graph::{GraphBuilder, ParamBuffers, TrainConfig, TrainPlan};
use mobilenet_wgpu::ops::{
    Activation, BatchNorm, Conv2d, Dense, Depthwise, GlobalAvgPool, OpKind, Pointwise,
};
use mobilenet_wgpu::reference::{self, Tensor};
use mobilenet_wgpu::{Gpu, ParamStore};
use rand::Rng;
use std::sync::Arc;

/// GPU vs reference gradients: same per-element relative measure as the forward tests.
const GRAD_RTOL: f64 = 1e-4;
/// Finite differences of an f32 forward: relative to the gradient's scale.
const FD_RTOL: f64 = 2e-2;
const FD_STEP: f32 = 1e-3;
/// Sampled coordinates per tensor for finite differences.
const FD_SAMPLES: usize = 12;

struct Case {
    graph: GraphBuilder,
    params: ParamStore,
    input: Vec<f32>,
    output_grad: Vec<f32>,
    kind: OpKind,
}

fn case(kind: OpKind, input_shape: &[usize], seed: u64) -> Case {
    let mut graph = GraphBuilder::new();
    let x = graph.input("x", input_shape);
    let y = graph.add("op", kind.clone(), x).expect("valid shape");
    graph.output(y).expect("output");
    let params = random_params(&graph, seed);
    let mut r = rng(seed);
    let input = uniform(&mut r, input_shape.iter().product(), -2.0, 2.0);
    let output_len = graph.shape(y).expect("shape").iter().product();
    let output_grad = uniform(&mut r, output_len, -1.0, 1.0);
    Case {
        graph,
        params,
        input,
        output_grad,
        kind,
    }
}

fn param_values(case: &Case) -> Vec<Vec<f32>> {
    case.graph
        .params()
        .iter()
        .map(|p| case.params.get(&p.name).expect("param").to_vec())
        .collect()
}

/// sum(r * y) of the training-mode reference forward, in f64.
fn projected_loss(kind: &OpKind, x: &Tensor, params: &[Vec<f32>], r: &[f32]) -> f64 {
    let refs: Vec<&[f32]> = params.iter().map(Vec::as_slice).collect();
    let y = reference::run_op_train(kind, x, &refs);
    y.data
        .iter()
        .zip(r)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

fn reference_grads(case: &Case) -> (Tensor, Vec<Vec<f32>>) {
    let x = Tensor::new(
        case.graph.shape(case.graph.inputs()[0]).unwrap().to_vec(),
        case.input.clone(),
    );
    let values = param_values(case);
    let refs: Vec<&[f32]> = values.iter().map(Vec::as_slice).collect();
    let y = reference::run_op_train(&case.kind, &x, &refs);
    let dy = Tensor::new(y.shape.clone(), case.output_grad.clone());
    reference::run_op_backward(&case.kind, &x, &refs, &dy)
}

fn fd_check(
    what: &str,
    analytic: &[f32],
    mut perturbed_loss: impl FnMut(usize, f32) -> f64,
    seed: u64,
) -> f64 {
    let scale = analytic
        .iter()
        .map(|v| v.abs() as f64)
        .fold(0.0, f64::max)
        .max(1e-6);
    let mut r = rng(seed);
    let mut worst = 0.0f64;
    for _ in 0..FD_SAMPLES.min(analytic.len()) {
        let i = r.random_range(0..analytic.len());
        let numeric =
            (perturbed_loss(i, FD_STEP) - perturbed_loss(i, -FD_STEP)) / (2.0 * FD_STEP as f64);
        let err = (numeric - analytic[i] as f64).abs() / scale;
        worst = worst.max(err);
    }
    println!("{what}: finite-difference error {worst:.2e} of max |grad| (tolerance {FD_RTOL:.0e})");
    assert!(
        worst <= FD_RTOL,
        "{what}: finite differences disagree ({worst:.2e})"
    );
    worst
}

/// Check 1: reference backward against finite differences.
fn check_reference_backward(what: &str, case: &Case, seed: u64) {
    let x = Tensor::new(
        case.graph.shape(case.graph.inputs()[0]).unwrap().to_vec(),
        case.input.clone(),
    );
    let values = param_values(case);
    let (dx, dparams) = reference_grads(case);
    let r = &case.output_grad;
    fd_check(
        &format!("{what} dX"),
        &dx.data,
        |i, h| {
            let mut shifted = x.clone();
            shifted.data[i] += h;
            projected_loss(&case.kind, &shifted, &values, r)
        },
        seed,
    );
    let trainable: Vec<usize> = case
        .graph
        .params()
        .iter()
        .enumerate()
        .filter(|(_, p)| p.role.trainable())
        .map(|(i, _)| i)
        .collect();
    for (&p, grad) in trainable.iter().zip(&dparams) {
        let name = &case.graph.params()[p].name;
        fd_check(
            &format!("{what} d{name}"),
            grad,
            |i, h| {
                let mut shifted = values.clone();
                shifted[p][i] += h;
                projected_loss(&case.kind, &x, &shifted, r)
            },
            seed + 1,
        );
    }
}

/// Check 2: GPU backward against the reference backward.
fn check_gpu_backward(device: &Gpu, what: &str, case: &Case) {
    let params = Arc::new(ParamBuffers::new(device, &case.graph).expect("params"));
    params.load(&case.params).expect("load");
    let config = TrainConfig {
        input_grad: true,
        ..Default::default()
    };
    let plan = TrainPlan::compile(&case.graph, device, params, &config).expect("compile");
    let grads = plan
        .gradients(&case.input, &case.output_grad)
        .expect("gradients");
    let (dx, dparams) = reference_grads(case);
    assert_close(
        &format!("{what} GPU dX"),
        grads.input.as_deref().expect("dX"),
        &dx.data,
        GRAD_RTOL,
    );
    let trainable = case.graph.params().iter().filter(|p| p.role.trainable());
    for (info, expected) in trainable.zip(&dparams) {
        let got = grads.params.get(&info.name).expect("param grad");
        assert_close(
            &format!("{what} GPU d{}", info.name),
            got,
            expected,
            GRAD_RTOL,
        );
    }
}

fn check_both(what: &str, kind: OpKind, shape: &[usize], seed: u64) {
    let case = case(kind, shape, seed);
    check_reference_backward(what, &case, seed);
    for (device, gemm) in common::kernel_devices() {
        check_gpu_backward(device, &format!("{what} [{gemm}]"), &case);
    }
}

#[test]
fn conv2d_gradients() {
    let cases = common::CONV_CASES;
    for padding in common::PADDINGS {
        for (i, (shape, out_channels, stride)) in cases.iter().enumerate() {
            let op = Conv2d {
                out_channels: *out_channels,
                kernel: 3,
                stride: *stride,
                padding,
                fused: None,
            };
            let what = format!("conv2d {shape:?} -> {out_channels} s{stride} {padding}");
            check_both(&what, OpKind::Conv2d(op), shape, 10 + i as u64);
        }
    }
}

#[test]
fn depthwise_gradients() {
    let cases = common::DEPTHWISE_CASES;
    for padding in common::PADDINGS {
        for (i, (shape, stride)) in cases.iter().enumerate() {
            let op = Depthwise {
                kernel: 3,
                stride: *stride,
                padding,
                fused: None,
            };
            let what = format!("depthwise {shape:?} s{stride} {padding}");
            check_both(&what, OpKind::Depthwise(op), shape, 20 + i as u64);
        }
    }
}

#[test]
fn pointwise_gradients() {
    let cases = common::POINTWISE_CASES;
    for (i, (shape, out_channels)) in cases.iter().enumerate() {
        let op = Pointwise {
            out_channels: *out_channels,
            fused: None,
        };
        let what = format!("pointwise {shape:?} -> {out_channels}");
        check_both(&what, OpKind::Pointwise(op), shape, 30 + i as u64);
    }
}

#[test]
fn batchnorm_training_gradients() {
    let shapes = common::BN_SHAPES;
    for activation in [Activation::None, Activation::Relu, Activation::Relu6] {
        for (i, shape) in shapes.iter().enumerate() {
            let op = BatchNorm {
                eps: 1e-3,
                activation,
            };
            let what = format!("bn {shape:?} {activation}");
            check_both(&what, OpKind::BatchNorm(op), shape, 40 + i as u64);
        }
    }
}

#[test]
fn pool_gradients() {
    for (i, shape) in [[1, 7, 7, 13], [3, 15, 15, 8], [2, 1, 1, 100]]
        .iter()
        .enumerate()
    {
        check_both(
            &format!("pool {shape:?}"),
            OpKind::GlobalAvgPool(GlobalAvgPool),
            shape,
            50 + i as u64,
        );
    }
}

#[test]
fn dense_gradients() {
    let cases = common::DENSE_CASES;
    for (i, (shape, out_features)) in cases.iter().enumerate() {
        let op = Dense {
            out_features: *out_features,
            read_only: false,
        };
        check_both(
            &format!("dense {shape:?} -> {out_features}"),
            OpKind::Dense(op),
            shape,
            60 + i as u64,
        );
    }
}

#[test]
fn cross_entropy_gradient_matches_finite_differences_and_gpu() {
    let mut r = rng(70);
    let (n, k) = (3, 13);
    let logits = Tensor::new(vec![n, k], uniform(&mut r, n * k, -3.0, 3.0));
    let labels = [4u32, 0, 12];
    let (_, grad) = reference::cross_entropy(&logits, &labels);
    let mean_loss = |t: &Tensor| {
        let (losses, _) = reference::cross_entropy(t, &labels);
        losses.iter().map(|&l| l as f64).sum::<f64>() / n as f64
    };
    fd_check(
        "cross-entropy dlogits",
        &grad.data,
        |i, h| {
            let mut shifted = logits.clone();
            shifted.data[i] += h;
            mean_loss(&shifted)
        },
        71,
    );

    // On the GPU the loss sits on top of a dense layer; compare the full chain.
    let mut graph = GraphBuilder::new();
    let x = graph.input("x", &[n, 8]);
    let y = graph
        .dense(
            "fc",
            x,
            Dense {
                out_features: k,
                read_only: false,
            },
        )
        .unwrap();
    graph.output(y).unwrap();
    let mut params = random_params(&graph, 72);
    let input = uniform(&mut r, n * 8, -1.0, 1.0);
    let buffers = Arc::new(ParamBuffers::new(gpu(), &graph).unwrap());
    buffers.load(&params).unwrap();
    let plan = TrainPlan::compile(&graph, gpu(), buffers, &TrainConfig::default()).unwrap();
    let (output, grads) = plan.loss_gradients(&input, &labels).unwrap();
    let (losses, expected) =
        reference::loss_gradients(&graph, &mut params, &input, &labels, None).unwrap();
    assert_close("cross-entropy loss", &output.loss, &losses, GRAD_RTOL);
    for name in ["fc.weight", "fc.bias"] {
        assert_close(
            &format!("cross-entropy d{name}"),
            grads.get(name).unwrap(),
            &expected[name],
            GRAD_RTOL,
        );
    }
    let bad = plan
        .loss_gradients(&input, &[0, 1, 13])
        .unwrap_err()
        .to_string();
    assert!(
        bad.contains("label 13 is out of range for 13 classes"),
        "{bad}"
    );
}
