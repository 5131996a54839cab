//! What a benchmark measures and reports: its options, the report `mobilenet bench` prints
//! (as text or JSON), and the medians and rates derived from the timed batches.

use crate::gpu::{Gpu, Precompiled, TuningStats};
use crate::graph::MemoryReport;
use crate::model::{MobileNetV1Config, Preset};
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
    /// For a software adapter, the CPU it ran on (`AdapterSummary::host_cpu`): the same
    /// lavapipe runs several times faster on one CPU than on another.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_cpu: Option<String>,
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
    /// `--mode train`: dispatches and bytes read and written per training step, per phase
    /// and in all, counted from the plan's bindings (not measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<crate::graph::TrainTraffic>,
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
    /// Entry points compiled ahead of their first dispatch (`Gpu::precompile`).
    pub compiled_ahead: Precompiled,
}

/// Where tuning and compiling stood when a measurement began (`TuningReport::since`).
#[derive(Clone, Copy, Debug)]
pub struct TuningStart {
    tuning: TuningStats,
    compiled: Precompiled,
}

impl TuningReport {
    pub fn start(gpu: &Gpu) -> TuningStart {
        TuningStart {
            tuning: gpu.tuning_stats(),
            compiled: gpu.compiled_ahead(),
        }
    }

    /// What choosing and compiling kernels cost `gpu` since `before`.
    pub fn since(gpu: &Gpu, before: TuningStart) -> TuningReport {
        let now = gpu.tuning_stats();
        let compiled = gpu.compiled_ahead();
        TuningReport {
            choice: gpu.kernel_choice().to_string(),
            timed_shapes: now.timed - before.tuning.timed,
            cached_shapes: now.reused - before.tuning.reused,
            seconds: now.seconds - before.tuning.seconds,
            cache: gpu.tuning_cache().map(|p| p.display().to_string()),
            compiled_ahead: Precompiled {
                here: compiled.here - before.compiled.here,
                on_helpers: compiled.on_helpers - before.compiled.on_helpers,
                seconds: compiled.seconds - before.compiled.seconds,
            },
        }
    }
}

/// The kernel names in brackets of step labels, counted.
pub(super) fn count_kernels(kernels: &[String]) -> std::collections::BTreeMap<String, usize> {
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
    pub(super) fn new(
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

/// Medians and derived rates; `passes` is the work per image in forward passes.
#[allow(clippy::too_many_arguments)]
pub(super) fn report(
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
        host_cpu: gpu.adapter().host_cpu.clone(),
        chosen_kernels: count_kernels(&kernels),
        dispatches: kernels.len(),
        kernels,
        tuning,
        profile: Vec::new(),
        data_wait_ms_per_batch: None,
        data_parallel: None,
        traffic: None,
    }
}

pub(super) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
