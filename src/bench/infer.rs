//! `bench --mode infer`: the batch-norm-folded network as predict and eval run it.

use super::report::{ms, report, BenchOptions, BenchReport, TuningReport};
use super::timing::{profile_rows, random_input, time_plan};
use crate::data::{Normalize, Preprocess};
use crate::gpu::Gpu;
use crate::graph::ParamStore;
use crate::model::Int8Plan;
use crate::quant::{
    activation_tensors, quantize_with_ranges, CalibrationInfo, Method, QuantizedModel,
};
use crate::weights::{Naming, Pretrained};
use rand::SeedableRng;

/// Benchmarks inference of a randomly initialised MobileNet V1.
pub fn bench_infer(gpu: &Gpu, options: &BenchOptions) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(options.iters > 0, "--iters must be at least 1");
    let config = options.config();
    // Measured as predict and eval run: batchnorm folded into the convolutions.
    let summary = config.build(1)?.summary();
    let params = ParamStore::initialize(&config.build(1)?.graph, 1);
    let before = TuningReport::start(gpu);
    let plan = config.inference_plan(gpu, &params, options.batch)?;
    let tuning = TuningReport::since(gpu, before);
    let input = random_input(
        &mut rand::rngs::StdRng::seed_from_u64(7),
        plan.input_shape(),
    );
    let (wall, device) = time_plan(&plan, &input, options)?;
    let mut report = report(
        "infer",
        options,
        &summary,
        1.0,
        wall,
        device,
        plan.memory(),
        gpu,
        (plan.kernels(), tuning),
    );
    if options.profile {
        report.profile = profile_rows(plan.profile(gpu, &input)?);
    }
    Ok(report)
}

/// Benchmarks the int8 network of a file written by `mobilenet quantize` (its own width,
/// resolution and classes; `options` gives the batch and the repetitions) on random
/// images. Timed as float inference is: GPU time per batch where the adapter has
/// timestamps, and wall-clock (quantizing the input on the CPU, upload, the int8 dispatches
/// in one submit and the logits' readback).
pub fn bench_infer_int8(
    gpu: &Gpu,
    model: &QuantizedModel,
    options: &BenchOptions,
) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(options.iters > 0, "--iters must be at least 1");
    let config = &model.config;
    let summary = config.build(1)?.summary();
    let graph = config.build_folded(options.batch)?.graph;
    let before = TuningReport::start(gpu);
    let plan = Int8Plan::compile(gpu, &graph, model)?;
    let tuning = TuningReport::since(gpu, before);
    let shape = graph.shape(graph.inputs()[0])?.to_vec();
    let input = random_input(&mut rand::rngs::StdRng::seed_from_u64(7), &shape);
    for _ in 0..options.warmup {
        plan.run(&input)?;
    }
    let mut wall = Vec::with_capacity(options.iters);
    let mut device = Vec::with_capacity(options.iters);
    for _ in 0..options.iters {
        let (_, timing) = plan.run_timed(&input)?;
        wall.push(ms(timing.wall));
        device.extend(timing.gpu.map(ms));
    }
    let options = BenchOptions {
        resolution: config.resolution,
        alpha: config.alpha,
        classes: config.classes,
        ..options.clone()
    };
    let memory = plan.memory();
    let mut report = report(
        "infer-int8",
        &options,
        &summary,
        1.0,
        wall,
        device,
        memory,
        gpu,
        (plan.kernels(), tuning),
    );
    if options.profile {
        report.profile = profile_rows(plan.profile(gpu, &input)?);
    }
    Ok(report)
}

/// The random network of `options` in int8 for `bench --mode infer --int8`: its activation
/// ranges are fixed ([-1, 1] for the input, [0, 6] after each layer) instead of
/// calibrated, since the kernels' speed does not depend on them.
pub fn random_int8_model(options: &BenchOptions) -> anyhow::Result<QuantizedModel> {
    let config = options.config();
    let graph = config.build_folded(1)?.graph;
    let float = Pretrained {
        naming: Naming::Ours,
        params: ParamStore::initialize(&config.build(1)?.graph, 1),
        preprocess: Preprocess {
            resolution: config.resolution,
            crop_pct: 1.0,
            normalize: Normalize::symmetric(config.in_channels),
        },
        class_names: (0..config.classes).map(|c| c.to_string()).collect(),
        config,
    };
    let ranges: Vec<(String, (f64, f64))> = activation_tensors(&graph)?
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t.name, if i == 0 { (-1.0, 1.0) } else { (0.0, 6.0) }))
        .collect();
    let calibration = CalibrationInfo {
        method: Method::MinMax,
        images: 0,
    };
    Ok(quantize_with_ranges(&float, &ranges, calibration)?)
}
