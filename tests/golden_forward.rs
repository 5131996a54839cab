//! Every forward shader entry point against the CPU reference, on edge shapes: batch 1
//! and 3, odd sizes, stride 2 on odd and even inputs in both padding modes, channel
//! counts that are not multiples of the workgroup or GEMM tile, alpha-0.25 widths.
//! Convolutions run both plain and with a folded batchnorm's bias + activation epilogue.
//! Tolerance: |gpu - ref| <= 1e-4 * (|ref| + rms(ref)) per element.

mod common;

use common::check_op;
use mobilenet_wgpu::ops::{
    Activation, BatchNorm, Conv2d, Dense, Depthwise, GlobalAvgPool, OpKind, Pointwise, Softmax,
};

/// Every third case plain; the others with batchnorm folded in (bias + activation epilogue),
/// as inference plans run them.
fn fused_case(i: usize) -> Option<Activation> {
    [None, Some(Activation::Relu6), Some(Activation::Relu)][i % 3]
}

#[test]
fn conv2d_forward_matches_reference() {
    let cases = common::CONV_CASES;
    for padding in common::PADDINGS {
        for (i, (shape, out_channels, stride)) in cases.iter().enumerate() {
            let op = Conv2d {
                out_channels: *out_channels,
                kernel: 3,
                stride: *stride,
                padding,
                fused: fused_case(i),
            };
            let what = format!("conv2d {shape:?} -> {out_channels} stride {stride} {padding}");
            check_op(&what, OpKind::Conv2d(op), shape, 100 + i as u64);
        }
    }
}

/// The 3x3 depthwise forward on `cases` (input, stride) in both paddings against the
/// reference, case i from seed `seed + i`.
fn check_depthwise_forward(cases: &[([usize; 4], usize)], seed: u64) {
    for padding in common::PADDINGS {
        for (i, (shape, stride)) in cases.iter().enumerate() {
            let op = Depthwise {
                kernel: 3,
                stride: *stride,
                padding,
                fused: fused_case(i),
            };
            let what = format!("depthwise {shape:?} stride {stride} {padding}");
            check_op(&what, OpKind::Depthwise(op), shape, seed + i as u64);
        }
    }
}

#[test]
fn depthwise_forward_matches_reference() {
    check_depthwise_forward(&common::DEPTHWISE_CASES, 200);
}

/// Strips of 32 and 16 output rows (`strip_rows` in ops/depthwise.rs picks them for these
/// shapes), the last strip short, at both strides and paddings.
#[test]
fn long_strips_of_the_3x3_depthwise_forward_match_reference() {
    check_depthwise_forward(&[([2, 40, 4, 1024], 1), ([4, 34, 8, 512], 2)], 250);
}

#[test]
fn pointwise_forward_matches_reference() {
    let cases = common::POINTWISE_CASES;
    for (i, (shape, out_channels)) in cases.iter().enumerate() {
        let op = Pointwise {
            out_channels: *out_channels,
            fused: fused_case(i),
        };
        let what = format!("pointwise {shape:?} -> {out_channels}");
        check_op(&what, OpKind::Pointwise(op), shape, 300 + i as u64);
    }
}

#[test]
fn batchnorm_activation_forward_matches_reference() {
    let shapes = common::BN_SHAPES;
    for activation in [Activation::None, Activation::Relu, Activation::Relu6] {
        for eps in [1e-5f32, 1e-3] {
            for (i, shape) in shapes.iter().enumerate() {
                let op = BatchNorm { eps, activation };
                let what = format!("bn {shape:?} {activation} eps {eps}");
                check_op(&what, OpKind::BatchNorm(op), shape, 400 + i as u64);
            }
        }
    }
}

#[test]
fn relu6_clamps_large_values() {
    // Inputs of +-2 through unit-ish BN stay below 6; scale the BN so the cap is reached.
    use mobilenet_wgpu::graph::GraphBuilder;
    let mut g = GraphBuilder::new();
    let x = g.input("x", &[1, 1, 2, 4]);
    let op = BatchNorm {
        eps: 1e-5,
        activation: Activation::Relu6,
    };
    let y = g.batch_norm("bn", x, op).unwrap();
    g.output(y).unwrap();
    let plan = g.compile(common::gpu()).unwrap();
    let mut params = mobilenet_wgpu::ParamStore::initialize(&g, 0);
    params.insert("bn.gamma", vec![4], vec![10.0; 4]);
    plan.load_params(&params).unwrap();
    let out = plan
        .run(&[-1.0, 0.1, 0.5, 2.0, 0.3, 0.7, -0.2, 0.0])
        .unwrap()
        .remove(0);
    let expected = [0.0, 1.0, 5.0, 6.0, 3.0, 6.0, 0.0, 0.0];
    for (o, e) in out.iter().zip(expected) {
        assert!(
            (o - e).abs() < 1e-3,
            "relu6 gave {out:?}, expected {expected:?}"
        );
    }
}

