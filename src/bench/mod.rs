//! Throughput measurement behind `mobilenet bench` and `mobilenet tune`: warm-up, then the
//! median of timed batches, from GPU timestamps where the adapter has them.
//!
//! Files: `report` (options, the report and its rates), `timing` (helpers), one file per
//! mode (`infer`, `train`, `gemm`, `data`) and `tune`.

mod data;
mod gemm;
mod infer;
mod report;
mod timing;
mod train;
mod tune;

pub use data::{bench_data, DataBenchReport};
pub use gemm::bench_gemm;
pub use infer::{bench_infer, bench_infer_int8, random_int8_model};
pub use report::{BenchOptions, BenchReport, DataParallelReport, ProfileRow, TuningReport};
pub use train::bench_train;
pub use tune::{tune, TunePlans, TuneReport, TunedPlan};
