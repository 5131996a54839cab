//! Kernel tuning on the real adapter: forced kernels are the ones that run, measured choices
//! are cached per adapter and reused without timing, a damaged cache is replaced, and
//! `MOBILENET_TUNE=off` keeps the defaults. That every candidate computes the right result
//! is the golden and gradient tests' part (they run each one, see `common::kernel_devices`).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use mobilenet_wgpu::gpu::{KernelChoice, TunedKernel};
use mobilenet_wgpu::graph::{ParamBuffers, TrainConfig, TrainPlan};
use mobilenet_wgpu::ops::ACCESS_KERNELS;
use mobilenet_wgpu::{Gpu, MobileNetV1Config};

/// The kernel names in brackets of a plan's steps of one shader family ("gemm",
/// "depthwise", "bn_act"), e.g. "tiled-64x64".
fn chosen(kernels: &[String], family: &str) -> Vec<String> {
    kernels
        .iter()
        .filter(|label| label.contains(&format!(" {family}")))
        .filter_map(|label| {
            let start = label.rfind('[')?;
            Some(label[start + 1..label.len() - 1].to_string())
        })
        .collect()
}

/// A MobileNet 0.25 training plan at 32x32: forward, dX and dW GEMMs of many shapes.
fn train_kernels(gpu: &Gpu) -> Vec<String> {
    let config = MobileNetV1Config {
        alpha: 0.25,
        resolution: 32,
        classes: 10,
        ..Default::default()
    };
    let model = config.build(4).expect("build");
    let params = Arc::new(ParamBuffers::new(gpu, &model.graph).expect("params"));
    let plan =
        TrainPlan::compile(&model.graph, gpu, params, &TrainConfig::default()).expect("compile");
    plan.kernels()
}

fn read_cache(path: &std::path::Path) -> BTreeMap<String, TunedKernel> {
    let text = std::fs::read_to_string(path).expect("the cache file was written");
    let file: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    serde_json::from_value(file["choices"].clone()).expect("choices")
}

#[test]
fn forced_kernels_are_the_ones_that_run() {
    for (device, name) in common::kernel_devices() {
        let kernels = train_kernels(device);
        let (forced, others) = if ACCESS_KERNELS.contains(&name) {
            (["depthwise", "bn_act"], ["gemm"])
        } else {
            (["gemm", "gemm"], ["depthwise"])
        };
        for family in forced {
            let names = chosen(&kernels, family);
            assert!(!names.is_empty(), "no {family} step in {kernels:?}");
            assert!(
                names.contains(&name.to_string()),
                "forced {name}, {family} ran {names:?}"
            );
        }
        // A forced kernel runs wherever it is a candidate: everywhere, except that the wide
        // subgroup tiles have entries for vec4 operands only, only the blocked, 16x32
        // and 32x32 subgroup GEMMs have the entry points that leave batch norm's statistics
        // or sums (`*_stats`, `*_sums`), and the whole-row lanes have only those and the
        // weight gradient, all for narrow GEMMs (in this network blocks.1.pw's three, 8
        // channels to 16); other steps run the default.
        for label in kernels
            .iter()
            .filter(|l| l.contains(&format!(" {}", forced[0])))
        {
            let ran = chosen(std::slice::from_ref(label), forced[0]);
            let entry = label.split_whitespace().nth(1).unwrap_or_default();
            let with_batch_norm =
                forced[0] == "gemm" && (entry.ends_with("_stats") || entry.ends_with("_sums"));
            let narrow = forced[0] == "gemm" && label.starts_with("blocks.1.pw ");
            let lacks_entry = (name == "subgroup-32x64" && !label.contains("gemm_vec4"))
                || (name == "subgroup-rows" && !narrow)
                || (with_batch_norm
                    && ![
                        "blocked-8x8",
                        "subgroup-16x32",
                        "subgroup-32x32",
                        "subgroup-rows",
                    ]
                    .contains(&name));
            let expected = if lacks_entry {
                common::gemm_kernels(device)[0]
            } else {
                name
            };
            assert_eq!(ran, [expected], "forced {name}: {label}");
        }
        // Where the forced kernel is no candidate, the default runs.
        for family in others {
            let names = chosen(&kernels, family);
            let default = names.first().cloned().unwrap_or_default();
            assert!(names.iter().all(|n| *n == default), "{family}: {names:?}");
        }
    }
}

