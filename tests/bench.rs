//! `mobilenet bench --json` reports the fields scripts rely on (values are not timed
//! against thresholds here: a shared machine may be slow), among them the kernels compiled
//! ahead on helper devices and `MOBILENET_COMPILE_THREADS`'s effect on them.

use std::process::Command;

/// `mobilenet bench --json` on a small inference plan (batch 2, 32x32, width 0.25), the
/// kernels fixed: tuning has its own tests (tests/tuning.rs); these read the report.
fn small_bench(iters: &str) -> Command {
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
        .args([
            "--alpha", "0.25", "--warmup", "1", "--iters", iters, "--json",
        ])
        .env("MOBILENET_TUNE", "off")
        .env_remove("MOBILENET_COMPILE_THREADS");
    command
}

/// The report of a run that must succeed.
fn report_of(command: &mut Command) -> serde_json::Value {
    let output = command.output().expect("run the mobilenet binary");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object on stdout")
}

#[test]
fn bench_json_has_the_documented_fields() {
    let report = report_of(&mut small_bench("3"));
    for key in [
        "mode",
        "batch",
        "resolution",
        "alpha",
        "ms_per_batch",
        "images_per_sec",
        "gflops",
        "memory_bytes",
        "adapter",
    ] {
        assert!(report.get(key).is_some(), "missing {key} in {report}");
    }
    assert_eq!(report["mode"], "infer");
    assert_eq!(report["batch"], 2);
    assert!(report["ms_per_batch"].as_f64().unwrap() > 0.0);
    assert!(report["memory_bytes"].as_u64().unwrap() > 0);
    // Which kernel ran per dispatch, and how they were chosen.
    let kernels = report["kernels"].as_array().expect("kernels");
    assert_eq!(kernels.len() as u64, report["dispatches"].as_u64().unwrap());
    let chosen: u64 = report["chosen_kernels"]
        .as_object()
        .expect("chosen_kernels")
        .values()
        .map(|count| count.as_u64().unwrap())
        .sum();
    let bracketed = kernels
        .iter()
        .filter(|k| k.as_str().unwrap().ends_with(']'))
        .count();
    assert!(chosen > 0 && chosen == bracketed as u64, "{report}");
    assert_eq!(report["tuning"]["choice"], "off", "{report}");
    // A software adapter's figures hold for the CPU it ran on, which the report names.
    if report["adapter"].as_str().unwrap().contains("llvmpipe") {
        let cpu = report["host_cpu"].as_str().expect("host_cpu for lavapipe");
        assert!(cpu.contains("threads"), "{report}");
    }
}

#[test]
fn gemm_mode_times_every_pointwise_shape_of_the_network() {
    use mobilenet_wgpu::bench::{bench_gemm, BenchOptions};
    use mobilenet_wgpu::{Gpu, MobileNetV1Config, Preset};
    let gpu = Gpu::new().unwrap_or_else(|e| {
        panic!(
            "needs a wgpu adapter: {e}; on Debian: apt-get install libvulkan1 mesa-vulkan-drivers"
        )
    });
    let options = BenchOptions {
        preset: Preset::Paper,
        batch: 2,
        resolution: 32,
        alpha: 0.25,
        classes: 10,
        warmup: 0,
        iters: 1,
        profile: false,
    };
    let report = bench_gemm(&gpu, &options).expect("gemm bench");
    assert_eq!(report.mode, "gemm");
    assert_eq!(report.dispatches, 13, "one GEMM per pointwise layer");
    // Blocks 7-11 share one shape: 9 distinct shapes.
    assert_eq!(report.profile.len(), 9);
    let summary = MobileNetV1Config {
        alpha: 0.25,
        resolution: 32,
        classes: 10,
        ..MobileNetV1Config::preset(Preset::Paper)
    }
    .build(1)
    .unwrap()
    .summary();
    let pointwise = summary.mult_adds_of("PointwiseConv2d");
    assert_eq!(report.mult_adds_per_image, pointwise);
    assert!(report.gflops > 0.0 && report.ms_per_batch > 0.0);
}

#[test]
fn int8_inference_is_benchmarked_and_says_so() {
    let output = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args([
            "bench",
            "--mode",
            "infer",
            "--int8",
            "--batch",
            "2",
            "--resolution",
            "32",
            "--alpha",
            "0.25",
            "--classes",
            "10",
            "--warmup",
            "1",
            "--iters",
            "2",
            "--json",
        ])
        .env("MOBILENET_TUNE", "off")
        .output()
        .expect("run the mobilenet binary");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");
    assert_eq!(report["mode"], "infer-int8");
    assert_eq!(
        (report["batch"].as_u64(), report["classes"].as_u64()),
        (Some(2), Some(10))
    );
    assert!(report["ms_per_batch"].as_f64().unwrap() > 0.0);
    assert!(report["memory_bytes"].as_u64().unwrap() > 0);
    let kernels = report["kernels"].as_array().expect("kernels");
    assert_eq!(kernels.len() as u64, report["dispatches"].as_u64().unwrap());
    let labels: Vec<&str> = kernels.iter().filter_map(|k| k.as_str()).collect();
    // Every layer runs an int8 kernel (the logits' softmax is float), labelled with the
    // kernel chosen where there were alternatives: at this width the depthwise layers of
    // 16 channels or more load 16 at a time by default.
    assert!(
        labels
            .iter()
            .all(|k| k.contains("_int8.wgsl") || k.contains("softmax")),
        "{labels:?}"
    );
    assert!(
        labels
            .iter()
            .any(|k| k.contains("depthwise_int8_x16.wgsl:forward_3x3") && k.ends_with("[vec4]")),
        "{labels:?}"
    );
    assert!(report["chosen_kernels"]["vec4"].as_u64().unwrap_or(0) > 0);
    // --int8 is an inference option.
    let train = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args(["bench", "--mode", "train", "--int8"])
        .output()
        .expect("run the mobilenet binary");
    assert!(!train.status.success());
    assert!(String::from_utf8_lossy(&train.stderr).contains("--mode infer only"));
}

/// `bench --json`'s `tuning.compiled_ahead` for a small inference plan, with
/// `MOBILENET_COMPILE_THREADS` set to `threads` where given, and whether the adapter is a
/// software one (the report names its host CPU) through Vulkan.
fn bench_compiled_ahead(threads: Option<&str>) -> (serde_json::Value, bool) {
    let mut command = small_bench("1");
    if let Some(threads) = threads {
        command.env("MOBILENET_COMPILE_THREADS", threads);
    }
    let report = report_of(&mut command);
    let software = report["host_cpu"].is_string() && report["backend"] == "Vulkan";
    (report["tuning"]["compiled_ahead"].clone(), software)
}

#[test]
fn a_compile_thread_count_that_is_no_number_is_refused_with_the_fix() {
    let output = small_bench("1")
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
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if software && cores >= 2 {
        assert!(shared["here"].as_u64().unwrap() >= 1, "{shared}");
        assert!(shared["on_helpers"].as_u64().unwrap() >= 1, "{shared}");
    } else {
        assert_eq!(shared["on_helpers"], 0, "{shared}");
    }
}
