//! `mobilenet export --format onnx`, checked by an independent runtime: the exported files run
//! in tract (sonos' pure-Rust ONNX runtime, which parses the protobuf with its own code) and
//! their outputs are compared with our GPU inference on the same input.
//!
//! Tolerance: the project's per-element relative one, |onnx - ours| <= 1e-4 * (|ours| +
//! rms(ours)) (see tests/common). Each case also prints the largest absolute difference
//! relative to the largest |logit|. Random weights with realistic batchnorm statistics
//! (`random_params`) at small resolutions keep the whole file CI-sized.

mod common;
mod tract_support;

use common::{gpu, random_params, relative_error, rng, uniform, OP_RTOL};
use mobilenet_wgpu::data::{Normalize, Preprocess};
use mobilenet_wgpu::graph::ParamStore;
use mobilenet_wgpu::predict::Classifier;
use mobilenet_wgpu::train::checkpoint::Checkpoint;
use mobilenet_wgpu::weights::{
    encode_onnx, export_onnx, fold_batchnorm, InputLayout, Naming, OnnxOptions, Pretrained,
};
use mobilenet_wgpu::{Activation, MobileNetV1Config, Preset};
use std::path::Path;
use tract_onnx::prelude::*;
use tract_support::{run_tract, softmax_rows, to_nchw, TypedRunnableModel};

/// Random weights for `config` as `load_pretrained` would return them.
fn pretrained(config: MobileNetV1Config, seed: u64) -> Pretrained {
    let graph = config.build(1).expect("graph").graph;
    Pretrained {
        naming: Naming::Ours,
        params: random_params(&graph, seed),
        preprocess: Preprocess {
            resolution: config.resolution,
            crop_pct: 0.875,
            normalize: Normalize::symmetric(config.in_channels),
        },
        class_names: (0..config.classes).map(|i| format!("class {i}")).collect(),
        config,
    }
}

fn config(preset: Preset, alpha: f32, resolution: usize, channels: usize) -> MobileNetV1Config {
    MobileNetV1Config {
        alpha,
        resolution,
        classes: 10,
        in_channels: channels,
        ..MobileNetV1Config::preset(preset)
    }
}

/// The exported model loaded by tract, batch left dynamic as the file declares it.
fn tract_model(path: &Path) -> (TypedRunnableModel, InferenceModel) {
    let inference = tract_onnx::onnx()
        .model_for_path(path)
        .unwrap_or_else(|e| panic!("tract cannot read {}: {e:?}", path.display()));
    let runnable = inference
        .clone()
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .unwrap_or_else(|e| panic!("tract cannot prepare {}: {e:?}", path.display()));
    (runnable, inference)
}

fn property(model: &InferenceModel, key: &str) -> String {
    model
        .properties
        .get(key)
        .unwrap_or_else(|| panic!("metadata {key} missing"))
        .to_plain_array_view::<String>()
        .expect("string property")
        .iter()
        .next()
        .expect("one string")
        .clone()
}

