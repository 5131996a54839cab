//! Tensors larger than one storage binding: ops run over chunks of the batch bound at
//! offsets. A device with a small binding limit (`Gpu::with_binding_limit`) makes small
//! plans chunk. Inference must equal the unchunked plan bit for bit, since every inference
//! op works sample by sample. A training step's loss and statistics within the
//! GPU-against-reference tolerance, and its gradients as close to the float64 reference as
//! the whole batch's: weight gradients add the chunks' shares, and batch norm its backward
//! sums, in another order.

mod common;

use mobilenet_wgpu::gpu::KernelChoice;
use mobilenet_wgpu::graph::{GraphBuilder, GraphError, ParamStore};
use mobilenet_wgpu::ops::{
    Activation, BatchNorm, Conv2d, Dense, Depthwise, GlobalAvgPool, OpKind, Padding, Pointwise,
    Softmax,
};
use mobilenet_wgpu::{Gpu, MobileNetV1Config, Preset};

/// The adapter with storage bindings held to `bytes`, default kernels.
fn small_bindings(bytes: u64) -> Gpu {
    common::open_gpu(KernelChoice::Defaults, None).with_binding_limit(bytes)
}

const LIMIT: u64 = 16 << 10;
const BATCH: usize = 10;

/// Runs the graph on the whole-binding device and on `chunked`; returns the outputs and
/// the dispatch counts.
fn run_both(g: &GraphBuilder, chunked: &Gpu, seed: u64) -> [(Vec<Vec<f32>>, usize); 2] {
    let params = common::random_params(g, seed);
    let mut r = common::rng(seed);
    let shape = g.shape(g.inputs()[0]).expect("input").to_vec();
    let input = common::uniform(&mut r, shape.iter().product(), -2.0, 2.0);
    [common::gpu(), chunked].map(|device| {
        let plan = g.compile(device).expect("compile");
        plan.load_params(&params).expect("params");
        (plan.run(&input).expect("run"), plan.dispatch_count())
    })
}

fn single_op(kind: OpKind, input: &[usize]) -> GraphBuilder {
    let mut g = GraphBuilder::new();
    let x = g.input("x", input);
    let y = g.add("op", kind, x).expect("valid shape");
    g.output(y).expect("output");
    g
}

#[test]
fn spatial_ops_run_in_chunks_equal_the_whole_batch() {
    let chunked = small_bindings(LIMIT);
    let bn = BatchNorm {
        eps: 1e-5,
        activation: Activation::Relu6,
    };
    // Per-sample bytes of every batch tensor are multiples of 256 (the usual offset
    // alignment), 2-7 KiB: 16 KiB bindings hold 2-4 samples of the batch of 10.
    let cases: Vec<(&str, OpKind, [usize; 4])> = vec![
        (
            "conv2d (im2col + GEMM)",
            OpKind::Conv2d(Conv2d {
                out_channels: 16,
                kernel: 3,
                stride: 2,
                padding: Padding::Symmetric,
                fused: Some(Activation::Relu),
            }),
            [BATCH, 16, 16, 3],
        ),
        (
            "depthwise s1",
            OpKind::Depthwise(Depthwise {
                kernel: 3,
                stride: 1,
                padding: Padding::Symmetric,
                fused: None,
            }),
            [BATCH, 8, 8, 16],
        ),
        (
            "depthwise s2 same",
            OpKind::Depthwise(Depthwise {
                kernel: 3,
                stride: 2,
                padding: Padding::Same,
                fused: Some(Activation::Relu6),
            }),
            [BATCH, 8, 8, 16],
        ),
        (
            "pointwise",
            OpKind::Pointwise(Pointwise {
                out_channels: 24,
                fused: None,
            }),
            [BATCH, 8, 8, 16],
        ),
        (
            "batch norm (running statistics)",
            OpKind::BatchNorm(bn),
            [BATCH, 8, 8, 16],
        ),
        (
            "global average pool",
            OpKind::GlobalAvgPool(GlobalAvgPool),
            [BATCH, 8, 8, 16],
        ),
    ];
    for (seed, (what, kind, shape)) in cases.into_iter().enumerate() {
        let [(whole, whole_steps), (parts, chunked_steps)] =
            run_both(&single_op(kind, &shape), &chunked, seed as u64);
        println!("{what}: {whole_steps} dispatches whole, {chunked_steps} in chunks");
        assert!(
            chunked_steps > whole_steps,
            "{what}: the small binding limit did not chunk it"
        );
        assert_eq!(whole, parts, "{what}: chunked results differ");
    }
}

