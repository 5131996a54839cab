//! `mobilenet bench` and `mobilenet tune`: throughput, and the kernel choices it rests on.

use crate::args::{open_data, ModelArgs};
use anyhow::Context;
use clap::{Args, ValueEnum};
use mobilenet_wgpu::bench::{
    bench_data, bench_gemm, bench_infer, bench_infer_int8, bench_train, random_int8_model, tune,
    BenchOptions, BenchReport, DataBenchReport, TunePlans, TuneReport,
};
use mobilenet_wgpu::data::{Augment, DataSource, LoaderOptions, Normalize, RandomResizedCrop};
use mobilenet_wgpu::quant::QuantizedModel;
use mobilenet_wgpu::train::dataset::eval_loader_options;
use mobilenet_wgpu::train::{DataOptions, DatasetKind, Launch, DEFAULT_BUCKET_BYTES};
use mobilenet_wgpu::Gpu;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Measure throughput on the selected adapter.
#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value_t = BenchMode::Infer)]
    mode: BenchMode,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[command(flatten)]
    model: ModelArgs,
    /// Untimed batches before measuring.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Timed batches; the median is reported.
    #[arg(long, default_value_t = 10)]
    iters: usize,
    /// Also time every dispatch on its own (timestamp queries) and print the slowest.
    #[arg(long, visible_alias = "per-layer")]
    profile: bool,
    /// --mode data: the image folder or shards to read.
    #[arg(long)]
    data: Option<PathBuf>,
    /// --mode data: folder or shards (default: shards when --data names .tar files).
    #[arg(long)]
    dataset: Option<DatasetKind>,
    /// --mode data: decoding threads (default: cores - 1).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// --mode data: time the evaluation transform (resize + centre crop) instead of the
    /// training one (RandomResizedCrop + flip).
    #[arg(long)]
    eval: bool,
    /// --mode data: centre-crop fraction of the evaluation transform.
    #[arg(long, default_value_t = 0.875)]
    crop_pct: f32,
    /// --mode infer: an int8 file written by `mobilenet quantize`; its int8 network is
    /// measured (at the file's width, resolution and classes) instead of a float one.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// --mode infer: the same random network on the int8 kernels (activation ranges fixed,
    /// not calibrated: they do not change the speed).
    #[arg(long, conflicts_with = "weights")]
    int8: bool,
    /// --mode train under mpirun: gradient bucket size in MiB.
    #[arg(long, default_value_t = (DEFAULT_BUCKET_BYTES >> 20) as f64)]
    bucket_mb: f64,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchMode {
    Infer,
    Train,
    /// The pointwise GEMM alone, on the network's 1x1 convolution shapes.
    Gemm,
    /// The data loader alone on --data: images/s of read, decode, transform, normalise.
    Data,
}

/// Time the kernel candidates (GEMM tiles; vec4 or scalar depthwise and batch norm) on
/// this adapter for a network's shapes and cache the fastest per shape (what the first train, bench or predict at these shapes would
/// otherwise do); prints the kernel each layer will run. MOBILENET_TUNE=off skips tuning
/// everywhere.
#[derive(Args)]
pub struct TuneArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Batch sizes to tune for, comma-separated (each is its own set of shapes).
    #[arg(long, value_delimiter = ',', default_value = "32")]
    batch: Vec<usize>,
    /// The plans to tune: train (training and its evaluation), infer (predict, bench
    /// --mode infer) or both.
    #[arg(long, value_enum, default_value_t = TuneMode::Both)]
    mode: TuneMode,
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum TuneMode {
    Train,
    Infer,
    Both,
}

impl BenchArgs {
    pub fn run(self) -> anyhow::Result<()> {
        if let BenchMode::Data = self.mode {
            return self.run_data();
        }
        if (self.weights.is_some() || self.int8) && !matches!(self.mode, BenchMode::Infer) {
            anyhow::bail!("--weights (an int8 file) and --int8 are for --mode infer only");
        }
        // Under mpirun every rank benchmarks its own adapter (train: with the others).
        let launch = Launch::join()?;
        let gpu = launch.gpu(None)?;
        let model = &self.model;
        let options = BenchOptions {
            preset: model.preset,
            batch: self.batch,
            resolution: model.resolution,
            alpha: model.alpha,
            classes: model.classes,
            warmup: self.warmup,
            iters: self.iters,
            profile: self.profile,
        };
        let report = match self.mode {
            BenchMode::Infer => match &self.weights {
                Some(path) => bench_infer_int8(&gpu, &QuantizedModel::load(path)?, &options),
                None if self.int8 => {
                    bench_infer_int8(&gpu, &random_int8_model(&options)?, &options)
                }
                None => bench_infer(&gpu, &options),
            },
            BenchMode::Train => {
                let buckets = (
                    launch.replicas(),
                    (self.bucket_mb * (1 << 20) as f64) as u64,
                );
                let input = (model.stem_stride, model.in_channels);
                bench_train(&gpu, &options, input, self.train_data()?, buckets)
            }
            BenchMode::Gemm => bench_gemm(&gpu, &options),
            BenchMode::Data => unreachable!("handled above"),
        }
        .context("benchmark failed")?;
        print_bench(&report, self.json)
    }

