//! `bench --mode gemm`: the pointwise GEMM alone on each of the network's 1x1 shapes.

use super::report::median;
use super::report::{report, BenchOptions, BenchReport, ProfileRow, TuningReport};
use super::timing::{random_input, time_plan};
use crate::gpu::Gpu;
use crate::graph::{MemoryReport, ParamStore};
use rand::SeedableRng;

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
    let before = TuningReport::start(gpu);
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
