//! `bench --mode data`: the loader alone, against which torchvision's is measured.

use std::time::Instant;

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