    /// `--mode train --data`: the loader feeding the steps (none: synthetic batches).
    fn train_data(&self) -> anyhow::Result<Option<(DataSource, LoaderOptions)>> {
        let Some(path) = &self.data else {
            return Ok(None);
        };
        let input = (self.batch, self.model.resolution, self.model.in_channels);
        let options = data_bench_options(input, self.workers, None);
        Ok(Some((open_data(self.dataset, path)?, options)))
    }

    /// `--mode data`: the loader alone, no GPU.
    fn run_data(self) -> anyhow::Result<()> {
        let data = self
            .data
            .context("--mode data needs --data DIR (an image folder or shards)")?;
        let source = open_data(self.dataset, &data)?;
        let input = (self.batch, self.model.resolution, self.model.in_channels);
        let options = data_bench_options(input, self.workers, self.eval.then_some(self.crop_pct));
        let iters = (self.iters > 0).then_some(self.iters);
        let report = bench_data(source, options, self.warmup, iters)?;
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print_data_report(&report);
        }
        Ok(())
    }
}

impl TuneArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let gpu = Gpu::new()?;
        let which = TunePlans {
            train: !matches!(self.mode, TuneMode::Infer),
            infer: !matches!(self.mode, TuneMode::Train),
        };
        let report = tune(&gpu, &self.model.config(), &self.batch, which)?;
        print_tune(&report, self.json)
    }
}

/// The loader a data benchmark times: the training view (RandomResizedCrop + flip,
/// shuffled), or with `eval_crop_pct` the evaluation view.
fn data_bench_options(
    (batch, resolution, channels): (usize, usize, usize),
    workers: usize,
    eval_crop_pct: Option<f32>,
) -> LoaderOptions {
    let loading = DataOptions {
        workers,
        crop_pct: eval_crop_pct.unwrap_or(1.0),
        ..DataOptions::default()
    };
    let normalize = Normalize::symmetric(channels);
    let options = eval_loader_options(batch, (resolution, channels), &normalize, &loading);
    match eval_crop_pct {
        Some(_) => options,
        None => LoaderOptions {
            shuffle: true,
            drop_last: true,
            augment: Augment {
                hflip: true,
                random_resized_crop: Some(RandomResizedCrop::default()),
                ..Augment::default()
            },
            ..options
        },
    }
}

fn print_data_report(report: &DataBenchReport) {
    println!(
        "data  {} transform  {} workers  batch {}  res {}: {:.1} images/s ({} images in {:.2} s, {} bad files, peak RSS {:.0} MiB)",
        report.transform,
        report.workers,
        report.batch,
        report.resolution,
        report.images_per_sec,
        report.images,
        report.seconds,
        report.bad_files,
        report.peak_rss_mb.unwrap_or(f64::NAN)
    );
}

fn print_bench(report: &BenchReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    println!(
        "{}  batch {}  res {}  alpha {}  on {} ({})\n  {:.2} ms/batch ({})  {:.1} images/s  \
         {:.2} GFLOP/s  wall {:.2} ms/batch  GPU memory {:.1} MiB (activations {:.1} MiB, \
         live-tensor peak {:.1} MiB)  dispatches {}",
        report.mode,
        report.batch,
        report.resolution,
        report.alpha,
        report.adapter,
        report.backend,
        report.ms_per_batch,
        report.timing,
        report.images_per_sec,
        report.gflops,
        report.wall_ms_per_batch,
        report.memory_bytes as f64 / (1 << 20) as f64,
        report.activation_bytes as f64 / (1 << 20) as f64,
        report.activation_live_peak_bytes as f64 / (1 << 20) as f64,
        report.dispatches
    );
    if let Some(cpu) = &report.host_cpu {
        println!("  runs on {cpu}");
    }
    if let Some(traffic) = &report.traffic {
        println!("  {traffic}");
    }
    print_kernels(report);
    print_waits(report);
    if report.mode == "gemm" {
        for row in &report.profile {
            println!("  {:9.2} ms  {}", row.ms, row.step);
        }
    } else if !report.profile.is_empty() {
        print_profile(report);
    }
    Ok(())
}