/// Row-wise ops over [batch, features], chunked when one binding holds 64 rows or fewer.
#[test]
fn row_wise_ops_run_in_chunks_equal_the_whole_batch() {
    let tiny = small_bindings(2048);
    for (seed, (what, kind)) in [
        (
            "dense",
            OpKind::Dense(Dense {
                out_features: 64,
                read_only: false,
            }),
        ),
        ("softmax", OpKind::Softmax(Softmax)),
    ]
    .into_iter()
    .enumerate()
    {
        let [(whole, whole_steps), (parts, chunked_steps)] =
            run_both(&single_op(kind, &[256, 64]), &tiny, 40 + seed as u64);
        assert!(chunked_steps > whole_steps, "{what}: not chunked");
        assert_eq!(whole, parts, "{what}: chunked results differ");
    }
}

#[test]
fn whole_networks_run_in_chunks_equal_the_whole_batch() {
    let chunked = small_bindings(64 << 10);
    for preset in [Preset::Paper, Preset::Keras] {
        let config = MobileNetV1Config {
            alpha: 0.25,
            resolution: 32,
            classes: 10,
            ..MobileNetV1Config::preset(preset)
        };
        // Unfolded (evaluation during training) and folded (predict, eval, bench) graphs.
        let model = config.build(BATCH).expect("build");
        let [(whole, whole_steps), (parts, chunked_steps)] = run_both(&model.graph, &chunked, 7);
        println!("{preset}: {whole_steps} dispatches whole, {chunked_steps} in chunks");
        assert!(chunked_steps > whole_steps);
        assert_eq!(whole, parts, "{preset}: chunked logits differ");

        let params = ParamStore::initialize(&config.build(1).expect("build").graph, 3);
        let input = common::uniform(&mut common::rng(9), BATCH * 32 * 32 * 3, -1.0, 1.0);
        let [whole, parts] = [common::gpu(), &chunked].map(|device| {
            let plan = config
                .inference_plan(device, &params, BATCH)
                .expect("folded plan");
            plan.run(&input).expect("run")
        });
        assert_eq!(whole, parts, "{preset}: chunked folded inference differs");
    }
}

