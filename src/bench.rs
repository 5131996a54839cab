//! Throughput measurement behind `mobilenet bench`: warm-up, then the median of timed
//! batches, from GPU timestamps where the adapter has them.

use crate::gpu::Gpu;
use crate::graph::ParamStore;
use crate::model::{MobileNetV1Config, Preset};
use rand::{Rng, SeedableRng};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub preset: Preset,
    pub batch: usize,
    pub resolution: usize,
    pub alpha: f32,
    pub classes: usize,
    pub warmup: usize,
    pub iters: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct BenchReport {
    pub mode: &'static str,
    pub preset: String,
    pub batch: usize,
    pub resolution: usize,
    pub alpha: f32,
    pub classes: usize,
    pub iters: usize,
    /// Median per batch: GPU time where timestamps exist, else wall-clock.
    pub ms_per_batch: f64,
    pub images_per_sec: f64,
    /// 2 x mult-adds / time.
    pub gflops: f64,
    /// Median wall-clock per batch including upload and read-back.
    pub wall_ms_per_batch: f64,
    pub timing: &'static str,
    pub mult_adds_per_image: u64,
    /// Everything the plan allocated on the GPU.
    pub memory_bytes: u64,
    pub activation_bytes: u64,
    pub adapter: String,
    pub backend: String,
    pub dispatches: usize,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Benchmarks inference of a randomly initialised MobileNet V1.
pub fn bench_infer(gpu: &Gpu, options: &BenchOptions) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(options.iters > 0, "--iters must be at least 1");
    let config = MobileNetV1Config {
        alpha: options.alpha,
        resolution: options.resolution,
        classes: options.classes,
        ..MobileNetV1Config::preset(options.preset)
    };
    let model = config.build(options.batch)?;
    let summary = model.summary();
    let plan = model.graph.compile(gpu)?;
    plan.load_params(&ParamStore::initialize(&model.graph, 1))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let input: Vec<f32> = (0..plan.input_shape().iter().product::<usize>())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    for _ in 0..options.warmup {
        plan.run(&input)?;
    }
    let mut wall = Vec::new();
    let mut device = Vec::new();
    for _ in 0..options.iters {
        let (_, timing) = plan.run_timed(&input)?;
        wall.push(ms(timing.wall));
        if let Some(t) = timing.gpu {
            device.push(ms(t));
        }
    }
    let wall_ms = median(wall);
    // Some drivers report zero-length passes when they do not really time them.
    let gpu_ms = (device.len() == options.iters)
        .then(|| median(device))
        .filter(|&t| t > 0.0);
    let ms_per_batch = gpu_ms.unwrap_or(wall_ms);
    let images_per_sec = options.batch as f64 / (ms_per_batch / 1e3);
    let flops = 2.0 * summary.mult_adds as f64 * options.batch as f64;
    Ok(BenchReport {
        mode: "infer",
        preset: options.preset.to_string(),
        batch: options.batch,
        resolution: options.resolution,
        alpha: options.alpha,
        classes: options.classes,
        iters: options.iters,
        ms_per_batch,
        images_per_sec,
        gflops: flops / (ms_per_batch / 1e3) / 1e9,
        wall_ms_per_batch: wall_ms,
        timing: if gpu_ms.is_some() {
            "gpu-timestamps"
        } else {
            "wall-clock"
        },
        mult_adds_per_image: summary.mult_adds,
        memory_bytes: plan.memory().total(),
        activation_bytes: plan.memory().activations,
        adapter: gpu.adapter().name.clone(),
        backend: gpu.adapter().backend.clone(),
        dispatches: plan.dispatch_count(),
    })
}
