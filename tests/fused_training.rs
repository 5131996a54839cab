//! Batch norm in its consumer's prologue: a training batch norm followed by a depthwise,
//! pointwise or pooling layer is not normalised by a pass of its own; the consumer reads
//! the batch norm's raw input and applies the batch's scale, shift and activation as it
//! loads it, in its forward kernel and in its weight-gradient kernel. Each pair is checked
//! against the CPU reference (forward output, input gradient, every parameter gradient) on
//! every kernel candidate, at the tolerance the unfused ops meet (`common::OP_RTOL`), on
//! the edges: odd channel counts (scalar kernels), batch 1, 1x1 maps (the last blocks),
//! stride 2, both paddings, ReLU, ReLU6 and no activation. A 3x3 depthwise consumer also
//! sums the batch norm's backward partials over the input gradient it writes, so the
//! batch norm's gradients check that too, over several chunks of pixels; and a 3x3
//! depthwise producer leaves the statistics of the batch norm after it, and its backward
//! applies that batch norm's input gradient as it loads the gradient.

mod common;

use common::{assert_close, random_params, rng, uniform, OP_RTOL};
use mobilenet_wgpu::graph::{GraphBuilder, ParamBuffers, TrainConfig, TrainPlan};
use mobilenet_wgpu::ops::{
    Activation, BatchNorm, Conv2d, Depthwise, GlobalAvgPool, OpKind, Pointwise,
};
use mobilenet_wgpu::reference::{self, Tensor};
use mobilenet_wgpu::{Gpu, ParamStore};
use rand::Rng;
use std::sync::Arc;

const ACTIVATIONS: [Activation; 3] = [Activation::Relu, Activation::Relu6, Activation::None];

/// Bytes of the buffer a training plan allocates for a tensor of `shape` (whole vec4s).
fn buffer_bytes(shape: &[usize]) -> u64 {
    (shape.iter().product::<usize>() as u64 * 4)
        .max(16)
        .next_multiple_of(16)
}

/// Nodes named `names`, one after the other on an input of `shape`: a batch norm and its
/// consumer, a producer and the batch norm after it, or a layer between two batch norms.
struct Pair {
    what: String,
    graph: GraphBuilder,
    names: Vec<&'static str>,
    kinds: Vec<OpKind>,
    params: ParamStore,
    input: Vec<f32>,
    output_grad: Vec<f32>,
}

fn batch_norm(activation: Activation) -> OpKind {
    OpKind::BatchNorm(BatchNorm {
        eps: 1e-3,
        activation,
    })
}

/// A batch norm with `activation`, then `consumer`.
fn pair(consumer: OpKind, shape: &[usize], activation: Activation, seed: u64) -> Pair {
    let what = format!("bn {activation} -> {}", consumer.type_name());
    let nodes = vec![("bn", batch_norm(activation)), ("consumer", consumer)];
    chain(what, nodes, shape, seed)
}

/// `producer`, then a batch norm with `activation`.
fn producer_pair(producer: OpKind, shape: &[usize], activation: Activation, seed: u64) -> Pair {
    let what = format!("{} -> bn {activation}", producer.type_name());
    let nodes = vec![("producer", producer), ("bn", batch_norm(activation))];
    chain(what, nodes, shape, seed)
}