/// One exported file, run at batch 1 and 3 in tract and on our GPU; returns the largest
/// per-element relative error seen.
fn check_case(label: &str, config: MobileNetV1Config, options: OnnxOptions, seed: u64) -> f64 {
    let weights = pretrained(config.clone(), seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.onnx");
    let summary = export_onnx(&weights, &options, &path).expect("export");
    assert_eq!(
        summary.bytes as u64,
        std::fs::metadata(&path).expect("exported file").len()
    );
    let (model, inference) = tract_model(&path);
    assert_eq!(property(&inference, "onnx.producer_name"), "mobilenet-wgpu");
    assert_eq!(
        property(&inference, "onnx.metadata_props.input_layout"),
        options.input_layout.to_string()
    );
    let names: Vec<String> =
        serde_json::from_str(&property(&inference, "onnx.metadata_props.class_names"))
            .expect("class names as JSON");
    assert_eq!(names, weights.class_names);
    let (res, c, k) = (config.resolution, config.in_channels, config.classes);
    let mut worst = 0.0f64;
    for batch in [1, 3] {
        let nhwc = uniform(
            &mut rng(seed + batch as u64),
            batch * res * res * c,
            -1.0,
            1.0,
        );
        let ours_logits = Classifier::new(gpu(), &weights, batch, None)
            .expect("classifier")
            .logits(&nhwc)
            .expect("our inference");
        let (shape, input) = match options.input_layout {
            InputLayout::Nchw => ([batch, c, res, res], to_nchw(&nhwc, [batch, res, res, c])),
            InputLayout::Nhwc => ([batch, res, res, c], nhwc.clone()),
        };
        let theirs = run_tract(&model, &shape, &input);
        let ours = if options.softmax {
            softmax_rows(&ours_logits, k)
        } else {
            ours_logits.clone()
        };
        assert_eq!(theirs.len(), batch * k, "{label}: output size");
        let rms =
            (ours_logits.iter().map(|v| v * v).sum::<f32>() / ours_logits.len() as f32).sqrt();
        assert!(rms > 1e-2, "{label}: logits vanished (rms {rms})");
        let rel = relative_error(&theirs, &ours);
        let max_abs = theirs
            .iter()
            .zip(&ours)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let scale = ours.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        println!(
            "| {label} | batch {batch} | max |a-b|/(|b|+rms) {rel:.2e} | max |a-b|/max|b| {:.2e} |",
            max_abs / scale
        );
        assert!(
            rel <= OP_RTOL,
            "{label} batch {batch}: tract and our GPU differ by {rel:.3e} (tolerance {OP_RTOL:.0e})"
        );
        worst = worst.max(rel);
    }
    worst
}

const PLAIN: OnnxOptions = OnnxOptions {
    input_layout: InputLayout::Nchw,
    keep_bn: false,
    softmax: false,
};

#[test]
fn tract_matches_our_gpu_at_width_quarter() {
    let cases = [
        (
            "paper 0.25 32px RGB",
            config(Preset::Paper, 0.25, 32, 3),
            PLAIN,
        ),
        (
            "timm 0.25 64px grey keep-bn",
            config(Preset::Timm, 0.25, 64, 1),
            OnnxOptions {
                keep_bn: true,
                ..PLAIN
            },
        ),
        (
            "keras 0.25 32px RGB nhwc (SAME, even)",
            config(Preset::Keras, 0.25, 32, 3),
            OnnxOptions {
                input_layout: InputLayout::Nhwc,
                ..PLAIN
            },
        ),
        (
            "keras 0.25 33px grey softmax (SAME, odd)",
            config(Preset::Keras, 0.25, 33, 1),
            OnnxOptions {
                softmax: true,
                ..PLAIN
            },
        ),
        (
            "linear, stride-1 stem 0.25 16px RGB keep-bn",
            MobileNetV1Config {
                activation: Activation::None,
                stem_stride: 1,
                ..config(Preset::Paper, 0.25, 16, 3)
            },
            OnnxOptions {
                keep_bn: true,
                ..PLAIN
            },
        ),
    ];
    for (i, (label, config, options)) in cases.into_iter().enumerate() {
        check_case(label, config, options, 100 + i as u64);
    }
}

#[test]
fn tract_matches_our_gpu_at_width_one() {
    let cases = [
        (
            "paper 1.0 32px grey",
            config(Preset::Paper, 1.0, 32, 1),
            PLAIN,
        ),
        (
            "timm 1.0 32px RGB softmax",
            config(Preset::Timm, 1.0, 32, 3),
            OnnxOptions {
                softmax: true,
                ..PLAIN
            },
        ),
        (
            "keras 1.0 31px RGB keep-bn nhwc (SAME, odd)",
            config(Preset::Keras, 1.0, 31, 3),
            OnnxOptions {
                input_layout: InputLayout::Nhwc,
                keep_bn: true,
                softmax: false,
            },
        ),
    ];
    for (i, (label, config, options)) in cases.into_iter().enumerate() {
        check_case(label, config, options, 200 + i as u64);
    }
}

/// The 1.0-224 ImageNet model: weights are nearly all of the file.
#[test]
fn full_size_model_is_its_weights() {
    let config = MobileNetV1Config::preset(Preset::Paper);
    let weights = pretrained(config.clone(), 1);
    let (bytes, summary) = encode_onnx(&weights, &PLAIN).expect("encode");
    let folded = fold_batchnorm(&weights.params, config.bn_eps).expect("fold");
    let parameters: usize = folded.iter().map(|(_, _, v)| v.len()).sum();
    assert_eq!(summary.parameters, parameters);
    let weight_bytes = 4 * parameters;
    let overhead = bytes.len() as f64 / weight_bytes as f64 - 1.0;
    println!(
        "1.0-224 paper, 1000 classes, BN folded: {} bytes for {parameters} parameters \
         ({weight_bytes} bytes of weights, overhead {:.3}%)",
        bytes.len(),
        100.0 * overhead
    );
    assert!(
        (0.0..0.01).contains(&overhead),
        "the file should be the weights plus under 1%: {} bytes for {weight_bytes}",
        bytes.len()
    );
}

fn mobilenet(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args(args)
        .output()
        .expect("run the mobilenet binary")
}

/// `mobilenet export --weights W --format F [extra...] --out OUT`.
fn export(weights: &Path, format: &str, extra: &[&str], out: &Path) -> std::process::Output {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "export".as_ref(),
        "--weights".as_ref(),
        weights.as_os_str(),
        "--format".as_ref(),
        format.as_ref(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    args.extend(["--out".as_ref(), out.as_os_str()]);
    mobilenet(&args)
}

/// A small checkpoint of ours on disk, for the command line.
fn saved_checkpoint(dir: &Path) -> (std::path::PathBuf, Pretrained) {
    let weights = pretrained(config(Preset::Timm, 0.25, 32, 3), 7);
    let checkpoint = Checkpoint {
        config: weights.config.clone(),
        params: weights.params.clone(),
        optimizer_state: ParamStore::new(),
        epoch: 1,
        step: 1,
        best_val_acc: None,
        normalize: weights.preprocess.normalize.clone(),
        crop_pct: weights.preprocess.crop_pct,
        class_names: weights.class_names.clone(),
        train_options: None,
    };
    let path = dir.join("weights.safetensors");
    checkpoint.save(&path).expect("save checkpoint");
    (path, weights)
}

#[test]
fn command_line_export_runs_in_tract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (weights_path, weights) = saved_checkpoint(dir.path());
    let out = dir.path().join("cli.onnx");
    let output = export(&weights_path, "onnx", &["--input-layout", "nhwc"], &out);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{stdout}");
    assert!(stdout.contains("[batch, 32, 32, 3]"), "{stdout}");
    // The command line writes what the library writes.
    let options = OnnxOptions {
        input_layout: InputLayout::Nhwc,
        ..PLAIN
    };
    let (bytes, _) = encode_onnx(&weights, &options).expect("encode");
    assert_eq!(std::fs::read(&out).expect("read export"), bytes);
    let (model, inference) = tract_model(&out);
    assert_eq!(
        property(&inference, "onnx.metadata_props.preset"),
        "timm".to_string()
    );
    let input = uniform(&mut rng(3), 2 * 32 * 32 * 3, -1.0, 1.0);
    let ours = Classifier::new(gpu(), &weights, 2, None)
        .expect("classifier")
        .logits(&input)
        .expect("our inference");
    let theirs = run_tract(&model, &[2, 32, 32, 3], &input);
    let rel = relative_error(&theirs, &ours);
    println!("| CLI timm 0.25 32px RGB nhwc | batch 2 | max |a-b|/(|b|+rms) {rel:.2e} |");
    assert!(rel <= OP_RTOL, "{rel}");
}

#[test]
fn export_refuses_unknown_formats_and_options_of_another_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (weights_path, _) = saved_checkpoint(dir.path());

    // clap lists the formats there are.
    let output = export(&weights_path, "tflite", &[], &dir.path().join("x.tflite"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("tflite") && stderr.contains("timm") && stderr.contains("onnx"),
        "{stderr}"
    );

    let out = dir.path().join("x.safetensors");
    let output = export(&weights_path, "timm", &["--keep-bn"], &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--keep-bn applies to --format onnx only"),
        "{stderr}"
    );
}

#[test]
fn export_into_a_missing_directory_says_so_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (weights_path, _) = saved_checkpoint(dir.path());
    let missing_dir = dir.path().join("no such dir");
    let output = export(&weights_path, "onnx", &[], &missing_dir.join("model.onnx"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("missing directory: {stderr}");
    assert!(!output.status.success());
    assert!(
        stderr.contains("no such dir") && stderr.contains("its directory must exist"),
        "{stderr}"
    );
    assert!(!missing_dir.exists(), "the export created {missing_dir:?}");
}

#[test]
fn a_failed_export_leaves_an_existing_file_as_it_was() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, weights) = saved_checkpoint(dir.path());
    let existing = dir.path().join("existing.onnx");
    std::fs::write(&existing, b"previous contents").expect("write");
    let unchanged = || std::fs::read(&existing).expect("read") == b"previous contents";

    // A tensor missing from the weights.
    let mut broken = weights.clone();
    let mut params = ParamStore::new();
    for (name, shape, values) in weights.params.iter() {
        if name != "blocks.7.pw.weight" {
            params.insert(name, shape.to_vec(), values.to_vec());
        }
    }
    broken.params = params;
    let err = export_onnx(&broken, &PLAIN, &existing)
        .expect_err("missing weights")
        .to_string();
    assert!(err.contains("blocks.7.pw.weight: missing"), "{err}");
    assert!(unchanged());

    // No weights file at all.
    let absent = dir.path().join("absent.safetensors");
    assert!(!export(&absent, "onnx", &[], &existing).status.success());
    assert!(unchanged());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // A successful export replaces it with a whole model.
    export_onnx(&weights, &PLAIN, &existing).expect("export over it");
    tract_model(&existing);
}
