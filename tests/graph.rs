//! Graph building and compilation: shape errors name the op, memory is reused, limits
//! are enforced with a useful message, parameters are checked by name.

mod common;

use mobilenet_wgpu::graph::{GraphBuilder, GraphError, ParamBuffers, TrainConfig, TrainPlan};
use mobilenet_wgpu::ops::{Dense, GpuLayout, Pointwise};
use mobilenet_wgpu::{reference, MobileNetV1Config, ParamStore, Preset};

#[test]
fn shape_errors_name_the_op_and_shapes() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", &[2, 8, 8, 3]);
    let err = g
        .dense(
            "head",
            x,
            Dense {
                out_features: 10,
                read_only: false,
            },
        )
        .expect_err("dense on NHWC must fail");
    let message = err.to_string();
    assert!(
        message.contains("\"head\"")
            && message.contains("Dense")
            && message.contains("[2, 8, 8, 3]"),
        "{message}"
    );
    let pooled = g.global_avg_pool("pool", x).unwrap();
    let err = g
        .pointwise(
            "pw",
            pooled,
            Pointwise {
                out_channels: 4,
                fused: None,
            },
        )
        .expect_err("pointwise on [N, C] must fail");
    assert!(err.to_string().contains("NHWC"), "{err}");
}

#[test]
fn duplicate_names_are_rejected() {
    let mut g = GraphBuilder::new();
    let x = g.input("x", &[1, 4, 4, 3]);
    let y = g.global_avg_pool("pool", x).unwrap();
    assert!(matches!(
        g.softmax("pool", y),
        Err(GraphError::DuplicateName(_))
    ));
}

#[test]
fn activations_share_buffers() {
    let model = MobileNetV1Config {
        alpha: 0.25,
        resolution: 64,
        ..MobileNetV1Config::preset(Preset::Paper)
    }
    .build(4)
    .unwrap();
    let plan = model.graph.compile(common::gpu()).unwrap();
    let memory = plan.memory();
    println!("{memory:?}");
    // A chain needs two live buffers at a time (plus the input and the two outputs);
    // without reuse it would need one per op.
    assert!(
        memory.activations * 4 < memory.activations_unshared,
        "reuse too weak: {memory:?}"
    );
    // What the plan allocates stays close to the largest set of tensors alive at once.
    assert!(memory.activations_live_peak > 0);
    assert!(
        memory.activations as f64 <= 1.25 * memory.activations_live_peak as f64,
        "planned activations far above the live-tensor peak: {memory:?}"
    );
}

/// MobileNet 0.25 at 224 with one image more than one binding of block 1's 112x112x16
/// output holds.
fn past_the_binding_limit() -> (MobileNetV1Config, usize) {
    let limit = common::gpu().binding_limit();
    let config = MobileNetV1Config {
        alpha: 0.25,
        resolution: 224,
        ..MobileNetV1Config::preset(Preset::Paper)
    };
    let per_image = 112 * 112 * 16 * 4;
    (config, (limit / per_image + 1) as usize)
}