fn chain(what: String, nodes: Vec<(&'static str, OpKind)>, shape: &[usize], seed: u64) -> Pair {
    let mut graph = GraphBuilder::new();
    let mut y = graph.input("x", shape);
    for (name, kind) in &nodes {
        y = graph.add(name, kind.clone(), y).expect("valid shape");
    }
    graph.output(y).expect("output");
    let mut params = random_params(&graph, seed);
    let mut r = rng(seed);
    reach_past_six(&mut params, &nodes, &mut r);
    // Shifted and scaled away from zero mean and unit variance, so that the batch norm
    // has something to undo.
    let input = uniform(&mut r, shape.iter().product(), -1.0, 3.0);
    let output_len = graph.shape(y).expect("shape").iter().product();
    let output_grad = uniform(&mut r, output_len, -1.0, 1.0);
    Pair {
        what: format!("{what} {shape:?}"),
        graph,
        names: nodes.iter().map(|(name, _)| *name).collect(),
        kinds: nodes.into_iter().map(|(_, kind)| kind).collect(),
        params,
        input,
        output_grad,
    }
}

/// A batch norm with ReLU6 gets gamma in [2, 3] and beta in [2, 4], so that part of its
/// outputs lie below 0 and part above 6 and both of the clamp's bounds are exercised:
/// random_params' gamma near 1 and beta near 0 never reach 6, and a kernel that applied
/// ReLU instead passed.
fn reach_past_six(params: &mut ParamStore, nodes: &[(&'static str, OpKind)], r: &mut impl Rng) {
    for (name, kind) in nodes {
        if let OpKind::BatchNorm(bn) = kind {
            if bn.activation == Activation::Relu6 {
                for (param, lo, hi) in [("gamma", 2.0, 3.0), ("beta", 2.0, 4.0)] {
                    let values = params
                        .get_mut(&format!("{name}.{param}"))
                        .expect("batch norm parameter");
                    *values = uniform(r, values.len(), lo, hi);
                }
            }
        }
    }
}

/// The parameters of node `prefix` in graph order.
fn node_params<'a>(pair: &'a Pair, prefix: &str) -> Vec<&'a [f32]> {
    pair.graph
        .params()
        .iter()
        .filter(|p| p.name.starts_with(&format!("{prefix}.")))
        .map(|p| pair.params.get(&p.name).expect("param"))
        .collect()
}

/// The reference's forward output, input gradient and trainable parameter gradients (node
/// by node, in graph order), composing the single-op reference passes.
fn reference(pair: &Pair) -> (Tensor, Tensor, Vec<Vec<f32>>) {
    let shape = pair.graph.shape(pair.graph.inputs()[0]).expect("shape");
    let params: Vec<Vec<&[f32]>> = pair
        .names
        .iter()
        .map(|name| node_params(pair, name))
        .collect();
    // inputs[i] is node i's input; the last entry is the output.
    let mut inputs = vec![Tensor::new(shape.to_vec(), pair.input.clone())];
    for (kind, node_params) in pair.kinds.iter().zip(&params) {
        let next = reference::run_op_train(kind, inputs.last().expect("input"), node_params);
        inputs.push(next);
    }
    let y = inputs.pop().expect("output");
    let mut grad = Tensor::new(y.shape.clone(), pair.output_grad.clone());
    let mut node_grads = Vec::new();
    for ((kind, node_params), input) in pair.kinds.iter().zip(&params).zip(&inputs).rev() {
        let (d_input, grads) = reference::run_op_backward(kind, input, node_params, &grad);
        node_grads.push(grads);
        grad = d_input;
    }
    let dparams = node_grads.into_iter().rev().flatten().collect();
    (y, grad, dparams)
}

/// The pair's training plan on `device`, with its parameters loaded and the input gradient.
fn compile(device: &Gpu, pair: &Pair) -> TrainPlan {
    let params = Arc::new(ParamBuffers::new(device, &pair.graph).expect("params"));
    params.load(&pair.params).expect("load");
    let config = TrainConfig {
        input_grad: true,
        ..Default::default()
    };
    TrainPlan::compile(&pair.graph, device, params, &config).expect("compile")
}

fn check_on(device: &Gpu, kernel: &str, pair: &Pair) -> TrainPlan {
    let plan = compile(device, pair);
    let what = format!("{} [{kernel}]", pair.what);
    // The normalised tensor is not stored: the input and the consumer's output are.
    let stored: u64 = [pair.graph.inputs()[0], pair.graph.outputs()[0]]
        .iter()
        .map(|&t| buffer_bytes(pair.graph.shape(t).expect("shape")))
        .sum();
    assert_eq!(
        plan.memory().activations,
        stored,
        "{what}: activations stored"
    );
    // A 3x3 depthwise, pointwise or pooling consumer sums the batch norm's backward
    // partials as it writes dX.
    let partial_passes = passes(&plan, "backward_partial");
    let sums_in_consumer = match &pair.kinds[1] {
        OpKind::Depthwise(d) => d.kernel == 3,
        OpKind::Pointwise(_) | OpKind::GlobalAvgPool(_) => true,
        _ => false,
    };
    assert_eq!(
        partial_passes,
        usize::from(!sums_in_consumer),
        "{what}: batch norm backward_partial passes in {:?}",
        plan.kernels()
    );
    check_gradients(&plan, pair, &what);
    plan
}

/// The plan's output, input gradient and parameter gradients against the reference's.
fn check_gradients(plan: &TrainPlan, pair: &Pair, what: &str) {
    let grads = plan
        .gradients(&pair.input, &pair.output_grad)
        .expect("gradients");
    let (y, dx, dparams) = reference(pair);
    assert_close(&format!("{what} output"), &grads.output, &y.data, OP_RTOL);
    let dx_gpu = grads.input.as_deref().expect("dX");
    assert_close(&format!("{what} dX"), dx_gpu, &dx.data, OP_RTOL);
    let trainable = pair.graph.params().iter().filter(|p| p.role.trainable());
    for (info, expected) in trainable.zip(&dparams) {
        let got = grads.params.get(&info.name).expect("param grad");
        assert_close(&format!("{what} d{}", info.name), got, expected, OP_RTOL);
    }
}

/// How many of the plan's dispatches run `entry`.
fn passes(plan: &TrainPlan, entry: &str) -> usize {
    let suffix = format!(":{entry}");
    plan.kernels()
        .iter()
        .filter(|k| {
            k.split_whitespace()
                .nth(1)
                .is_some_and(|e| e.ends_with(&suffix))
        })
        .count()
}

/// How many of the plan's dispatches of op `op` run `entry`.
fn op_passes(plan: &TrainPlan, op: &str, entry: &str) -> usize {
    let prefix = format!("{op} ");
    plan.kernels()
        .iter()
        .filter(|k| k.starts_with(&prefix))
        .filter(|k| k.contains(&format!(":{entry}")))
        .count()
}

/// Any depthwise layer before a batch norm reads the batch norm's output gradient and
/// applies its input gradient as it loads it, so the batch norm writes no input gradient:
/// the general kernel (5x5, whose dX and dW are separate passes that both load dY) and the
/// 3x3 one, on odd channel counts, batch 1 and 1x1 maps, against the reference.
#[test]
fn depthwise_applies_the_input_gradient_of_the_batch_norm_after_it() {
    // 32 and 64 channels: channel groups a multiple of 8, which the 3x3 kernels spread
    // across a subgroup's lanes (depthwise.wgsl's spread_group).
    let cases: [([usize; 4], usize, usize); 7] = [
        ([2, 9, 9, 13], 5, 1),
        ([1, 11, 10, 8], 5, 2),
        ([3, 1, 1, 12], 5, 1),
        ([1, 9, 7, 5], 3, 2),
        ([2, 1, 1, 4], 3, 1),
        ([2, 9, 11, 32], 3, 1),
        ([1, 10, 9, 64], 3, 2),
    ];
    for (i, (shape, kernel, stride)) in cases.into_iter().enumerate() {
        let depthwise = OpKind::Depthwise(Depthwise {
            kernel,
            stride,
            padding: common::PADDINGS[i % 2],
            fused: None,
        });
        let pair = producer_pair(depthwise, &shape, ACTIVATIONS[i % 3], 600 + i as u64);
        for (device, kernel) in common::kernel_devices() {
            let plan = compile(device, &pair);
            let what = format!("{} [{kernel}]", pair.what);
            let kernels = plan.kernels();
            assert_eq!(
                op_passes(&plan, "bn", "backward_input"),
                0,
                "{what}: {kernels:?}"
            );
            assert_eq!(
                op_passes(&plan, "bn", "backward_finalize"),
                1,
                "{what}: {kernels:?}"
            );
            check_gradients(&plan, &pair, &what);
        }
    }
}

/// A 3x3 depthwise layer before a batch norm leaves the batch statistics' partials as it
/// stores its output, so the batch norm runs no statistics pass of its own; the batch
/// norm's outputs and gradients (which use those statistics) match the reference, on the
/// same edges, and over several chunks of 256 output pixels with boundaries inside rows.
/// Grids of fewer than 1024 invocations run in workgroups of 16 (`forward_3x3_stats_wg16`);
/// the last case, 1024 channel groups of one chunk, in workgroups of 64.
#[test]
fn depthwise_leaves_the_statistics_of_the_batch_norm_after_it() {
    let cases: [([usize; 4], usize); 9] = [
        ([2, 7, 7, 13], 1),
        ([1, 8, 8, 16], 2),
        ([2, 1, 1, 12], 1),
        ([3, 6, 5, 8], 2),
        ([2, 15, 19, 8], 1),
        ([1, 37, 30, 7], 2),
        ([2, 15, 11, 32], 1),
        ([1, 17, 14, 64], 2),
        ([1, 8, 8, 4096], 2),
    ];
    for (i, (shape, stride)) in cases.into_iter().enumerate() {
        let depthwise = OpKind::Depthwise(Depthwise {
            kernel: 3,
            stride,
            padding: common::PADDINGS[i % 2],
            fused: None,
        });
        let pair = producer_pair(depthwise, &shape, ACTIVATIONS[i % 3], 500 + i as u64);
        for (device, kernel) in common::kernel_devices() {
            let plan = compile(device, &pair);
            let what = format!("{} [{kernel}]", pair.what);
            let kernels = plan.kernels();
            assert_eq!(passes(&plan, "stats_partial"), 0, "{what}: {kernels:?}");
            let stats_entry = match (shape[3] == 4096, stride) {
                (true, 1) => "forward_3x3_stats",
                (true, _) => "forward_3x3_s2_stats",
                (false, 1) => "forward_3x3_stats_wg16",
                (false, _) => "forward_3x3_s2_stats_wg16",
            };
            assert_eq!(passes(&plan, stats_entry), 1, "{what}: {kernels:?}");
            // The depthwise backward applies the batch norm's input gradient as it loads.
            assert_eq!(
                op_passes(&plan, "bn", "backward_input"),
                0,
                "{what}: {kernels:?}"
            );
            check_gradients(&plan, &pair, &what);
        }
    }
}

/// A GEMM before a batch norm (a pointwise layer, the stem's convolution after im2col)
/// leaves the batch statistics' partials as it stores its output, on every GEMM kernel the
/// adapter offers: odd channel counts (scalar accesses), batch 1, 1x1 images, several
/// chunks of 256 rows whose last is not a whole tile, and narrow layers (K and N of 16 or
/// less, as `subgroup-rows` takes them: a pointwise layer, a one-channel stem).
#[test]
fn gemm_leaves_the_statistics_of_the_batch_norm_after_it() {
    let pointwise = |out_channels| {
        OpKind::Pointwise(Pointwise {
            out_channels,
            fused: None,
        })
    };
    let stem_conv = Conv2d {
        out_channels: 16,
        kernel: 3,
        stride: 2,
        padding: common::PADDINGS[1],
        fused: None,
    };
    // A narrow network's stem: one channel, K = 9 read from rows padded to 12.
    let grey_stem = OpKind::Conv2d(Conv2d {
        out_channels: 8,
        stride: 1,
        padding: common::PADDINGS[0],
        ..stem_conv.clone()
    });
    let stem = OpKind::Conv2d(stem_conv);
    let cases: [(OpKind, [usize; 4]); 8] = [
        (pointwise(7), [2, 5, 5, 13]),
        (pointwise(24), [3, 4, 4, 16]),
        (pointwise(32), [4, 1, 1, 64]),
        (pointwise(12), [1, 15, 19, 8]),
        (pointwise(40), [2, 15, 19, 20]),
        (stem, [1, 37, 30, 3]),
        (pointwise(16), [2, 9, 9, 16]),
        (grey_stem, [3, 10, 9, 1]),
    ];
    for (i, (producer, shape)) in cases.into_iter().enumerate() {
        let narrow = match &producer {
            OpKind::Pointwise(p) => is_narrow(shape[3], p.out_channels),
            OpKind::Conv2d(c) => is_narrow((9 * shape[3]).next_multiple_of(4), c.out_channels),
            _ => false,
        };
        let pair = producer_pair(producer, &shape, ACTIVATIONS[i % 3], 600 + i as u64);
        for (device, kernel) in common::kernel_devices() {
            let plan = compile(device, &pair);
            let what = format!("{} [{kernel}]", pair.what);
            let kernels = plan.kernels();
            assert_eq!(passes(&plan, "stats_partial"), 0, "{what}: {kernels:?}");
            let stats: Vec<&String> = kernels
                .iter()
                .filter(|k| k.contains(":forward_") && k.contains("_stats"))
                .collect();
            assert_eq!(stats.len(), 1, "{what}: {kernels:?}");
            // The kernels with a statistics epilogue run it when forced; the others (wide
            // and workgroup-memory tiles) leave the dispatch to the default.
            if ["blocked-8x8", "subgroup-16x32", "subgroup-32x32"].contains(&kernel)
                || (kernel == "subgroup-rows" && narrow)
            {
                assert!(
                    stats[0].ends_with(&format!("[{kernel}]")),
                    "{what}: {stats:?}"
                );
            }
            check_gradients(&plan, &pair, &what);
        }
    }
}

#[test]
fn depthwise_applies_the_batch_norm_before_it() {
    // The last four span several chunks of 256 input pixels, a chunk boundary inside a row
    // (the 3x3 backward sums the batch norm's backward partials per chunk); in the last two
    // the images are wide enough for an invocation to take 2 and 4 chunks (of 3 chunks in
    // all: two invocations, the second with one chunk; one invocation, which leaves zeros
    // in its last two chunks' partials). Grids of fewer than 1024 invocations run in
    // workgroups of 16 (`backward_3x3_wg16`); the last case, 1024 channel groups of one
    // chunk, is 1024 invocations, in workgroups of 64.
    let cases: [([usize; 4], usize); 9] = [
        ([2, 7, 7, 13], 1),
        ([1, 8, 8, 16], 2),
        ([3, 6, 5, 8], 1),
        ([2, 1, 1, 12], 1),
        ([2, 15, 19, 8], 1),
        ([1, 21, 18, 7], 2),
        ([1, 15, 40, 8], 1),
        ([1, 7, 100, 4], 2),
        ([1, 8, 8, 4096], 1),
    ];
    for (i, (shape, stride)) in cases.into_iter().enumerate() {
        let padding = common::PADDINGS[i % 2];
        let depthwise = OpKind::Depthwise(Depthwise {
            kernel: 3,
            stride,
            padding,
            fused: None,
        });
        let pair = pair(depthwise, &shape, ACTIVATIONS[i % 3], 100 + i as u64);
        let entry = match (shape[3] == 4096, stride) {
            (true, _) => "backward_3x3",
            (false, 1) => "backward_3x3_wg16",
            (false, _) => "backward_3x3_s2_wg16",
        };
        for (device, kernel) in common::kernel_devices() {
            let plan = check_on(device, kernel, &pair);
            assert_eq!(
                passes(&plan, entry),
                1,
                "{}: {:?}",
                pair.what,
                plan.kernels()
            );
        }
    }
}

#[test]
fn pointwise_applies_the_batch_norm_before_it() {
    let cases: [([usize; 4], usize); 8] = [
        ([2, 5, 5, 13], 7),
        ([3, 4, 4, 16], 24),
        // Narrow dX GEMMs: N of 8 (the whole-row lanes' 8-column loop) and of 12.
        ([1, 6, 6, 8], 12),
        ([2, 3, 7, 12], 16),
        // Narrow dW GEMMs of 4 to 8 and 16 to 16 channels, 48 and 32 rows: the whole-row
        // lanes' loops for M and N both at most 8 and both over 8.
        ([2, 4, 6, 4], 8),
        ([2, 4, 4, 16], 16),
        ([4, 1, 1, 64], 32),
        // Several chunks of 256 rows, the last not a whole tile.
        ([2, 15, 19, 20], 40),
    ];
    for (i, (shape, out_channels)) in cases.into_iter().enumerate() {
        let pointwise = OpKind::Pointwise(Pointwise {
            out_channels,
            fused: None,
        });
        let pair = pair(pointwise, &shape, ACTIVATIONS[i % 3], 200 + i as u64);
        let rows = shape[0] * shape[1] * shape[2];
        let whole_vec4s = [rows, shape[3], out_channels].iter().all(|d| d % 4 == 0);
        for (device, kernel) in common::kernel_devices() {
            let plan = check_on(device, kernel, &pair);
            // Where dW's operands are whole vec4s, the forced 32x32 tile computes it, the
            // batch norm applied as it loads X.
            if kernel == "subgroup-32x32" && whole_vec4s {
                assert_eq!(
                    passes(&plan, "forward_subgroup_32_at"),
                    1,
                    "{}: {:?}",
                    pair.what,
                    plan.kernels()
                );
            }
            // Where dX (K the output's channels, N the input's) is narrow, the forced
            // whole-row lanes compute it and the batch norm's backward sums; where dW (M
            // the input's channels, N the output's, K the rows) is and moves as vec4s, they
            // compute it from X through the batch norm.
            if kernel == "subgroup-rows" {
                let narrow = [
                    (
                        "forward_subgroup_rows_bt_sums",
                        is_narrow(out_channels, shape[3]),
                    ),
                    (
                        "forward_subgroup_rows_at",
                        whole_vec4s && is_narrow(shape[3], out_channels),
                    ),
                ];
                for (entry, narrow) in narrow {
                    let expected = usize::from(narrow);
                    let ran = passes(&plan, entry);
                    assert_eq!(ran, expected, "{} {entry}: {:?}", pair.what, plan.kernels());
                }
            }
        }
    }
}

/// A pointwise layer between two batch norms, as every one in MobileNet is: its forward GEMM
/// applies the first batch norm as it loads A (in 32x32 tiles the scale and shift loaded
/// once per 8 steps of 4 K and handed round the subgroup) and leaves the second's
/// statistics. K of 8 (one
/// short block of steps), 44 (a whole block and a short one) and 96 (three whole blocks),
/// ReLU and ReLU6 before, each activation after, against the reference on every kernel
/// candidate.
#[test]
fn pointwise_between_batch_norms_matches_the_reference() {
    let cases: [([usize; 4], usize); 3] =
        [([2, 5, 5, 8], 12), ([3, 4, 4, 44], 24), ([2, 3, 5, 96], 40)];
    for (i, (shape, out_channels)) in cases.into_iter().enumerate() {
        let pointwise = OpKind::Pointwise(Pointwise {
            out_channels,
            fused: None,
        });
        // With no activation between them, the second batch norm cancels the first's shift:
        // its gradient vanishes and no relative tolerance holds, so the first has one.
        let [before, after] = [ACTIVATIONS[i % 2], ACTIVATIONS[(i + 1) % 3]];
        let nodes = vec![
            ("bn_before", batch_norm(before)),
            ("pw", pointwise),
            ("bn_after", batch_norm(after)),
        ];
        let what = format!("bn {before} -> pointwise -> bn {after}");
        let pair = chain(what, nodes, &shape, 700 + i as u64);
        for (device, kernel) in common::kernel_devices() {
            let plan = compile(device, &pair);
            let what = format!("{} [{kernel}]", pair.what);
            let forced = match kernel {
                "subgroup-16x32" => Some("forward_subgroup_stats"),
                "subgroup-32x32" => Some("forward_subgroup_32_stats"),
                "subgroup-rows" if is_narrow(shape[3], out_channels) => {
                    Some("forward_subgroup_rows_stats")
                }
                _ => None,
            };
            if let Some(entry) = forced {
                assert_eq!(
                    op_passes(&plan, "pw", entry),
                    1,
                    "{what}: {:?}",
                    plan.kernels()
                );
            }
            check_gradients(&plan, &pair, &what);
        }
    }
}

/// The pooling layer applies the batch norm before it as it loads, and its backward sums
/// that batch norm's backward partials as it writes dX (`backward_sums`, one invocation per
/// chunk of 256 rows and channel): one chunk, batch 1, 1x1 maps, odd channel counts, and
/// 300 and 513 rows (two chunks, the second short; three, the last of one row).
#[test]
fn pooling_applies_the_batch_norm_before_it() {
    let cases: [[usize; 4]; 5] = [
        [2, 3, 3, 16],
        [1, 7, 7, 13],
        [3, 1, 1, 8],
        [3, 10, 10, 12],
        [1, 27, 19, 5],
    ];
    for (i, shape) in cases.into_iter().enumerate() {
        let pool = OpKind::GlobalAvgPool(GlobalAvgPool);
        let pair = pair(pool, &shape, ACTIVATIONS[i % 3], 300 + i as u64);
        for (device, kernel) in common::kernel_devices() {
            let plan = check_on(device, kernel, &pair);
            assert_eq!(
                op_passes(&plan, "consumer", "backward_sums"),
                1,
                "{}: {:?}",
                pair.what,
                plan.kernels()
            );
        }
    }
}

/// A batch norm before another batch norm (or at the end) keeps its own normalise pass.
#[test]
fn other_consumers_keep_the_normalise_pass() {
    let second = OpKind::BatchNorm(BatchNorm {
        eps: 1e-5,
        activation: Activation::None,
    });
    let pair = pair(second, &[2, 4, 4, 8], Activation::Relu, 400);
    let plan = compile(common::gpu(), &pair);
    let tensor = buffer_bytes(&[2, 4, 4, 8]);
    assert_eq!(plan.memory().activations, 3 * tensor);
    let grads = plan
        .gradients(&pair.input, &pair.output_grad)
        .expect("gradients");
    let (y, dx, _) = reference(&pair);
    assert_close("bn -> bn output", &grads.output, &y.data, OP_RTOL);
    let dx_gpu = grads.input.as_deref().expect("dX");
    assert_close("bn -> bn dX", dx_gpu, &dx.data, OP_RTOL);
}

/// A batch norm's backward finalize runs in one dispatch with the weight-gradient sums the
/// op after it in the step's backward order leaves just before (two one-workgroup
/// reductions that read nothing of each other's): a 3x3 depthwise layer's beside the batch
/// norm before it (vec4 kernel; three and one chunks of partials, stride 1 and 2), and a
/// pointwise layer's, split over its rows, beside the batch norm before it on 13 channels
/// (scalar kernel). The gradients match the reference on every kernel candidate, and no
/// pair is left apart.
#[test]
fn finalize_stages_share_a_dispatch_with_the_weight_sums_before_them() {
    let merged = BatchNorm::FINALIZE_WITH_WEIGHT_SUMS;
    let depthwise = |stride| {
        OpKind::Depthwise(Depthwise {
            kernel: 3,
            stride,
            padding: common::PADDINGS[stride - 1],
            fused: None,
        })
    };
    let pointwise = OpKind::Pointwise(Pointwise {
        out_channels: 8,
        fused: None,
    });
    let cases = [
        (
            vec![
                ("bn_before", batch_norm(Activation::Relu6)),
                ("dw", depthwise(1)),
            ],
            [2, 17, 16, 12],
        ),
        (
            vec![
                ("bn_before", batch_norm(Activation::Relu)),
                ("dw", depthwise(2)),
            ],
            [1, 9, 7, 8],
        ),
        (
            vec![
                ("dw", depthwise(1)),
                ("bn_between", batch_norm(Activation::Relu)),
                ("pw", pointwise),
            ],
            [2, 24, 24, 13],
        ),
    ];
    for (i, (nodes, shape)) in cases.into_iter().enumerate() {
        let names: Vec<_> = nodes.iter().map(|(name, _)| *name).collect();
        let what = names.join(" -> ");
        let pair = chain(what, nodes, &shape, 800 + i as u64);
        for (device, kernel) in common::kernel_devices() {
            let plan = compile(device, &pair);
            let what = format!("{} [{kernel}]", pair.what);
            let kernels = plan.kernels();
            assert_eq!(passes(&plan, merged), 1, "{what}: {kernels:?}");
            let apart = kernels
                .windows(2)
                .any(|w| w[0].contains(":sum_partials4") && w[1].contains(":backward_finalize"));
            assert!(!apart, "{what}: {kernels:?}");
            check_gradients(&plan, &pair, &what);
        }
    }
}

/// Whether a GEMM of `k` by `n` is one `subgroup-rows` takes (both at most 16, whole
/// vec4s).
fn is_narrow(k: usize, n: usize) -> bool {
    [k, n].iter().all(|&c| c <= 16 && c.is_multiple_of(4))
}