#[test]
fn a_sample_larger_than_a_binding_is_refused_naming_the_op() {
    let gpu = small_bindings(1024);
    let g = single_op(
        OpKind::Pointwise(Pointwise {
            out_channels: 16,
            fused: None,
        }),
        &[4, 8, 8, 16],
    );
    match g.compile(&gpu) {
        Err(error @ GraphError::ChunkTooLarge { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("\"op\"") && message.contains("4096"),
                "{message}"
            );
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a 4096-byte sample cannot fit a 1024-byte binding"),
    }
}

/// One training step's loss, logits and parameter gradients, and the parameters (running
/// statistics included) after it, on `device`.
fn train_step(
    device: &Gpu,
    g: &GraphBuilder,
    params: &ParamStore,
    images: &[f32],
    labels: &[u32],
) -> (Vec<f32>, ParamStore, ParamStore, usize) {
    use mobilenet_wgpu::graph::{ParamBuffers, TrainConfig, TrainPlan};
    let buffers = std::sync::Arc::new(ParamBuffers::new(device, g).expect("buffers"));
    buffers.load(params).expect("load");
    let plan = TrainPlan::compile(g, device, buffers.clone(), &TrainConfig::default())
        .expect("compile training");
    let (output, grads) = plan.loss_gradients(images, labels).expect("step");
    let after = buffers.read().expect("read params");
    let outputs = [output.loss, output.logits].concat();
    (outputs, grads, after, plan.dispatch_count())
}

/// Chunked training equals the whole batch: its loss, logits and updated statistics within
/// the GPU-against-reference tolerance, its gradients as close to the reference.
fn assert_training_chunks_match(what: &str, g: &GraphBuilder, chunked: &Gpu, classes: usize) {
    let params = common::random_params(g, 5);
    let shape = g.shape(g.inputs()[0]).expect("input").to_vec();
    let mut r = common::rng(6);
    let images = common::uniform(&mut r, shape.iter().product(), -1.0, 1.0);
    let labels: Vec<u32> = (0..shape[0]).map(|i| (i % classes) as u32).collect();
    let (whole, whole_grads, whole_after, whole_steps) =
        train_step(common::gpu(), g, &params, &images, &labels);
    let (parts, part_grads, part_after, chunked_steps) =
        train_step(chunked, g, &params, &images, &labels);
    println!("{what}: {whole_steps} dispatches whole, {chunked_steps} in chunks");
    assert!(chunked_steps > whole_steps, "{what}: not chunked");
    common::assert_close(
        &format!("{what} loss and logits"),
        &parts,
        &whole,
        common::OP_RTOL,
    );
    // Gradients: the chunked batch norms sum their backward partials in a pass of their
    // own, pixel by pixel, where the whole batch's consumers sum them in their own walk, so
    // the two differ by float32 rounding in another order. Each side is held to the float64
    // reference instead: the chunked one within 3 times the whole batch's error there (or
    // OP_RTOL). Measured: at most 1.8 times, on MobileNet 0.25/32's pointwise batch-norm
    // scales. A batch norm's shift followed by a convolution and another batch norm has a
    // vanishing gradient, which both sides miss by some 10 times its size; a chunk's share
    // lost or counted twice would miss it by orders of magnitude more.
    let (_, reference) =
        mobilenet_wgpu::reference::loss_gradients(g, &mut params.clone(), &images, &labels, None)
            .expect("reference step");
    for (name, _, values) in whole_grads.iter() {
        let got = part_grads.get(name).expect("a gradient per parameter");
        let expected = &reference[name];
        let whole_error = common::relative_error(values, expected);
        let chunked_error = common::relative_error(got, expected);
        println!(
            "{what} d{name}: against the reference, whole {whole_error:.3e}, chunked {chunked_error:.3e}"
        );
        assert!(
            chunked_error <= common::OP_RTOL.max(3.0 * whole_error),
            "{what} d{name}: chunked {chunked_error:.3e} from the reference, the whole batch \
             {whole_error:.3e}"
        );
    }
    // Running statistics, updated from the batch statistics.
    for (name, _, values) in whole_after.iter() {
        let got = part_after.get(name).expect("every parameter");
        common::assert_close(
            &format!("{what} {name} after"),
            got,
            values,
            common::OP_RTOL,
        );
    }
}

#[test]
fn training_steps_run_in_chunks_match_the_whole_batch() {
    // Stem, batch norm, depthwise, pointwise, pool, classifier; per-sample tensors of 1-9
    // KiB at multiples of 256 bytes, batch norm over 64 rows per sample.
    let mut g = GraphBuilder::new();
    let x = g.input("x", &[24, 8, 8, 4]);
    let bn = BatchNorm {
        eps: 1e-3,
        activation: Activation::Relu6,
    };
    let y = g
        .conv2d(
            "stem",
            x,
            Conv2d {
                out_channels: 16,
                kernel: 3,
                stride: 1,
                padding: Padding::Symmetric,
                fused: None,
            },
        )
        .unwrap();
    let y = g.batch_norm("stem_bn", y, bn.clone()).unwrap();
    let dw = Depthwise {
        kernel: 3,
        stride: 1,
        padding: Padding::Symmetric,
        fused: None,
    };
    let y = g.depthwise("dw", y, dw).unwrap();
    let y = g.batch_norm("dw_bn", y, bn.clone()).unwrap();
    let pw = Pointwise {
        out_channels: 32,
        fused: None,
    };
    let y = g.pointwise("pw", y, pw).unwrap();
    let y = g.batch_norm("pw_bn", y, bn).unwrap();
    let y = g.global_avg_pool("pool", y).unwrap();
    let y = g
        .dense(
            "fc",
            y,
            Dense {
                out_features: 10,
                read_only: false,
            },
        )
        .unwrap();
    g.output(y).unwrap();
    // 80 KiB bindings: the stem's im2col rows (9 KiB per sample) in chunks of 8.
    assert_training_chunks_match("small network", &g, &small_bindings(80 << 10), 10);

    let config = MobileNetV1Config {
        alpha: 0.25,
        resolution: 32,
        classes: 10,
        activation: Activation::None,
        ..MobileNetV1Config::preset(Preset::Paper)
    };
    let model = config.build(BATCH).expect("build");
    assert_training_chunks_match(
        "MobileNet 0.25/32",
        &model.graph,
        &small_bindings(64 << 10),
        10,
    );
}

#[test]
fn sync_bn_over_chunks_is_refused_with_what_to_do() {
    use mobilenet_wgpu::graph::{ParamBuffers, TrainConfig, TrainPlan};
    use mobilenet_wgpu::ops::TrainSettings;
    let gpu = small_bindings(64 << 10);
    let model = MobileNetV1Config {
        alpha: 0.25,
        resolution: 32,
        classes: 10,
        ..MobileNetV1Config::preset(Preset::Paper)
    }
    .build(BATCH)
    .expect("build");
    let params = std::sync::Arc::new(ParamBuffers::new(&gpu, &model.graph).expect("params"));
    let config = TrainConfig {
        settings: TrainSettings {
            synced_replicas: 2,
            ..Default::default()
        },
        gradient_bucket_bytes: Some(1 << 20),
        ..Default::default()
    };
    let error = TrainPlan::compile(&model.graph, &gpu, params, &config)
        .err()
        .expect("sync-BN over chunks is refused")
        .to_string();
    assert!(
        error.contains("--batch-size") && error.contains("--sync-bn"),
        "{error}"
    );
}
