//! Throughput measurement behind `mobilenet bench`: warm-up, then the median of timed
//! batches, from GPU timestamps where the adapter has them.

use crate::gpu::Gpu;
use crate::graph::{MemoryReport, ParamStore};
use crate::model::{MobileNetV1Config, Preset};
use anyhow::Context;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub preset: Preset,
    pub batch: usize,
    pub resolution: usize,
    pub alpha: f32,
    pub classes: usize,
    pub warmup: usize,
    pub iters: usize,
    /// Also time every dispatch on its own (needs timestamp queries).
    pub profile: bool,
}

impl BenchOptions {
    /// The network measured: the preset at the given width, resolution and classes.
    pub fn config(&self) -> MobileNetV1Config {
        MobileNetV1Config {
            alpha: self.alpha,
            resolution: self.resolution,
            classes: self.classes,
            ..MobileNetV1Config::preset(self.preset)
        }
    }
}

/// One dispatch of a per-step profile.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ProfileRow {
    pub step: String,
    pub ms: f64,
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
    /// 2 x mult-adds / time (x3 for training: forward, input and weight gradients).
    pub gflops: f64,
    /// Median wall-clock per batch including upload and read-back.
    pub wall_ms_per_batch: f64,
    pub timing: &'static str,
    pub mult_adds_per_image: u64,
    /// Everything the plan allocated on the GPU.
    pub memory_bytes: u64,
    /// Activation buffers as planned (dead tensors' buffers reused).
    pub activation_bytes: u64,
    /// The largest set of activations alive at once: the floor for `activation_bytes`.
    pub activation_live_peak_bytes: u64,
    pub adapter: String,
    pub backend: String,
    /// The kernels chosen among alternatives and on how many dispatches each ran, e.g.
    /// {"tiled-64x64": 20, "vec4": 81}: GEMM kernels by tile, depthwise and batch-norm
    /// passes by vec4 or scalar accesses.
    pub chosen_kernels: std::collections::BTreeMap<String, usize>,
    /// Every dispatch in execution order with the kernel it ran (`Plan::kernels`).
    pub kernels: Vec<String>,
    /// What choosing the kernels cost while the measured plans were compiled.
    pub tuning: TuningReport,
    pub dispatches: usize,
    /// Per-dispatch GPU times in execution order, with `--profile`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<ProfileRow>,
    /// `--mode train --data`: mean time per step spent waiting for the loader's next batch
    /// (0 when decoding keeps ahead of the GPU).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_wait_ms_per_batch: Option<f64>,
    /// `--mode train` under `mpirun`: this rank's share of the data-parallel steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_parallel: Option<DataParallelReport>,
}

/// How the kernels were chosen and what it cost.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TuningReport {
    /// `MOBILENET_TUNE`'s setting: on (measure), off, cached or the forced kernel.
    pub choice: String,
    /// Shapes whose candidates were timed now.
    pub timed_shapes: usize,
    /// Shapes whose choice came from the cache.
    pub cached_shapes: usize,
    pub seconds: f64,
    pub cache: Option<String>,
}

impl TuningReport {
    /// What tuning cost `gpu` since `before`.
    pub fn since(gpu: &Gpu, before: crate::gpu::TuningStats) -> TuningReport {
        let now = gpu.tuning_stats();
        TuningReport {
            choice: gpu.kernel_choice().to_string(),
            timed_shapes: now.timed - before.timed,
            cached_shapes: now.reused - before.reused,
            seconds: now.seconds - before.seconds,
            cache: gpu.tuning_cache().map(|p| p.display().to_string()),
        }
    }
}