#[test]
fn global_avg_pool_forward_matches_reference() {
    let shapes = common::POOL_SHAPES;
    for (i, shape) in shapes.iter().enumerate() {
        let what = format!("pool {shape:?}");
        check_op(
            &what,
            OpKind::GlobalAvgPool(GlobalAvgPool),
            shape,
            500 + i as u64,
        );
    }
}

#[test]
fn dense_forward_matches_reference() {
    // An inference graph's dense weights (`read_only`) are stored transposed where the
    // rows fill one row of 32x32 tiles (17 to 32): a classifier at batch 32, and an odd
    // width the scalar kernel reads.
    let read_only_cases = [([32, 1024], 1000), ([17, 9], 5)];
    let cases = common::DENSE_CASES
        .iter()
        .map(|&(shape, n)| (shape, n, false));
    let cases = cases.chain(
        common::DENSE_CASES
            .iter()
            .map(|&(shape, n)| (shape, n, true)),
    );
    let cases = cases.chain(read_only_cases.iter().map(|&(shape, n)| (shape, n, true)));
    for (i, (shape, out_features, read_only)) in cases.enumerate() {
        let op = Dense {
            out_features,
            read_only,
        };
        let what = format!("dense {shape:?} -> {out_features} read-only {read_only}");
        check_op(&what, OpKind::Dense(op), &shape, 600 + i as u64);
    }
}

#[test]
fn softmax_forward_matches_reference() {
    // A workgroup per row, 64 lanes taking every 64th column: rows narrower than the lanes,
    // exactly as wide, and wider by a part of 64.
    let shapes: [[usize; 2]; 7] = [
        [1, 1000],
        [3, 13],
        [3, 3],
        [1, 1],
        [32, 1000],
        [2, 64],
        [5, 130],
    ];
    for (i, shape) in shapes.iter().enumerate() {
        let what = format!("softmax {shape:?}");
        check_op(&what, OpKind::Softmax(Softmax), shape, 700 + i as u64);
    }
}

#[test]
fn softmax_is_stable_for_large_logits() {
    use mobilenet_wgpu::graph::GraphBuilder;
    let mut g = GraphBuilder::new();
    let x = g.input("x", &[2, 3]);
    let y = g.softmax("softmax", x).unwrap();
    g.output(y).unwrap();
    let plan = g.compile(common::gpu()).unwrap();
    let logits = [1000.0, 999.0, -1000.0, -500.0, -500.0, -500.0];
    let out = plan.run(&logits).unwrap().remove(0);
    let reference = mobilenet_wgpu::reference::softmax(&mobilenet_wgpu::reference::Tensor::new(
        vec![2, 3],
        logits.to_vec(),
    ));
    common::assert_close(
        "softmax large logits",
        &out,
        &reference.data,
        common::OP_RTOL,
    );
    let third = 1.0 / 3.0;
    assert!((out[3] - third).abs() < 1e-6 && (out[0] - 0.7310586).abs() < 1e-5);

    // Large logits spread over the lanes, the largest in a later one: each lane's sum is
    // rescaled to the row's maximum when they merge.
    let mut g = GraphBuilder::new();
    let x = g.input("x", &[1, 300]);
    let y = g.softmax("softmax", x).unwrap();
    g.output(y).unwrap();
    let plan = g.compile(common::gpu()).unwrap();
    let logits: Vec<f32> = (0..300).map(|j| 900.0 + ((j * 37) % 101) as f32).collect();
    let out = plan.run(&logits).unwrap().remove(0);
    let reference = mobilenet_wgpu::reference::softmax(&mobilenet_wgpu::reference::Tensor::new(
        vec![1, 300],
        logits,
    ));
    common::assert_close(
        "softmax large logits, wide",
        &out,
        &reference.data,
        common::OP_RTOL,
    );
}

