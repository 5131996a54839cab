//! `TrainPlan::traffic`: the dispatches and bytes of one training step, counted from the
//! plan's bindings, against counts worked out by hand for one-layer networks (which
//! buffers each forward, loss, backward and update dispatch binds, and which it writes).

mod common;

use common::gpu;
use mobilenet_wgpu::gpu::{Gpu, KernelChoice};
use mobilenet_wgpu::graph::{
    Bytes, GraphBuilder, ParamBuffers, PhaseTraffic, TrainConfig, TrainPlan, TrainTraffic,
};
use mobilenet_wgpu::ops::{Conv2d, Dense, Padding, Pointwise, UpdateRule};
use std::sync::Arc;

/// Bytes of an f32.
const F: u64 = 4;

fn compile(graph: &GraphBuilder, input_grad: bool) -> TrainPlan {
    compile_on(gpu(), graph, input_grad)
}

fn compile_on(gpu: &Gpu, graph: &GraphBuilder, input_grad: bool) -> TrainPlan {
    let params = Arc::new(ParamBuffers::new(gpu, graph).unwrap());
    let config = TrainConfig {
        // RMSProp (two state tensors per parameter), as `bench --mode train` trains.
        update: Some(UpdateRule::RmspropTf {
            decay: 0.9,
            momentum: 0.9,
            eps: 1.0,
        }),
        input_grad,
        ..Default::default()
    };
    TrainPlan::compile(graph, gpu, params, &config).unwrap()
}

/// A phase: dispatches, then (read, written) bytes of activations, scratch and parameters.
fn phase(
    dispatches: usize,
    activations: [u64; 2],
    scratch: [u64; 2],
    params: [u64; 2],
) -> PhaseTraffic {
    let bytes = |[read, written]: [u64; 2]| Bytes { read, written };
    PhaseTraffic {
        dispatches,
        activations: bytes(activations),
        scratch: bytes(scratch),
        params: bytes(params),
    }
}

fn check(plan: &TrainPlan, expected: TrainTraffic) {
    let traffic = plan.traffic();
    let kernels = plan.kernels().join("\n  ");
    assert_eq!(traffic, expected, "dispatches:\n  {kernels}");
    assert_eq!(traffic.step.dispatches, plan.dispatch_count());
}

#[test]
fn a_pointwise_layer_moves_what_its_gemms_bind() {
    let (batch, side, cin, cout) = (2, 4, 8, 16);
    let mut g = GraphBuilder::new();
    let x = g.input("x", &[batch, side, side, cin]);
    let pointwise = Pointwise {
        out_channels: cout,
        fused: None,
    };
    let y = g.pointwise("pw", x, pointwise).unwrap();
    g.output(y).unwrap();
    // With the input gradient, so that the gradient buffer (sized for the larger output)
    // is bound for the smaller input's gradient too.
    let plan = compile(&g, true);
    let rows = (batch * side * side) as u64;
    let (x, y, w) = (
        rows * cin as u64 * F,
        rows * cout as u64 * F,
        (cin * cout) as u64 * F,
    );
    let none = [0, 0];
    let expected = TrainTraffic::new(
        // y = x W: reads x and W, writes y.
        phase(1, [x, y], none, [w, 0]),
        // 4-D output: no loss.
        phase(0, none, none, none),
        // dx = dy W^T reads dy and W, writes dx (counted at x's size); dW = x^T dy
        // (one split at 32 rows) reads x and dy, writes dW.
        phase(2, [y + x + y, x], none, [w, w]),
        // RMSProp reads dW and updates W and its two states in place.
        phase(1, none, none, [4 * w, 3 * w]),
    );
    check(&plan, expected);
}

#[test]
fn a_dense_head_moves_what_its_loss_and_gradients_bind() {
    let (batch, features, classes) = (4u64, 12u64, 8u64);
    let mut g = GraphBuilder::new();
    let x = g.input("x", &[batch as usize, features as usize]);
    let dense = Dense {
        out_features: classes as usize,
        read_only: false,
    };
    let y = g.dense("fc", x, dense).unwrap();
    g.output(y).unwrap();
    let plan = compile(&g, false);
    let (x, logits) = (batch * features * F, batch * classes * F);
    let (w, b) = (features * classes * F, classes * F);
    let span = w.next_multiple_of(256) + b;
    // Labels, per-sample loss, running metrics (3 floats in a 16-byte buffer).
    let (labels, loss, metrics) = (batch * F, batch * F, 16);
    // The bias gradient's column sums: one partial per 256 rows.
    let partials = classes * F;
    let none = [0, 0];
    let expected = TrainTraffic::new(
        // logits = x W + b.
        phase(1, [x, logits], none, [w + b, 0]),
        // Cross-entropy reads logits and labels, writes loss and dlogits; the metrics
        // read logits, labels and loss and add into the metrics.
        phase(
            2,
            [
                logits + labels + logits + labels + loss + metrics,
                loss + logits + metrics,
            ],
            none,
            none,
        ),
        // dW = x^T dy; db in two stages through the partials. dy is counted at the
        // logits' size, not its shared buffer's (sized for x).
        phase(
            3,
            [x + logits + logits, 0],
            [partials, partials],
            [0, w + b],
        ),
        // One update for both tensors, binding the span of the flat buffers that holds
        // them: the weight, padding to the next 256-byte boundary, then the bias.
        phase(1, none, none, [4 * span, 3 * span]),
    );
    check(&plan, expected);
}

/// The ops whose dispatches unfold their input into patches (a convolution's im2col), in
/// the order the step runs them.
fn unfoldings(plan: &TrainPlan) -> Vec<String> {
    plan.kernels()
        .iter()
        .filter(|k| k.contains("conv2d.wgsl:im2col"))
        .map(|k| k.split(' ').next().unwrap_or_default().to_string())
        .collect()
}

/// `convs` 3x3 convolutions in a row on a batch of `batch` 6x6x3 images.
fn convolutions(convs: &[&str], batch: usize) -> GraphBuilder {
    let mut g = GraphBuilder::new();
    let mut y = g.input("x", &[batch, 6, 6, 3]);
    for name in convs {
        let conv = Conv2d {
            out_channels: 3,
            kernel: 3,
            stride: 1,
            padding: Padding::Symmetric,
            fused: None,
        };
        y = g.conv2d(name, y, conv).unwrap();
    }
    g.output(y).unwrap();
    g
}

#[test]
fn a_convolution_reads_its_forward_patches_back_unless_they_were_overwritten() {
    // The stem's backward finds its patches in the workspace: one unfolding per step.
    let plan = compile(&convolutions(&["stem"], 2), false);
    assert_eq!(unfoldings(&plan), ["stem"], "{:#?}", plan.kernels());
    // The second convolution's forward overwrites the first's patches, and its backward
    // runs first: only the first unfolds again.
    let plan = compile(&convolutions(&["first", "second"], 2), true);
    assert_eq!(
        unfoldings(&plan),
        ["first", "second", "first"],
        "{:#?}",
        plan.kernels()
    );
    // A batch in chunks leaves only the last chunk's patches: each chunk unfolds again.
    // 6x6 pixels x 28 floats of patch per image: 4 KiB, so 8 KiB bindings take 2 images.
    let small = common::open_gpu(KernelChoice::Defaults, None).with_binding_limit(8 << 10);
    let plan = compile_on(&small, &convolutions(&["stem"], 4), false);
    assert_eq!(
        unfoldings(&plan),
        ["stem[0..2]", "stem[2..4]", "stem[0..2]", "stem[2..4]"],
        "{:#?}",
        plan.kernels()
    );
}