/// The kernel names in brackets of step labels, counted.
fn count_kernels(kernels: &[String]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for label in kernels {
        if let Some(start) = label.rfind(" [") {
            let name = label[start + 2..].trim_end_matches(']');
            *counts.entry(name.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// Where a rank's data-parallel training step went, per step (means over the timed steps).
#[derive(Clone, Debug, serde::Serialize)]
pub struct DataParallelReport {
    pub rank: usize,
    pub ranks: usize,
    pub bucket_bytes: u64,
    /// From the step's start until the last gradient bucket left the GPU.
    pub compute_ms: f64,
    /// Time with at least one gradient sum on its way.
    pub communication_ms: f64,
    /// Share of `communication_ms` that overlapped the backward pass.
    pub hidden_fraction: f64,
    /// Gradient bytes each rank contributes per step.
    pub gradient_bytes: u64,
}

impl DataParallelReport {
    fn new(
        replicas: &dyn crate::graph::Replicas,
        bucket_bytes: u64,
        total: crate::graph::StepTiming,
        steps: usize,
    ) -> DataParallelReport {
        let per_step = |d: Duration| ms(d) / steps.max(1) as f64;
        DataParallelReport {
            rank: replicas.rank(),
            ranks: replicas.count(),
            bucket_bytes,
            compute_ms: per_step(total.compute),
            communication_ms: per_step(total.communication),
            hidden_fraction: total.hidden.as_secs_f64()
                / total.communication.as_secs_f64().max(1e-12),
            gradient_bytes: total.gradient_bytes / steps.max(1) as u64,
        }
    }
}

fn profile_rows(rows: Vec<(String, Duration)>) -> Vec<ProfileRow> {
    rows.into_iter()
        .map(|(step, time)| ProfileRow { step, ms: ms(time) })
        .collect()
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

/// Normalised-looking input for timing: uniform in [-1, 1).
fn random_input(rng: &mut impl Rng, shape: &[usize]) -> Vec<f32> {
    (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Benchmarks inference of a randomly initialised MobileNet V1.
pub fn bench_infer(gpu: &Gpu, options: &BenchOptions) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(options.iters > 0, "--iters must be at least 1");
    let config = options.config();
    // Measured as predict and eval run: batchnorm folded into the convolutions.
    let summary = config.build(1)?.summary();
    let params = ParamStore::initialize(&config.build(1)?.graph, 1);
    let before = gpu.tuning_stats();
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

/// Wall-clock and GPU times (ms) of `options.iters` runs after `options.warmup` untimed ones.
fn time_plan(
    plan: &crate::graph::Plan,
    input: &[f32],
    options: &BenchOptions,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    for _ in 0..options.warmup {
        plan.run(input)?;
    }
    let mut wall = Vec::new();
    let mut device = Vec::new();
    for _ in 0..options.iters {
        let (_, timing) = plan.run_timed(input)?;
        wall.push(ms(timing.wall));
        if let Some(t) = timing.gpu {
            device.push(ms(t));
        }
    }
    Ok((wall, device))
}

/// Times the pointwise GEMM alone on every 1x1 convolution shape of the network (the
/// shapes 95% of its mult-adds run on): one single-op plan per distinct shape. The report's
/// time is the sum over the network's 13 pointwise layers for one batch, so its GFLOP/s is
/// the device's GEMM rate on MobileNet's shapes, the ceiling for `--mode infer`; `profile`
/// lists each shape.
pub fn bench_gemm(gpu: &Gpu, options: &BenchOptions) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(options.iters > 0, "--iters must be at least 1");
    let model = options.config().build(options.batch)?;
    let shapes = pointwise_shapes(&model.graph)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let before = gpu.tuning_stats();
    let mut kernels = Vec::new();
    let (mut wall_total, mut device_total) = (0.0, Some(0.0));
    let (mut mult_adds, mut memory, mut profile) = (0u64, MemoryReport::default(), Vec::new());
    for ((input_shape, out_channels), count) in &shapes {
        let timed = time_pointwise(gpu, options, &mut rng, input_shape, *out_channels)?;
        kernels.extend(timed.kernels);
        let ms = timed.gpu_ms.unwrap_or(timed.wall_ms);
        let [n, h, w, k] = [0, 1, 2, 3].map(|d| input_shape[d]);
        profile.push(ProfileRow {
            step: format!(
                "{}x{k} . {k}x{out_channels} (x{count}): {:.2} GFLOP/s",
                n * h * w,
                2.0 * timed.mult_adds as f64 / (ms / 1e3) / 1e9
            ),
            ms,
        });
        wall_total += timed.wall_ms * *count as f64;
        device_total = device_total
            .zip(timed.gpu_ms)
            .map(|(t, g)| t + g * *count as f64);
        mult_adds += timed.mult_adds * *count as u64;
        if timed.memory.total() > memory.total() {
            memory = timed.memory;
        }
    }
    let summary = crate::model::Summary {
        mult_adds: mult_adds / options.batch.max(1) as u64,
        ..model.summary()
    };
    let mut report = report(
        "gemm",
        &BenchOptions {
            iters: 1,
            ..options.clone()
        },
        &summary,
        1.0,
        vec![wall_total],
        device_total.into_iter().collect(),
        memory,
        gpu,
        (kernels, TuningReport::since(gpu, before)),
    );
    report.iters = options.iters;
    // One dispatch per pointwise layer; `kernels` lists each distinct shape once.
    report.dispatches = shapes.iter().map(|(_, count)| count).sum();
    report.profile = profile;
    Ok(report)
}

/// A pointwise layer's (input shape, output channels).
type GemmShape = (Vec<usize>, usize);

/// The network's distinct pointwise shapes, each with how many layers have it, in network
/// order.
fn pointwise_shapes(graph: &crate::graph::GraphBuilder) -> anyhow::Result<Vec<(GemmShape, usize)>> {
    use crate::ops::OpKind;
    let mut shapes: Vec<(GemmShape, usize)> = Vec::new();
    for node in graph.nodes() {
        if let OpKind::Pointwise(op) = &node.kind {
            let key = (graph.shape(node.input)?.to_vec(), op.out_channels);
            match shapes.iter_mut().find(|(k, _)| *k == key) {
                Some((_, count)) => *count += 1,
                None => shapes.push((key, 1)),
            }
        }
    }
    Ok(shapes)
}

/// One pointwise shape timed alone in a single-op plan.
struct TimedGemm {
    wall_ms: f64,
    /// None without timestamps for every iteration.
    gpu_ms: Option<f64>,
    mult_adds: u64,
    memory: MemoryReport,
    kernels: Vec<String>,
}

fn time_pointwise(
    gpu: &Gpu,
    options: &BenchOptions,
    rng: &mut rand::rngs::StdRng,
    input_shape: &[usize],
    out_channels: usize,
) -> anyhow::Result<TimedGemm> {
    use crate::graph::GraphBuilder;
    use crate::ops::Pointwise;
    let mut g = GraphBuilder::new();
    let x = g.input("x", input_shape);
    let op = Pointwise {
        out_channels,
        fused: None,
    };
    let y = g.pointwise("pw", x, op)?;
    g.output(y)?;
    let plan = g.compile(gpu)?;
    plan.load_params(&ParamStore::initialize(&g, 1))?;
    let input = random_input(rng, input_shape);
    let (wall, device) = time_plan(&plan, &input, options)?;
    let gpu_ms = (device.len() == options.iters)
        .then(|| median(device))
        .filter(|&t| t > 0.0);
    Ok(TimedGemm {
        wall_ms: median(wall),
        gpu_ms,
        mult_adds: (input_shape.iter().product::<usize>() * out_channels) as u64,
        memory: plan.memory(),
        kernels: plan.kernels(),
    })
}

/// Medians and derived rates; `passes` is the work per image in forward passes.
#[allow(clippy::too_many_arguments)]
fn report(
    mode: &'static str,
    options: &BenchOptions,
    summary: &crate::model::Summary,
    passes: f64,
    wall: Vec<f64>,
    device: Vec<f64>,
    memory: MemoryReport,
    gpu: &Gpu,
    (kernels, tuning): (Vec<String>, TuningReport),
) -> BenchReport {
    let wall_ms = median(wall);
    // Some drivers report zero-length passes when they do not really time them.
    let gpu_ms = (device.len() == options.iters)
        .then(|| median(device))
        .filter(|&t| t > 0.0);
    let ms_per_batch = gpu_ms.unwrap_or(wall_ms);
    let flops = 2.0 * passes * summary.mult_adds as f64 * options.batch as f64;
    BenchReport {
        mode,
        preset: options.preset.to_string(),
        batch: options.batch,
        resolution: options.resolution,
        alpha: options.alpha,
        classes: options.classes,
        iters: options.iters,
        ms_per_batch,
        images_per_sec: options.batch as f64 / (ms_per_batch / 1e3),
        gflops: flops / (ms_per_batch / 1e3) / 1e9,
        wall_ms_per_batch: wall_ms,
        timing: if gpu_ms.is_some() {
            "gpu-timestamps"
        } else {
            "wall-clock"
        },
        mult_adds_per_image: summary.mult_adds,
        memory_bytes: memory.total(),
        activation_bytes: memory.activations,
        activation_live_peak_bytes: memory.activations_live_peak,
        adapter: gpu.adapter().name.clone(),
        backend: gpu.adapter().backend.clone(),
        chosen_kernels: count_kernels(&kernels),
        dispatches: kernels.len(),
        kernels,
        tuning,
        profile: Vec::new(),
        data_wait_ms_per_batch: None,
        data_parallel: None,
    }
}

/// Benchmarks training steps (forward, loss, backward, RMSProp update) of a randomly
/// initialised MobileNet V1 on random inputs, or on batches from `data` (the training
/// view, decoded on the loader's threads), timing how long each step waited for its batch.
/// With several `replicas` (under mpirun) every step averages the gradients over them in
/// buckets of `bucket_bytes`, and the report says where each rank's step time went.
pub fn bench_train(
    gpu: &Gpu,
    options: &BenchOptions,
    (stem_stride, in_channels): (usize, usize),
    data: Option<(crate::data::DataSource, crate::data::LoaderOptions)>,
    (replicas, bucket_bytes): (&dyn crate::graph::Replicas, u64),
) -> anyhow::Result<BenchReport> {
    use crate::graph::StepTiming;
    anyhow::ensure!(options.iters > 0, "--iters must be at least 1");
    let config = MobileNetV1Config {
        stem_stride,
        in_channels,
        ..options.config()
    };
    let model = config.build(options.batch)?;
    let before = gpu.tuning_stats();
    let plan = bench_train_plan(gpu, &model.graph, replicas.count(), bucket_bytes)?;
    let tuning = TuningReport::since(gpu, before);
    let step = |images: &[f32], labels: &[u32]| -> anyhow::Result<Option<StepTiming>> {
        Ok(match replicas.count() {
            1 => plan.step(images, labels, 1e-3).map(|_| None)?,
            _ => Some(plan.step_replicated(images, labels, 1e-3, replicas)?),
        })
    };
    let mut feed = BatchFeed::new(plan.input_shape(), options, data)?;
    for _ in 0..options.warmup {
        let batch = feed.next()?;
        step(feed.images(&batch), feed.labels(&batch))?;
    }
    feed.waited = Duration::ZERO;
    let (mut wall, mut device) = (Vec::new(), Vec::new());
    let mut exchanged = StepTiming::default();
    for _ in 0..options.iters {
        let batch = feed.next()?;
        let start = std::time::Instant::now();
        if let Some(timing) = step(feed.images(&batch), feed.labels(&batch))? {
            exchanged += timing;
        }
        wall.push(ms(start.elapsed()));
        if let Some(t) = plan.last_gpu_time()? {
            device.push(ms(t));
        }
    }
    // A training step costs about three forward passes (forward, input and weight gradients).
    let kernels = (plan.kernels(), tuning);
    let memory = plan.memory();
    let summary = model.summary();
    let mut report = report(
        "train", options, &summary, 3.0, wall, device, memory, gpu, kernels,
    );
    if options.profile {
        let (input, labels) = (&feed.random_images, &feed.random_labels);
        report.profile = profile_rows(plan.profile(gpu, input, labels, 1e-3)?);
    }
    if feed.loader.is_some() {
        report.data_wait_ms_per_batch = Some(ms(feed.waited) / options.iters as f64);
    }
    if replicas.count() > 1 {
        let dp = DataParallelReport::new(replicas, bucket_bytes, exchanged, options.iters);
        report.data_parallel = Some(dp);
    }
    Ok(report)
}

/// The training plan the benchmark steps: RMSProp as the paper trains, gradients averaged
/// in buckets when there are several replicas.
fn bench_train_plan(
    gpu: &Gpu,
    graph: &crate::graph::GraphBuilder,
    replicas: usize,
    bucket_bytes: u64,
) -> anyhow::Result<crate::graph::TrainPlan> {
    use crate::graph::{ParamBuffers, TrainConfig, TrainPlan};
    use crate::ops::UpdateRule;
    let params = std::sync::Arc::new(ParamBuffers::new(gpu, graph)?);
    let train = TrainConfig {
        update: Some(UpdateRule::RmspropTf {
            decay: 0.9,
            momentum: 0.9,
            eps: 1.0,
        }),
        gradient_bucket_bytes: (replicas > 1).then_some(bucket_bytes),
        ..Default::default()
    };
    Ok(TrainPlan::compile(graph, gpu, params, &train)?)
}

/// Where the benchmark's batches come from: the loader, timing each wait for a batch, or
/// one fixed random batch, borrowed rather than copied every step.
struct BatchFeed {
    loader: Option<crate::data::BatchLoader>,
    waited: Duration,
    random_images: Vec<f32>,
    random_labels: Vec<u32>,
}

impl BatchFeed {
    fn new(
        input_shape: &[usize],
        options: &BenchOptions,
        data: Option<(crate::data::DataSource, crate::data::LoaderOptions)>,
    ) -> anyhow::Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let random_images = random_input(&mut rng, input_shape);
        let random_labels = (0..options.batch)
            .map(|_| rng.random_range(0..options.classes as u32))
            .collect();
        let loader = match data {
            Some((source, loader_options)) => {
                Some(crate::data::BatchLoader::new(source, loader_options, 0)?)
            }
            None => None,
        };
        Ok(BatchFeed {
            loader,
            waited: Duration::ZERO,
            random_images,
            random_labels,
        })
    }

    /// The loader's next batch, timing the wait; `None` steps on the random batch.
    fn next(&mut self) -> anyhow::Result<Option<crate::data::Batch>> {
        let Some(loader) = self.loader.as_mut() else {
            return Ok(None);
        };
        let start = Instant::now();
        let batch = loader.next().context(
            "the data ran out before the timed steps did; lower --iters or use more images",
        )??;
        self.waited += start.elapsed();
        Ok(Some(batch))
    }

    fn images<'a>(&'a self, batch: &'a Option<crate::data::Batch>) -> &'a [f32] {
        batch.as_ref().map_or(&self.random_images, |b| &b.images)
    }

    fn labels<'a>(&'a self, batch: &'a Option<crate::data::Batch>) -> &'a [u32] {
        batch.as_ref().map_or(&self.random_labels, |b| &b.labels)
    }
}

/// `bench --mode data`: the loader alone (read, decode, transform, normalise into batches).
#[derive(Clone, Debug, serde::Serialize)]
pub struct DataBenchReport {
    pub loader: String,
    /// "train" (RandomResizedCrop + flip) or "eval" (resize + centre crop).
    pub transform: String,
    pub workers: usize,
    pub batch: usize,
    pub resolution: usize,
    pub images: usize,
    pub seconds: f64,
    pub images_per_sec: f64,
    /// Files that could not be decoded (skipped).
    pub bad_files: usize,
    /// The process's peak resident memory (Linux), to show it does not grow with the data set.
    pub peak_rss_mb: Option<f64>,
}

/// Times `batches` batches of `source` (all of one epoch when `None`) after `warmup` untimed
/// ones, which also start the worker threads.
pub fn bench_data(
    source: crate::data::DataSource,
    options: crate::data::LoaderOptions,
    warmup: usize,
    batches: Option<usize>,
) -> anyhow::Result<DataBenchReport> {
    let transform = if options.augment.random_resized_crop.is_some() {
        "train"
    } else {
        "eval"
    };
    let mut report = DataBenchReport {
        loader: format!("mobilenet-wgpu {}", env!("CARGO_PKG_VERSION")),
        transform: transform.to_string(),
        workers: options.worker_count(),
        batch: options.batch_size,
        resolution: options.resolution,
        images: 0,
        seconds: 0.0,
        images_per_sec: 0.0,
        bad_files: 0,
        peak_rss_mb: None,
    };
    let mut loader = crate::data::BatchLoader::new(source, options, 0)?;
    for batch in loader.by_ref().take(warmup) {
        batch?;
    }
    let started = Instant::now();
    for batch in loader.take(batches.unwrap_or(usize::MAX)) {
        let batch = batch?;
        report.images += batch.count;
        report.bad_files += batch.bad.len();
    }
    report.seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.images > 0,
        "no batches left to time after {warmup} warm-up batches; use a larger data set or --warmup 0"
    );
    report.images_per_sec = report.images as f64 / report.seconds.max(1e-9);
    report.peak_rss_mb = peak_rss_mb();
    Ok(report)
}

/// `VmHWM` of /proc/self/status: the most resident memory this process has held.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// What `mobilenet tune` did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TuneReport {
    pub adapter: String,
    pub tuning: TuningReport,
    pub plans: Vec<TunedPlan>,
}

/// One compiled plan's GEMM dispatches, each with the kernel it will run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TunedPlan {
    /// "train, batch 32" or "infer, batch 32".
    pub plan: String,
    pub kernels: Vec<String>,
}

/// Which plans `tune` compiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunePlans {
    /// Training steps (and the evaluation during training, whose GEMMs are the same).
    pub train: bool,
    /// Batch-norm-folded inference: predict, bench --mode infer.
    pub infer: bool,
}

/// Compiles the network's plans at every batch size, which times each GEMM shape the cache
/// does not know yet on this adapter and saves the fastest kernels: what the first run at
/// these shapes would otherwise spend.
pub fn tune(
    gpu: &Gpu,
    config: &MobileNetV1Config,
    batches: &[usize],
    which: TunePlans,
) -> anyhow::Result<TuneReport> {
    use crate::graph::{ParamBuffers, TrainConfig, TrainPlan};
    use std::sync::Arc;
    anyhow::ensure!(
        gpu.kernel_choice() == crate::gpu::KernelChoice::Measure,
        "tuning times kernels, but MOBILENET_TUNE={} says not to; unset it",
        gpu.kernel_choice()
    );
    anyhow::ensure!(!batches.is_empty(), "give at least one --batch");
    let before = gpu.tuning_stats();
    let mut plans = Vec::new();
    let gemms = |kernels: Vec<String>| -> Vec<String> {
        kernels.into_iter().filter(|k| k.ends_with(']')).collect()
    };
    for &batch in batches {
        if which.train {
            let model = config.build(batch)?;
            let params = Arc::new(ParamBuffers::new(gpu, &model.graph)?);
            let plan = TrainPlan::compile(&model.graph, gpu, params, &TrainConfig::default())?;
            plans.push(TunedPlan {
                plan: format!("train, batch {batch}"),
                kernels: gemms(plan.kernels()),
            });
        }
        if which.infer {
            let params = ParamStore::initialize(&config.build(1)?.graph, 1);
            let plan = config.inference_plan(gpu, &params, batch)?;
            plans.push(TunedPlan {
                plan: format!("infer, batch {batch}"),
                kernels: gemms(plan.kernels()),
            });
        }
    }
    gpu.save_tuning()?;
    Ok(TuneReport {
        adapter: gpu.adapter().name.clone(),
        tuning: TuningReport::since(gpu, before),
        plans,
    })
}
