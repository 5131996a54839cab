//! The `mobilenet` command line: parses arguments and calls the library.

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use mobilenet_wgpu::bench::{bench_infer, BenchOptions};
use mobilenet_wgpu::gpu::{list_adapters, INSTALL_HINT};
use mobilenet_wgpu::{Activation, Gpu, MobileNetV1Config, Padding, Preset};

#[derive(Parser)]
#[command(
    name = "mobilenet",
    version,
    about = "MobileNet V1 on wgpu compute shaders"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters wgpu can see (honours WGPU_BACKEND).
    Devices {
        #[arg(long)]
        json: bool,
    },
    /// Print the layer table: output shapes, parameters and mult-adds.
    Summary {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        json: bool,
    },
    /// Measure throughput on the selected adapter.
    Bench {
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
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchMode {
    Infer,
}

#[derive(Args)]
struct ModelArgs {
    /// paper (ReLU, symmetric padding), timm (ReLU6), keras (ReLU6, TF SAME padding).
    #[arg(long, default_value = "paper")]
    preset: Preset,
    /// Width multiplier.
    #[arg(long, default_value_t = 1.0)]
    alpha: f32,
    #[arg(long, default_value_t = 224)]
    resolution: usize,
    #[arg(long, default_value_t = 1000)]
    classes: usize,
    /// 3 for RGB, 1 for grayscale.
    #[arg(long, default_value_t = 3)]
    in_channels: usize,
    #[arg(long, default_value_t = 2)]
    stem_stride: usize,
    /// Override the preset's activation: none, relu, relu6.
    #[arg(long)]
    activation: Option<Activation>,
    /// Override the preset's padding: symmetric or same.
    #[arg(long)]
    padding: Option<Padding>,
    /// Override the preset's batch-norm epsilon.
    #[arg(long)]
    bn_eps: Option<f32>,
}

impl ModelArgs {
    fn config(&self) -> MobileNetV1Config {
        let preset = MobileNetV1Config::preset(self.preset);
        MobileNetV1Config {
            alpha: self.alpha,
            resolution: self.resolution,
            classes: self.classes,
            in_channels: self.in_channels,
            stem_stride: self.stem_stride,
            activation: self.activation.unwrap_or(preset.activation),
            padding: self.padding.unwrap_or(preset.padding),
            bn_eps: self.bn_eps.unwrap_or(preset.bn_eps),
        }
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Devices { json } => {
            let adapters = list_adapters();
            anyhow::ensure!(!adapters.is_empty(), "no GPU adapter found; {INSTALL_HINT}");
            if json {
                println!("{}", serde_json::to_string_pretty(&adapters)?);
            } else {
                for a in adapters {
                    println!(
                        "{} [{}; {}; {}]\n  max_storage_buffer_binding_size {} MiB, max_buffer_size {} MiB, \
                         workgroup invocations {}, workgroup storage {} KiB, timestamps {}",
                        a.name,
                        a.backend,
                        a.device_type,
                        a.driver,
                        a.max_storage_buffer_binding_size >> 20,
                        a.max_buffer_size >> 20,
                        a.max_compute_invocations_per_workgroup,
                        a.max_compute_workgroup_storage_size >> 10,
                        a.timestamp_queries
                    );
                }
            }
        }
        Command::Summary { model, json } => {
            let summary = model.config().build(1)?.summary();
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{summary}");
            }
        }
        Command::Bench {
            mode: BenchMode::Infer,
            batch,
            model,
            warmup,
            iters,
            json,
        } => {
            let gpu = Gpu::new()?;
            let options = BenchOptions {
                preset: model.preset,
                batch,
                resolution: model.resolution,
                alpha: model.alpha,
                classes: model.classes,
                warmup,
                iters,
            };
            let report = bench_infer(&gpu, &options).context("benchmark failed")?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "infer  batch {}  res {}  alpha {}  on {} ({})\n  {:.2} ms/batch ({})  {:.1} images/s  \
                     {:.2} GFLOP/s  wall {:.2} ms/batch  GPU memory {:.1} MiB  dispatches {}",
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
                    report.dispatches
                );
            }
        }
    }
    Ok(())
}
