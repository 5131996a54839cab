//! `mobilenet tune`: compile the plans a run would, so the kernel cache holds their
//! choices before the first run needs them.

use super::report::TuningReport;
use crate::gpu::Gpu;
use crate::graph::ParamStore;
use crate::model::MobileNetV1Config;

/// What `mobilenet tune` did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TuneReport {
    pub adapter: String,
    /// For a software adapter, the CPU it ran on: the timings hold for that CPU only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_cpu: Option<String>,
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
    let before = TuningReport::start(gpu);
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
        host_cpu: gpu.adapter().host_cpu.clone(),
        tuning: TuningReport::since(gpu, before),
        plans,
    })
}