#[test]
fn training_past_the_binding_limit_compiles_in_chunks_up_to_the_buffer_limit() {
    let gpu = common::gpu();
    let (config, batch) = past_the_binding_limit();
    let compile = |batch: usize| {
        let model = config.build(batch).unwrap();
        let params = std::sync::Arc::new(ParamBuffers::new(gpu, &model.graph).unwrap());
        TrainPlan::compile(&model.graph, gpu, params, &TrainConfig::default())
    };
    let plan = compile(batch).expect("chunked training plan");
    assert!(plan
        .kernels()
        .iter()
        .any(|step| step.starts_with(&format!("blocks.1.pw[0..{}]", batch - 1))));
    let max_buffer = gpu.limits().max_buffer_size;
    let per_image = 112 * 112 * 16 * 4;
    let too_many = (max_buffer / per_image + 1) as usize;
    match compile(too_many) {
        Err(GraphError::TooLarge {
            limit_name,
            max_batch,
            ..
        }) => {
            assert_eq!(limit_name, "max_buffer_size");
            assert_eq!(max_batch, too_many - 1);
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("batch {too_many} should exceed max_buffer_size"),
    }
}

#[test]
fn inference_past_the_binding_limit_runs_in_chunks_up_to_the_buffer_limit() {
    let gpu = common::gpu();
    let (config, batch) = past_the_binding_limit();
    let whole = config.build(1).unwrap().graph.compile(gpu).unwrap();
    let chunked = config.build(batch).unwrap().graph.compile(gpu).unwrap();
    assert!(chunked.dispatch_count() > whole.dispatch_count());
    assert!(chunked
        .kernels()
        .iter()
        .any(|step| step.starts_with(&format!("blocks.1.pw[0..{}]", batch - 1))));

    // A tensor larger than the adapter's largest buffer still is refused.
    let max_buffer = gpu.limits().max_buffer_size;
    let per_image = 112 * 112 * 16 * 4;
    let batch = (max_buffer / per_image + 1) as usize;
    match config.build(batch).unwrap().graph.compile(gpu) {
        Err(GraphError::TooLarge {
            limit_name,
            max_batch,
            ..
        }) => {
            assert_eq!(limit_name, "max_buffer_size");
            assert!(max_batch < batch, "{max_batch}");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("batch {batch} should exceed max_buffer_size"),
    }
}

/// A 32x32 network of width `alpha` with `classes` outputs.
fn small_config(alpha: f32, classes: usize, preset: Preset) -> MobileNetV1Config {
    MobileNetV1Config {
        alpha,
        resolution: 32,
        classes,
        ..MobileNetV1Config::preset(preset)
    }
}

#[test]
fn parameter_problems_are_reported_together() {
    let model = small_config(0.25, 5, Preset::Timm).build(1).unwrap();
    let plan = model.graph.compile(common::gpu()).unwrap();
    let mut store = ParamStore::initialize(&model.graph, 3);
    store.insert("classifier.bias", vec![7], vec![0.0; 7]);
    store.insert("extra.weight", vec![1], vec![0.0]);
    let mut pruned = ParamStore::new();
    for (name, shape, values) in store.iter() {
        if name != "stem.bn.gamma" {
            pruned.insert(name, shape.to_vec(), values.to_vec());
        }
    }
    let message = plan.load_params(&pruned).unwrap_err().to_string();
    for expected in ["classifier.bias", "extra.weight", "stem.bn.gamma: missing"] {
        assert!(message.contains(expected), "{expected} not in: {message}");
    }
}

#[test]
fn params_round_trip_through_the_gpu() {
    let model = small_config(0.25, 3, Preset::Keras).build(1).unwrap();
    let plan = model.graph.compile(common::gpu()).unwrap();
    let store = common::random_params(&model.graph, 9);
    plan.load_params(&store).unwrap();
    assert_eq!(plan.read_params().unwrap(), store);
}

// Inference stores weights other than densely: the 512-wide pointwise weights with padded
// rows, and the GEMMs of 17 to 32 rows (batch 20 on the 1x1 images of blocks 12 and 13 and
// the classifier) transposed. Loading and reading back must still give the dense tensors,
// and the network the reference's output.
#[test]
fn inference_weight_layouts_round_trip_through_the_gpu() {
    let cases = [
        (1, "blocks.13.pw.weight", GpuLayout::PaddedRows(528)),
        (20, "blocks.12.pw.weight", GpuLayout::Transposed),
        (20, "blocks.13.pw.weight", GpuLayout::Transposed),
        (20, "classifier.weight", GpuLayout::Transposed),
    ];
    for (batch, name, layout) in cases {
        let model = small_config(0.5, 3, Preset::Paper)
            .build_folded(batch)
            .unwrap();
        let params = model.graph.params();
        let param = params.iter().find(|p| p.name == name).unwrap();
        assert_eq!(param.layout, layout, "{name} at batch {batch}");
        let plan = model.graph.compile(common::gpu()).unwrap();
        let store = common::random_params(&model.graph, 11);
        plan.load_params(&store).unwrap();
        assert_eq!(plan.read_params().unwrap(), store, "batch {batch}");
        let input = common::uniform(&mut common::rng(5), batch * 32 * 32 * 3, -1.0, 1.0);
        let expected = reference::run_graph(&model.graph, &store, &input).unwrap();
        let logits = plan.run(&input).unwrap().remove(0);
        common::assert_close(
            &format!("folded batch {batch}"),
            &logits,
            &expected[0].data,
            common::OP_RTOL,
        );
    }
}

#[test]
fn wrong_input_length_is_an_error() {
    let model = MobileNetV1Config {
        alpha: 0.25,
        resolution: 32,
        ..MobileNetV1Config::preset(Preset::Paper)
    }
    .build(2)
    .unwrap();
    let plan = model.graph.compile(common::gpu()).unwrap();
    let err = plan.run(&[0.0; 10]).unwrap_err();
    assert!(
        matches!(err, GraphError::InputLength { got: 10, .. }),
        "{err}"
    );
}

/// Pooling over images of one pixel only reshapes them: an inference plan runs nothing for
/// it and reads the pooled tensor (here also a graph output) from its input's buffer.
#[test]
fn pooling_one_pixel_runs_no_dispatch_and_reads_its_input() {
    let plan_for = |side: usize| {
        let mut g = GraphBuilder::new();
        let x = g.input("x", &[3, side, side, 12]);
        let pooled = g.global_avg_pool("pool", x).unwrap();
        let logits = g
            .dense(
                "head",
                pooled,
                Dense {
                    out_features: 5,
                    read_only: false,
                },
            )
            .unwrap();
        g.output(pooled).unwrap();
        g.output(logits).unwrap();
        let plan = g.compile(common::gpu()).unwrap();
        plan.load_params(&ParamStore::initialize(&g, 7)).unwrap();
        plan
    };
    let (one_pixel, four_pixels) = (plan_for(1), plan_for(2));
    assert_eq!(one_pixel.dispatch_count() + 1, four_pixels.dispatch_count());

    let x: Vec<f32> = (0..36).map(|i| (i as f32 * 0.37).sin()).collect();
    let outputs = one_pixel.run(&x).unwrap();
    assert_eq!(outputs[0], x, "the pooled tensor is the input");
    let params = one_pixel.read_params().unwrap();
    let (weight, bias) = (
        params.get("head.weight").unwrap(),
        params.get("head.bias").unwrap(),
    );
    for (row, logits) in outputs[1].chunks(5).enumerate() {
        for (j, &logit) in logits.iter().enumerate() {
            let expected: f64 = bias[j] as f64
                + (0..12)
                    .map(|k| x[row * 12 + k] as f64 * weight[k * 5 + j] as f64)
                    .sum::<f64>();
            assert!(
                (logit as f64 - expected).abs() <= 1e-5 * (1.0 + expected.abs()),
                "{row} {j}: {logit} against {expected}"
            );
        }
    }
}