#[test]
fn measured_choices_are_cached_and_reused_without_timing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kernels.json");
    let first = common::open_gpu(KernelChoice::Measure, Some(path.clone()));
    let kernels = train_kernels(&first);
    let stats = first.tuning_stats();
    println!("first compile: {stats:?}");
    assert!(stats.timed > 0, "nothing was timed: {stats:?}");
    let cache = read_cache(&path);
    assert_eq!(cache.len(), stats.timed, "one entry per shape timed");
    for family in ["gemm ", "depthwise ", "batchnorm "] {
        assert!(
            cache.keys().any(|k| k.starts_with(family)),
            "no {family}shape was tuned"
        );
    }
    for (key, tuned) in &cache {
        let offered = if key.starts_with("gemm ") {
            common::gemm_kernels_for_key(&first, key)
        } else if key.starts_with("depthwise ") {
            common::timed_depthwise_kernels(&first)
        } else {
            common::batchnorm_kernels_for_key(&first, key)
        };
        let timed: Vec<&str> = tuned.micros.keys().map(String::as_str).collect();
        assert!(
            offered.iter().all(|k| timed.contains(k)),
            "{key}: timed {timed:?}, offered {offered:?}"
        );
        // The fastest, or the default (offered first) within 10% of it.
        let fastest = tuned.micros.values().copied().fold(f64::INFINITY, f64::min);
        let default_time = tuned.micros[offered[0]];
        let expected = if default_time <= fastest * 1.1 {
            offered[0].to_string()
        } else {
            let winner = tuned.micros.iter().find(|(_, &us)| us == fastest);
            winner.map(|(k, _)| k.clone()).unwrap_or_default()
        };
        assert_eq!(tuned.kernel, expected, "{key}: {tuned:?}");
        assert!(
            tuned.micros.values().all(|&us| us > 0.0),
            "{key}: {tuned:?}"
        );
    }
    // Every step runs one of the winners.
    let winners: Vec<&str> = cache.values().map(|t| t.kernel.as_str()).collect();
    assert!(chosen(&kernels, "")
        .iter()
        .all(|k| winners.contains(&k.as_str())));

    let second = common::open_gpu(KernelChoice::Measure, Some(path.clone()));
    let again = train_kernels(&second);
    let stats = second.tuning_stats();
    println!("second compile: {stats:?}");
    assert_eq!(stats.timed, 0, "the cache was not used: {stats:?}");
    assert!(stats.reused > 0);
    assert_eq!(
        again, kernels,
        "the cached choices differ from the measured ones"
    );
}

#[test]
fn a_damaged_cache_is_measured_again_and_replaced() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kernels.json");
    std::fs::write(&path, b"{ not json").expect("write");
    let gpu = common::open_gpu(KernelChoice::Measure, Some(path.clone()));
    train_kernels(&gpu);
    assert!(gpu.tuning_stats().timed > 0);
    assert_eq!(read_cache(&path).len(), gpu.tuning_stats().timed);
}

#[test]
fn tuning_off_keeps_the_defaults_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kernels.json");
    let gpu = common::open_gpu(KernelChoice::Defaults, Some(path.clone()));
    let kernels = train_kernels(&gpu);
    let names = chosen(&kernels, "gemm");
    let default = common::gemm_kernels(&gpu)[0];
    assert!(names.iter().all(|n| n == default), "{names:?}");
    let names = chosen(&kernels, "depthwise");
    let default = common::depthwise_kernels(&gpu)[0];
    assert!(names.iter().all(|n| n == default), "{names:?}");
    assert_eq!(gpu.tuning_stats().timed, 0);
    assert!(
        !path.exists(),
        "MOBILENET_TUNE=off wrote {}",
        path.display()
    );
}

fn mobilenet_tune(cache: &std::path::Path, tune: Option<&str>) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mobilenet"));
    command
        .args([
            "tune",
            "--alpha",
            "0.25",
            "--resolution",
            "32",
            "--classes",
            "10",
        ])
        .args(["--batch", "2,3", "--json"])
        .env("XDG_CACHE_HOME", cache);
    // XDG_CACHE_HOME also moves the driver's cache of compiled shaders (Mesa's), and
    // lavapipe compiling every kernel afresh made this test take 3.5 minutes instead of
    // seconds: keep the driver's cache where the other tests warm it.
    if let Some(home) = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache")))
    {
        command.env("MESA_SHADER_CACHE_DIR", home);
    }
    match tune {
        Some(value) => command.env("MOBILENET_TUNE", value),
        None => command.env_remove("MOBILENET_TUNE"),
    };
    command.output().expect("run the mobilenet binary")
}

#[test]
fn the_tune_command_fills_the_cache_that_later_runs_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = mobilenet_tune(dir.path(), None);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&first.stdout).expect("JSON");
    let timed = report["tuning"]["timed_shapes"].as_u64().expect("timed");
    assert!(timed > 0, "{report}");
    // Training and inference plans at both batches.
    let plans: Vec<&str> = report["plans"]
        .as_array()
        .expect("plans")
        .iter()
        .map(|p| p["plan"].as_str().unwrap())
        .collect();
    assert_eq!(
        plans,
        [
            "train, batch 2",
            "infer, batch 2",
            "train, batch 3",
            "infer, batch 3"
        ]
    );
    let cache = report["tuning"]["cache"].as_str().expect("a cache file");
    assert!(cache.starts_with(dir.path().to_str().unwrap()), "{cache}");
    assert_eq!(read_cache(std::path::Path::new(cache)).len() as u64, timed);

    let second = mobilenet_tune(dir.path(), None);
    let again: serde_json::Value = serde_json::from_slice(&second.stdout).expect("JSON");
    assert_eq!(again["tuning"]["timed_shapes"], 0, "{again}");
    assert_eq!(
        again["plans"], report["plans"],
        "other kernels from the cache"
    );
}

#[test]
fn the_tune_command_refuses_when_tuning_is_off_and_names_the_settings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let off = mobilenet_tune(dir.path(), Some("off"));
    assert!(!off.status.success());
    let stderr = String::from_utf8_lossy(&off.stderr);
    assert!(stderr.contains("MOBILENET_TUNE=off"), "{stderr}");
    let bogus = mobilenet_tune(dir.path(), Some("fastest"));
    assert!(!bogus.status.success());
    let stderr = String::from_utf8_lossy(&bogus.stderr);
    assert!(
        stderr.contains("\"fastest\"") && stderr.contains("tiled-64x64"),
        "{stderr}"
    );
    // (Mesa keeps its own shader cache there too.)
    assert!(!dir.path().join("mobilenet-wgpu").exists());
}