/// A pointwise layer and a 3x3 depthwise layer on images of at most 2x2 pixels (or 4x4,
/// where the adapter runs the subgroup tiles), both folded (inference), run as one
/// dispatch: the depthwise layer in the GEMM's epilogue (`ops::with_depthwise_epilogue`),
/// on every GEMM kernel that has it (the others fall back to the default). Against the float64 reference, and against the two layers run apart
/// (the pointwise output made a graph output, which the plan must then store).
#[test]
fn pointwise_and_small_depthwise_run_as_one_dispatch() {
    use common::{assert_close, kernel_devices, random_params, rng, uniform, OP_RTOL};
    use mobilenet_wgpu::graph::GraphBuilder;
    use mobilenet_wgpu::ops::Padding::{Same, Symmetric};
    use mobilenet_wgpu::reference;
    use Activation::{Relu, Relu6};
    // (input [n, h, w, c], pointwise outputs, depthwise stride, padding, activations):
    // tiles partly filled (5 images of 4 rows), batch 1, 1x1, 1x2 and 2x1 images, stride 2
    // to 1x1 in both paddings, more rows than a tile and columns that end mid-tile. 17 to
    // 32 rows (the first two cases, and [2, 4, 4, 16]) store the pointwise weight
    // transposed (`forward_dw_bt`, `forward_subgroup_32_dw16_bt`).
    let cases = [
        ([5, 2, 2, 8], 12, 1, Symmetric, [Relu, Relu6]),
        ([5, 2, 2, 8], 12, 2, Symmetric, [Relu6, Relu]),
        ([3, 2, 2, 16], 36, 2, Same, [Relu6, Relu6]),
        ([1, 1, 1, 8], 40, 1, Symmetric, [Relu, Relu]),
        ([9, 1, 1, 12], 8, 2, Same, [Relu, Relu6]),
        ([3, 1, 2, 8], 16, 1, Symmetric, [Relu6, Relu]),
        ([3, 2, 1, 8], 16, 2, Symmetric, [Relu, Relu]),
        ([3, 2, 1, 8], 16, 1, Same, [Relu, Relu6]),
        // TF SAME at stride 2 on images of 2x1 and 1x2: no padding before along the side
        // of 2, one along the side of 1.
        ([3, 2, 1, 8], 16, 2, Same, [Relu6, Relu]),
        ([3, 1, 2, 8], 12, 2, Same, [Relu, Relu]),
        ([33, 2, 2, 4], 68, 1, Symmetric, [Relu6, Relu]),
        // Images of 4x4 (on adapters with the subgroup tiles): one per half tile, the
        // last tile half empty, both strides and paddings.
        ([3, 4, 4, 8], 12, 1, Symmetric, [Relu, Relu6]),
        ([3, 4, 4, 8], 40, 2, Symmetric, [Relu6, Relu]),
        ([2, 4, 4, 16], 36, 2, Same, [Relu, Relu]),
        ([1, 4, 4, 4], 8, 1, Same, [Relu6, Relu6]),
    ];
    for (i, (shape, out_channels, stride, padding, [pw_act, dw_act])) in
        cases.into_iter().enumerate()
    {
        let pointwise = Pointwise {
            out_channels,
            fused: Some(pw_act),
        };
        let depthwise = Depthwise {
            kernel: 3,
            stride,
            padding,
            fused: Some(dw_act),
        };
        let graph =
            |apart| pointwise_then_depthwise(&shape, pointwise.clone(), depthwise.clone(), apart);
        let (together, apart) = (graph(false), graph(true));
        let params = random_params(&together, 300 + i as u64);
        let input = uniform(&mut rng(i as u64), shape.iter().product(), -2.0, 2.0);
        let expected = reference::run_graph(&together, &params, &input).unwrap();
        let what = format!("pw+dw {shape:?} -> {out_channels} stride {stride} {padding}");
        for (device, kernel) in kernel_devices() {
            let run = |g: &GraphBuilder| {
                let plan = g.compile(device).unwrap();
                plan.load_params(&params).unwrap();
                (
                    plan.run(&input).unwrap().pop().unwrap(),
                    plan.dispatch_count(),
                )
            };
            let ((fused, one), (separate, two)) = (run(&together), run(&apart));
            let joined = shape[1] <= 2 || device.subgroup_gemm();
            assert_eq!(
                (one, two),
                (2 - joined as usize, 2),
                "{what} [{kernel}]: dispatches"
            );
            let what = format!("{what} [{kernel}]");
            assert_close(&what, &fused, &expected[0].data, OP_RTOL);
            assert_close(&format!("{what} apart"), &fused, &separate, 1e-6);
        }
    }
}

/// `pointwise` then `depthwise` on an input of `shape`; `apart` makes the pointwise output a
/// graph output too, which keeps the two layers in dispatches of their own.
fn pointwise_then_depthwise(
    shape: &[usize],
    pointwise: Pointwise,
    depthwise: Depthwise,
    apart: bool,
) -> mobilenet_wgpu::graph::GraphBuilder {
    let mut g = mobilenet_wgpu::graph::GraphBuilder::new();
    let x = g.input("x", shape);
    let y = g.pointwise("pw", x, pointwise).unwrap();
    let z = g.depthwise("dw", y, depthwise).unwrap();
    if apart {
        g.output(y).unwrap();
    }
    g.output(z).unwrap();
    g
}
