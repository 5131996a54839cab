//! Compiling entry points ahead on helper devices (`Gpu::precompile`), on the real
//! adapter: on a software Vulkan adapter (lavapipe) with two or more cores each entry point
//! not yet compiled is compiled once, here or on a helper, none twice, and `bench` reports
//! it; `MOBILENET_COMPILE_THREADS=1` keeps everything on the plan's device. That plans
//! compiled after it compute the right results is every other GPU test's part (every plan's
//! kernels are compiled this way).

mod common;

use mobilenet_wgpu::gpu::{KernelChoice, Precompiled, Shader};
use std::process::Command;

/// Cheap entry points to compile, one of them twice.
const ENTRIES: [(Shader, &str); 6] = [
    (Shader::Reduce, "column_partial"),
    (Shader::Reduce, "sum_partials"),
    (Shader::Reduce, "sum_partials4"),
    (Shader::Pool, "forward"),
    (Shader::Pool, "backward"),
    (Shader::Reduce, "sum_partials"),
];
const DISTINCT: usize = 5;

/// Whether this machine's adapter takes helpers: a software Vulkan one, with two or more
/// cores.
fn helpers_expected(software_vulkan: bool) -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    software_vulkan && cores >= 2
}

#[test]
fn precompile_shares_entry_points_between_this_device_and_helpers_once() {
    let gpu = common::open_gpu(KernelChoice::Defaults, None);
    let first = gpu.precompile(&ENTRIES);
    let software = gpu.adapter().device_type == "Cpu";
    if helpers_expected(software && gpu.backend() == wgpu::Backend::Vulkan) {
        assert_eq!(first.here + first.on_helpers, DISTINCT, "{first:?}");
        assert!(first.here >= 1 && first.on_helpers >= 1, "{first:?}");
        assert!(first.seconds > 0.0, "{first:?}");
    } else {
        assert_eq!(
            first,
            Precompiled::default(),
            "only software Vulkan adapters take helpers"
        );
    }
    assert_eq!(
        gpu.compiled_ahead(),
        first,
        "the device's total: this one call"
    );
    let again = gpu.precompile(&ENTRIES);
    assert_eq!(again, Precompiled::default(), "nothing is compiled twice");
    for (shader, entry) in ENTRIES {
        gpu.pipeline(shader, entry)
            .expect("the precompiled pipeline");
    }
}

/// `mobilenet bench --json` on a small inference plan, the kernels fixed (no timing).
fn small_bench() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mobilenet"));
    command
        .args([
            "bench",
            "--mode",
            "infer",
            "--batch",
            "2",
            "--resolution",
            "32",
        ])
        .args(["--alpha", "0.25", "--warmup", "1", "--iters", "1", "--json"])
        .env("MOBILENET_TUNE", "off")
        .env_remove("MOBILENET_COMPILE_THREADS");
    command
}

/// `bench --json`'s `tuning.compiled_ahead` for a small inference plan, with
/// `MOBILENET_COMPILE_THREADS` set to `threads` where given, and whether the adapter is a
/// software one (the report names its host CPU) through Vulkan.
fn bench_compiled_ahead(threads: Option<&str>) -> (serde_json::Value, bool) {
    let mut command = small_bench();
    if let Some(threads) = threads {
        command.env("MOBILENET_COMPILE_THREADS", threads);
    }
    let output = command.output().expect("run the mobilenet binary");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");
    let software = report["host_cpu"].is_string() && report["backend"] == "Vulkan";
    (report["tuning"]["compiled_ahead"].clone(), software)
}

#[test]
fn a_compile_thread_count_that_is_no_number_is_refused_with_the_fix() {
    let output = small_bench()
        .env("MOBILENET_COMPILE_THREADS", "two")
        .output()
        .expect("run the mobilenet binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("MOBILENET_COMPILE_THREADS=\"two\" is not a number"),
        "{stderr}"
    );
}

#[test]
fn bench_reports_the_entry_points_compiled_ahead_and_one_thread_turns_helpers_off() {
    let (alone, _) = bench_compiled_ahead(Some("1"));
    assert_eq!(alone["here"], 0, "{alone}");
    assert_eq!(alone["on_helpers"], 0, "{alone}");
    let (shared, software) = bench_compiled_ahead(None);
    if helpers_expected(software) {
        assert!(shared["here"].as_u64().unwrap() >= 1, "{shared}");
        assert!(shared["on_helpers"].as_u64().unwrap() >= 1, "{shared}");
    } else {
        assert_eq!(shared["on_helpers"], 0, "{shared}");
    }
}