/// Time spent waiting: on the loader, and with several ranks on each other.
fn print_waits(report: &BenchReport) {
    if let Some(wait) = report.data_wait_ms_per_batch {
        println!(
            "  waited {wait:.2} ms per step for the loader's next batch ({:.1}% of the step)",
            100.0 * wait / (wait + report.wall_ms_per_batch).max(1e-9)
        );
    }
    if let Some(dp) = &report.data_parallel {
        println!(
            "  rank {} of {}: compute {:.2} ms/step, gradient sums {:.2} ms/step, {:.0}% of them \
             hidden behind the backward pass; {:.2} MB of gradients per step in {:.1} MiB buckets",
            dp.rank,
            dp.ranks,
            dp.compute_ms,
            dp.communication_ms,
            100.0 * dp.hidden_fraction,
            dp.gradient_bytes as f64 / 1e6,
            dp.bucket_bytes as f64 / (1 << 20) as f64
        );
    }
}

fn print_tune(report: &TuneReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    if let Some(cpu) = &report.host_cpu {
        println!("{} runs on {cpu}", report.adapter);
    }
    for plan in &report.plans {
        println!("{} on {}:", plan.plan, report.adapter);
        for kernel in &plan.kernels {
            println!("  {kernel}");
        }
    }
    let tuning = &report.tuning;
    println!(
        "{} shapes timed in {:.2} s, {} reused (from the cache or a layer of the same shape); choices saved in {}",
        tuning.timed_shapes,
        tuning.seconds,
        tuning.cached_shapes,
        tuning
            .cache
            .as_deref()
            .unwrap_or("memory only (no HOME or XDG_CACHE_HOME)")
    );
    Ok(())
}

/// Which kernels ran, and what choosing them cost.
fn print_kernels(report: &BenchReport) {
    let kernels: Vec<String> = report
        .chosen_kernels
        .iter()
        .map(|(name, count)| format!("{name} x{count}"))
        .collect();
    let tuning = &report.tuning;
    let how = match tuning.choice.as_str() {
        "on" => format!(
            "tuned: {} shapes timed in {:.2} s, {} from the cache{}",
            tuning.timed_shapes,
            tuning.seconds,
            tuning.cached_shapes,
            tuning
                .cache
                .as_ref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        ),
        "off" => "MOBILENET_TUNE=off: the default kernels".to_string(),
        "cached" => format!(
            "MOBILENET_TUNE=cached: {} shapes from the cache, defaults elsewhere",
            tuning.cached_shapes
        ),
        forced => format!("MOBILENET_TUNE={forced}: forced"),
    };
    let ahead = &tuning.compiled_ahead;
    let compiled = if ahead.here + ahead.on_helpers > 0 {
        format!(
            "; compiled ahead: {} entry points ({} here, {} on helper devices) in {:.2} s",
            ahead.here + ahead.on_helpers,
            ahead.here,
            ahead.on_helpers,
            ahead.seconds
        )
    } else {
        String::new()
    };
    println!("  kernels: {}; {how}{compiled}", kernels.join(", "));
}

/// The slowest dispatches and the time per shader entry point.
fn print_profile(report: &BenchReport) {
    let total: f64 = report.profile.iter().map(|r| r.ms).sum();
    let mut by_entry: BTreeMap<String, (f64, usize)> = Default::default();
    for row in &report.profile {
        // "<op> <shader>:<entry> [<kernel>]": grouped from the shader on (an update step's
        // op name holds a space).
        let tokens: Vec<&str> = row.step.split(' ').collect();
        let at = tokens.iter().position(|t| t.contains(".wgsl")).unwrap_or(0);
        let entry = tokens[at..].join(" ");
        let slot = by_entry.entry(entry).or_default();
        slot.0 += row.ms;
        slot.1 += 1;
    }
    let mut entries: Vec<_> = by_entry.into_iter().collect();
    entries.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    println!(
        "profile: {total:.2} ms in {} dispatches (each in its own pass)",
        report.profile.len()
    );
    for (entry, (ms, count)) in entries {
        println!(
            "  {ms:9.2} ms {:5.1}%  {count:4}x  {entry}",
            100.0 * ms / total
        );
    }
    let mut slowest: Vec<_> = report.profile.iter().collect();
    slowest.sort_by(|a, b| b.ms.total_cmp(&a.ms));
    println!("slowest dispatches:");
    for row in slowest.iter().take(10) {
        println!("  {:9.2} ms  {}", row.ms, row.step);
    }
}
