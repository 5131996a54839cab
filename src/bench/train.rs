//! `bench --mode train`: training steps on random batches or on the loader's, with the
//! wait for data and, under mpirun, where each rank's step time went.

use super::report::ms;
use super::report::{report, BenchOptions, BenchReport, DataParallelReport, TuningReport};
use super::timing::{profile_rows, random_input};
use crate::gpu::Gpu;
use crate::model::MobileNetV1Config;
use anyhow::Context;
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};

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
    let before = TuningReport::start(gpu);
    let plan = bench_train_plan(gpu, &model.graph, replicas.count(), bucket_bytes)?;
    let tuning = TuningReport::since(gpu, before);
    let step = |images: &[f32], labels: &[u32]| -> anyhow::Result<Option<StepTiming>> {
        Ok(match replicas.count() {
            1 => plan.step(images, labels, 1e-3).map(|_| None)?,
            _ => Some(plan.step_replicated(images, labels, 1e-3, replicas)?),
        })
    };
    let mut feed = BatchFeed::new(plan.input_shape(), options, data)?;
    let times = timed_steps(&mut feed, &plan, options, &step)?;
    // A training step costs about three forward passes (forward, input and weight gradients).
    let kernels = (plan.kernels(), tuning);
    let memory = plan.memory();
    let summary = model.summary();
    let (wall, device) = (times.wall, times.device);
    let mut report = report(
        "train", options, &summary, 3.0, wall, device, memory, gpu, kernels,
    );
    report.traffic = Some(plan.traffic());
    if options.profile {
        let (input, labels) = (&feed.random_images, &feed.random_labels);
        report.profile = profile_rows(plan.profile(gpu, input, labels, 1e-3)?);
    }
    if feed.loader.is_some() {
        report.data_wait_ms_per_batch = Some(ms(feed.waited) / options.iters as f64);
    }
    if replicas.count() > 1 {
        let dp = DataParallelReport::new(replicas, bucket_bytes, times.exchanged, options.iters);
        report.data_parallel = Some(dp);
    }
    Ok(report)
}

/// Wall and GPU milliseconds of each timed step, and what the gradient exchange took over
/// all of them.
struct StepTimes {
    wall: Vec<f64>,
    device: Vec<f64>,
    exchanged: crate::graph::StepTiming,
}

type StepFn<'a> = dyn Fn(&[f32], &[u32]) -> anyhow::Result<Option<crate::graph::StepTiming>> + 'a;

/// `options.warmup` untimed steps, then `options.iters` timed ones; the feed's wait for
/// data counts from the first timed step.
fn timed_steps(
    feed: &mut BatchFeed,
    plan: &crate::graph::TrainPlan,
    options: &BenchOptions,
    step: &StepFn<'_>,
) -> anyhow::Result<StepTimes> {
    for _ in 0..options.warmup {
        let batch = feed.next()?;
        step(feed.images(&batch), feed.labels(&batch))?;
    }
    feed.waited = Duration::ZERO;
    let mut times = StepTimes {
        wall: Vec::new(),
        device: Vec::new(),
        exchanged: Default::default(),
    };
    for _ in 0..options.iters {
        let batch = feed.next()?;
        let start = Instant::now();
        if let Some(timing) = step(feed.images(&batch), feed.labels(&batch))? {
            times.exchanged += timing;
        }
        times.wall.push(ms(start.elapsed()));
        if let Some(t) = plan.last_gpu_time()? {
            times.device.push(ms(t));
        }
    }
    Ok(times)
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
