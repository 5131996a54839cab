//! `bench --mode infer`: the batch-norm-folded network as predict and eval run it.

use super::report::{report, BenchOptions, BenchReport, TuningReport};
use super::timing::{profile_rows, random_input, time_plan};
use crate::gpu::Gpu;
use crate::graph::ParamStore;
use rand::SeedableRng;

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
