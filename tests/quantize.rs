//! Post-training int8 quantization (issue 21 item 1): calibration on the GPU plan, the
//! scheme of INT8.md, the int8 file and its refusal where float weights are expected, and
//! `mobilenet quantize` end to end.

mod common;

use common::{random_params, small_fashion_model};
use mobilenet_wgpu::data::load_image;
use mobilenet_wgpu::data::{BatchLoader, DataSource, ImageSet, Normalize, FASHION_MNIST_CLASSES};
use mobilenet_wgpu::graph::ParamStore;
use mobilenet_wgpu::model::fold_batchnorm;
use mobilenet_wgpu::model::Int8Plan;
use mobilenet_wgpu::quant::{
    activation_tensors, calibrate, quantize, quantize_with_ranges, CalibrationInfo,
    CalibrationOptions, Method, QuantizedModel, WEIGHT_Q_MAX,
};
use mobilenet_wgpu::reference::{run_graph, run_int8_graph};
use mobilenet_wgpu::train::checkpoint::Checkpoint;
use mobilenet_wgpu::train::evaluate::{evaluate, evaluate_with, top1_agreement};
use mobilenet_wgpu::weights::{
    load_pretrained, load_safetensors, load_safetensors_raw, save_safetensors,
    save_safetensors_raw, Pretrained,
};
use mobilenet_wgpu::{MobileNetV1Config, Preset};
use rand::Rng;
use std::path::{Path, PathBuf};
use std::process::Command;

const INT8_REFUSAL: &str = "is an int8 file written by `mobilenet quantize`";

/// A float checkpoint of `config` with random weights and batch-norm statistics, written
/// as `train` writes one (weights only), and read back as every command reads it.
fn float_checkpoint(dir: &Path, config: &MobileNetV1Config, seed: u64) -> (PathBuf, Pretrained) {
    let graph = config.build(1).expect("a valid configuration").graph;
    let checkpoint = Checkpoint {
        config: config.clone(),
        params: random_params(&graph, seed),
        optimizer_state: ParamStore::new(),
        epoch: 1,
        step: 1,
        best_val_acc: None,
        normalize: Normalize::symmetric(config.in_channels),
        crop_pct: 1.0,
        class_names: (0..config.classes).map(|c| format!("class {c}")).collect(),
        train_options: None,
    };
    let path = dir.join("float.safetensors");
    checkpoint.save(&path).expect("save the float checkpoint");
    let pretrained = load_pretrained(&path).expect("load the float checkpoint");
    (path, pretrained)
}

/// `count` random 28x28 grey images in memory.
fn random_images(count: usize, seed: u64) -> DataSource {
    let mut rng = common::rng(seed);
    ImageSet {
        height: 28,
        width: 28,
        channels: 1,
        pixels: (0..count * 28 * 28).map(|_| rng.random::<u8>()).collect(),
        labels: (0..count as u32).map(|i| i % 10).collect(),
        class_names: FASHION_MNIST_CLASSES.map(String::from).to_vec(),
    }
    .into()
}

/// A quantized small network, calibrated on 20 random images, and its float weights.
fn small_quantized(dir: &Path, method: Method) -> (PathBuf, Pretrained, QuantizedModel) {
    let (path, float) = float_checkpoint(dir, &small_fashion_model(), 5);
    let options = CalibrationOptions {
        images: 20,
        batch_size: 8,
        ..CalibrationOptions::default()
    };
    let calibration =
        calibrate(common::gpu(), &float, random_images(20, 1), &options).expect("calibrate");
    assert_eq!(calibration.images, 20);
    let model = quantize(&float, &calibration, method).expect("quantize");
    (path, float, model)
}

/// `small_quantized` (min/max ranges) with its int8 file written beside the float one:
/// (float file, int8 file, the int8 model).
fn small_int8_file(dir: &Path) -> (PathBuf, PathBuf, QuantizedModel) {
    let (float_path, _, model) = small_quantized(dir, Method::MinMax);
    let path = dir.join("int8.safetensors");
    model.save(&path).unwrap();
    (float_path, path, model)
}

#[test]
fn minmax_ranges_are_the_float_activations_extremes() {
    let dir = tempfile::tempdir().unwrap();
    let (_, float) = float_checkpoint(dir.path(), &small_fashion_model(), 5);
    let images = 20;
    // Batches of 8 leave a short last batch: its padding must not count.
    let options = CalibrationOptions {
        images,
        batch_size: 8,
        ..CalibrationOptions::default()
    };
    let calibration = calibrate(common::gpu(), &float, random_images(images, 1), &options).unwrap();
    // The CPU reference on the same preprocessed images, every quantized tensor kept.
    let batch = BatchLoader::new(
        random_images(images, 1),
        float.preprocess.loader_options(images),
        0,
    )
    .unwrap()
    .next()
    .unwrap()
    .unwrap();
    let mut model = float.config.build_folded(images).unwrap();
    let tensors = activation_tensors(&model.graph).unwrap();
    for t in &tensors[1..] {
        model.graph.output(t.id).unwrap();
    }
    let folded = fold_batchnorm(&float.params, float.config.bn_eps).unwrap();
    let outputs = run_graph(&model.graph, &folded, &batch.images).unwrap();
    let extremes = |v: &[f32]| {
        v.iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            })
    };
    assert_eq!(calibration.tensors.len(), tensors.len());
    for (i, (name, stats)) in calibration.tensors.iter().enumerate() {
        assert_eq!(*name, tensors[i].name);
        let (lo, hi) = match i {
            0 => extremes(&batch.images),
            // Outputs: logits and probabilities first, then the marked tensors.
            _ => extremes(&outputs[i + 1].data),
        };
        let tolerance = 1e-4 * (hi.abs().max(lo.abs()) as f64 + 1e-3);
        assert_eq!(
            stats.count as usize,
            tensors[i].shape.iter().product::<usize>()
        );
        for (got, want, side) in [(stats.min, lo, "min"), (stats.max, hi, "max")] {
            assert!(
                (got as f64 - want as f64).abs() <= tolerance,
                "{name}: calibrated {side} {got}, the float network's is {want}"
            );
        }
        let (range_lo, range_hi) = Method::MinMax.range(stats);
        assert_eq!((range_lo, range_hi), (stats.min as f64, stats.max as f64));
        if i == 0 {
            assert_eq!((stats.min, stats.max), (lo, hi), "the input is exact");
        }
    }
}

#[test]
fn the_int8_file_round_trips_and_obeys_the_scheme() {
    let dir = tempfile::tempdir().unwrap();
    let (_, float, model) = small_quantized(dir.path(), Method::Percentile { percentile: 99.9 });
    let path = dir.path().join("int8.safetensors");
    model.save(&path).unwrap();
    let loaded = QuantizedModel::load(&path).unwrap();
    assert_eq!(loaded, model);
    assert_eq!(
        loaded.calibration,
        CalibrationInfo {
            method: Method::Percentile { percentile: 99.9 },
            images: 20
        }
    );

    // ReLU outputs (everything after a convolution, and the pool) sit on z = -128.
    for (name, params) in &loaded.activations {
        assert!(params.scale > 0.0 && params.scale.is_finite(), "{name}");
        if name != "image" {
            assert_eq!(params.zero_point, -128, "{name} follows a ReLU");
        }
    }
    let folded = fold_batchnorm(&float.params, float.config.bn_eps).unwrap();
    for layer in &loaded.layers {
        assert!(layer
            .weight_q
            .iter()
            .all(|&q| (q as i32).abs() <= WEIGHT_Q_MAX));
        let weights = folded.get(&format!("{}.weight", layer.name)).unwrap();
        let channels = layer.weight_scale.len();
        for (i, (&w, &d)) in weights.iter().zip(&layer.dequantized()).enumerate() {
            let s = layer.weight_scale[i % channels];
            assert!(
                (w - d).abs() <= s / 2.0 * 1.0001,
                "{}[{i}]: {w} -> {d}",
                layer.name
            );
        }
        // Every channel's largest weight maps to +-127.
        for c in 0..channels {
            let peak = layer
                .weight_q
                .iter()
                .skip(c)
                .step_by(channels)
                .map(|q| q.abs())
                .max();
            assert_eq!(peak, Some(127), "{} channel {c}", layer.name);
        }
        let input = loaded.activation(&activation_input(&layer.name)).unwrap();
        let bias = folded.get(&format!("{}.bias", layer.name)).unwrap();
        for (c, (&b, &q)) in bias.iter().zip(&layer.bias_q).enumerate() {
            let s_b = input.scale as f64 * layer.weight_scale[c] as f64;
            assert!((b as f64 - q as f64 * s_b).abs() <= s_b / 2.0 * 1.0001);
        }
    }

    // The file holds exactly INT8.md's tensors and metadata.
    let raw = load_safetensors_raw(&path).unwrap();
    assert_eq!(raw.metadata["format"], "mobilenet-wgpu-int8");
    assert_eq!(raw.metadata["scheme"], "int8-v1");
    assert!(raw.metadata["calibration"].contains("\"percentile\""));
    let dtype = |name: &str| {
        let t = raw.tensors.iter().find(|t| t.name == name).unwrap();
        (t.dtype.to_string(), t.shape.clone())
    };
    assert_eq!(dtype("stem.conv.weight_q"), ("I8".into(), vec![3, 3, 1, 8]));
    assert_eq!(dtype("stem.conv.weight_scale"), ("F32".into(), vec![8]));
    assert_eq!(dtype("classifier.bias_q"), ("I32".into(), vec![10]));
    assert_eq!(dtype("image.act_scale"), ("F32".into(), vec![1]));
    assert_eq!(dtype("pool.act_zero_point"), ("I32".into(), vec![1]));
}

/// The activation tensor each layer reads, by the network's order: the input for the stem,
/// the previous op's output otherwise.
fn activation_input(layer: &str) -> String {
    let graph = small_fashion_model().build_folded(1).unwrap().graph;
    let node = graph.nodes().iter().find(|n| n.name == layer).unwrap();
    graph.tensor(node.input).unwrap().name.clone()
}

#[test]
fn float_loaders_refuse_the_int8_file_and_the_int8_loader_refuses_float_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (float_path, path, _) = small_int8_file(dir.path());
    let refusal = load_pretrained(&path).unwrap_err().to_string();
    assert!(refusal.contains(INT8_REFUSAL), "{refusal}");
    assert!(
        refusal.contains("float checkpoint it was quantized from"),
        "{refusal}"
    );
    let refusal = Checkpoint::load(&path).unwrap_err().to_string();
    assert!(refusal.contains(INT8_REFUSAL), "{refusal}");

    let refusal = QuantizedModel::load(&float_path).unwrap_err().to_string();
    assert!(
        refusal.contains("float checkpoint") && refusal.contains("mobilenet quantize --weights"),
        "{refusal}"
    );

    // A damaged file: one tensor gone, one of another dtype, one too many.
    let mut raw = load_safetensors_raw(&path).unwrap();
    raw.tensors.retain(|t| t.name != "blocks.3.pw.bias_q");
    let scale = raw
        .tensors
        .iter_mut()
        .find(|t| t.name == "pool.act_zero_point")
        .unwrap();
    scale.dtype = safetensors::Dtype::F32;
    let mut extra = raw.tensors[0].clone();
    extra.name = "stray.weight_q".into();
    raw.tensors.push(extra);
    let damaged = dir.path().join("damaged.safetensors");
    save_safetensors_raw(&damaged, &raw.tensors, &raw.metadata).unwrap();
    let problems = QuantizedModel::load(&damaged).unwrap_err().to_string();
    for expected in [
        "`blocks.3.pw.bias_q` (I32 [",
        "`pool.act_zero_point` is F32 [1], expected I32 [1]",
        "`stray.weight_q`: not a tensor of this model",
        "mobilenet quantize",
    ] {
        assert!(
            problems.contains(expected),
            "{expected:?} not in: {problems}"
        );
    }
}

#[test]
fn the_int8_file_is_at_most_30_percent_of_the_float_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let config = MobileNetV1Config::preset(Preset::Paper);
    let (float_path, float) = float_checkpoint(dir.path(), &config, 2);
    // The size does not depend on the ranges: any will do, without a 224 calibration run.
    let graph = config.build_folded(1).unwrap().graph;
    let ranges: Vec<(String, (f64, f64))> = activation_tensors(&graph)
        .unwrap()
        .into_iter()
        .map(|t| (t.name, (-1.0, 6.0)))
        .collect();
    let info = CalibrationInfo {
        method: Method::MinMax,
        images: 0,
    };
    let model = quantize_with_ranges(&float, &ranges, info).unwrap();
    let path = dir.path().join("int8.safetensors");
    model.save(&path).unwrap();
    let size = |p: &Path| std::fs::metadata(p).unwrap().len() as f64;
    let ratio = size(&path) / size(&float_path);
    assert!(
        ratio <= 0.30,
        "the int8 file is {:.1}% of the float one",
        100.0 * ratio
    );
    assert_eq!(QuantizedModel::load(&path).unwrap(), model);
}

fn mobilenet(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args(args)
        .output()
        .expect("run mobilenet");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn mobilenet_quantize_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let (float_path, _) = float_checkpoint(dir.path(), &small_fashion_model(), 7);
    let out = dir.path().join("int8.safetensors");
    let (float_arg, out_arg) = (float_path.to_str().unwrap(), out.to_str().unwrap());
    let (ok, stdout, stderr) = mobilenet(&[
        "quantize",
        "--weights",
        float_arg,
        "--dataset",
        "fashion-mnist",
        "--calibration",
        "64",
        "--out",
        out_arg,
    ]);
    assert!(ok, "{stderr}");
    for expected in ["minmax", "64 calibration images", "% of the float file"] {
        assert!(stdout.contains(expected), "{expected:?} not in: {stdout}");
    }
    let model = QuantizedModel::load(&out).unwrap();
    assert_eq!(
        (model.calibration.images, model.calibration.method),
        (64, Method::MinMax)
    );

    // A folder of images (as `predict --data` reads one), the MSE choice.
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let mut rng = common::rng(4);
    for i in 0..5 {
        let pixels: Vec<u8> = (0..32 * 32).map(|_| rng.random()).collect();
        image::GrayImage::from_raw(32, 32, pixels)
            .unwrap()
            .save(images.join(format!("{i}.png")))
            .unwrap();
    }
    let (ok, stdout, stderr) = mobilenet(&[
        "quantize",
        "--weights",
        float_arg,
        "--data",
        images.to_str().unwrap(),
        "--method",
        "mse",
        "--out",
        out_arg,
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("mse ranges from 5 calibration images"),
        "{stdout}"
    );

    // eval runs the int8 file on the int8 kernels and says so.
    let (ok, stdout, stderr) = mobilenet(&["eval", "--weights", out_arg, "--limit", "10"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(" (int8): loss "), "{stdout}");
    assert!(stdout.contains("(10 images)"), "{stdout}");

    // Float-only commands refuse the int8 file and say what it is.
    let timm = dir.path().join("timm.safetensors");
    let timm_arg = timm.to_str().unwrap();
    let export = [
        "export",
        "--weights",
        out_arg,
        "--format",
        "timm",
        "--out",
        timm_arg,
    ];
    let (ok, _, stderr) = mobilenet(&export);
    assert!(!ok && stderr.contains(INT8_REFUSAL), "{stderr}");
}

/// The index of the largest logit, the first on a tie (as `predict` ranks them).
fn top1(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, c| if row[c] > row[best] { c } else { best })
}

/// One JSON value per line of `predict --data`'s output.
fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A grey PNG and an RGB JPEG of other sizes than the network's 28x28, as files, and the
/// integer reference's logits for them (the int8 file's own preprocessing).
fn int8_images(dir: &Path, model: &QuantizedModel) -> (Vec<PathBuf>, Vec<Vec<f32>>) {
    let png = dir.join("grey.png");
    image::GrayImage::from_fn(40, 30, |x, y| image::Luma([(x * 6 + y * 3) as u8]))
        .save(&png)
        .unwrap();
    let jpeg = dir.join("colour.jpg");
    image::RgbImage::from_fn(50, 50, |x, y| {
        image::Rgb([(x * 5) as u8, 255 - (y * 5) as u8, ((x * y) % 256) as u8])
    })
    .save(&jpeg)
    .unwrap();
    let graph = model.config.build_folded(1).unwrap().graph;
    let logits = [&png, &jpeg]
        .iter()
        .map(|file| {
            let input = load_image(file, &model.preprocess).unwrap();
            run_int8_graph(&graph, model, &input).unwrap()
        })
        .collect();
    (vec![png, jpeg], logits)
}

/// An int8 file, two image files, and the integer reference's logits for each.
struct PredictCase {
    dir: tempfile::TempDir,
    float_path: PathBuf,
    int8: PathBuf,
    model: QuantizedModel,
    files: Vec<PathBuf>,
    reference: Vec<Vec<f32>>,
}

impl PredictCase {
    fn new() -> PredictCase {
        let dir = tempfile::tempdir().unwrap();
        let (float_path, int8, model) = small_int8_file(dir.path());
        let (files, reference) = int8_images(dir.path(), &model);
        PredictCase {
            dir,
            float_path,
            int8,
            model,
            files,
            reference,
        }
    }

    fn expected_classes(&self) -> Vec<usize> {
        self.reference.iter().map(|row| top1(row)).collect()
    }
}

#[test]
fn predict_runs_an_int8_file_on_the_int8_kernels_and_says_so() {
    let case = PredictCase::new();
    let expected = case.expected_classes();
    let int8_arg = case.int8.to_str().unwrap();
    let images: Vec<&str> = case.files.iter().map(|f| f.to_str().unwrap()).collect();
    let predict = |extra: &[&str]| {
        let args = [&["predict", "--weights", int8_arg][..], extra, &images].concat();
        mobilenet(&args)
    };
    let (ok, stdout, stderr) = predict(&["--top", "3", "--json"]);
    assert!(ok, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    for (p, &class) in json.as_array().unwrap().iter().zip(&expected) {
        assert_eq!(p["precision"], "int8", "{p}");
        assert_eq!(p["top"][0]["class"], class, "{p}");
    }
    let (ok, stdout, stderr) = predict(&[]);
    assert!(ok && stdout.starts_with("int8 weights"), "{stdout}{stderr}");
    let (ok, _, stderr) = predict(&["--resolution", "32"]);
    assert!(!ok && stderr.contains("calibrated"), "{stderr}");
}

#[test]
fn predict_on_a_tensor_of_int8_images_gives_the_integer_references_logits_exactly() {
    let case = PredictCase::new();
    let (input, logits) = (
        case.dir.path().join("input.safetensors"),
        case.dir.path().join("logits.safetensors"),
    );
    let values: Vec<f32> = case
        .files
        .iter()
        .flat_map(|file| load_image(file, &case.model.preprocess).unwrap())
        .collect();
    save_safetensors(
        &input,
        &[("input", &[2, 28, 28, 1], &values)],
        &Default::default(),
    )
    .unwrap();
    let (ok, _, stderr) = mobilenet(&[
        "predict",
        "--weights",
        case.int8.to_str().unwrap(),
        "--tensor",
        input.to_str().unwrap(),
        "--logits-out",
        logits.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        load_safetensors(&logits).unwrap().tensors[0].values,
        case.reference.concat()
    );
}

#[test]
fn predict_on_a_folder_streams_int8_predictions_and_float_weights_say_float32() {
    let case = PredictCase::new();
    let expected = case.expected_classes();
    let (folder, out) = (
        case.dir.path().join("folder"),
        case.dir.path().join("predictions.jsonl"),
    );
    std::fs::create_dir(&folder).unwrap();
    for file in &case.files {
        std::fs::copy(file, folder.join(file.file_name().unwrap())).unwrap();
    }
    let (folder_arg, out_arg) = (folder.to_str().unwrap(), out.to_str().unwrap());
    let data = |weights: &Path| {
        let weights = weights.to_str().unwrap();
        mobilenet(&[
            "predict",
            "--weights",
            weights,
            "--data",
            folder_arg,
            "--out",
            out_arg,
        ])
    };
    let (ok, stdout, stderr) = data(&case.int8);
    assert!(
        ok && stdout.contains("2 predictions (int8 weights)"),
        "{stdout}{stderr}"
    );
    for line in json_lines(&out) {
        let name = Path::new(line["path"].as_str().unwrap())
            .file_name()
            .unwrap();
        let i = case
            .files
            .iter()
            .position(|f| f.file_name() == Some(name))
            .unwrap();
        assert_eq!(line["precision"], "int8", "{line}");
        assert_eq!(line["top"][0]["class"], expected[i], "{line}");
    }

    // The float weights it came from say float32.
    let (ok, stdout, stderr) = data(&case.float_path);
    assert!(
        ok && stdout.contains("(float32 weights)"),
        "{stdout}{stderr}"
    );
    assert!(json_lines(&out)
        .iter()
        .all(|line| line["precision"] == "float32"));
}

#[test]
fn eval_with_a_float_reference_reports_both_top1_and_their_agreement() {
    let dir = tempfile::tempdir().unwrap();
    let (float_path, int8, _) = small_int8_file(dir.path());
    let (int8_arg, float_arg) = (int8.to_str().unwrap(), float_path.to_str().unwrap());
    let eval = |weights: &str, extra: &[&str]| {
        let args = [&["eval", "--weights", weights, "--limit", "40"][..], extra].concat();
        mobilenet(&args)
    };
    let (ok, stdout, stderr) = eval(int8_arg, &["--float-reference", float_arg, "--json"]);
    assert!(ok, "{stderr}");
    let both: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        (&both["int8"]["count"], &both["float32"]["count"]),
        (&40.into(), &40.into())
    );
    let agreeing = both["agreeing"].as_u64().unwrap();
    assert!(agreeing <= 40);
    assert_eq!(
        both["top1_agreement"].as_f64().unwrap(),
        agreeing as f64 / 40.0
    );
    // Each side's figures are those of its own evaluation.
    for (weights, side) in [(float_arg, "float32"), (int8_arg, "int8")] {
        let (ok, alone, stderr) = eval(weights, &["--json"]);
        assert!(ok, "{stderr}");
        let alone: serde_json::Value = serde_json::from_str(&alone).unwrap();
        assert_eq!(alone["top1"], both[side]["top1"], "{side}");
        assert_eq!(alone["confusion"], both[side]["confusion"], "{side}");
    }
    let (ok, stdout, stderr) = eval(int8_arg, &["--float-reference", float_arg]);
    assert!(ok, "{stderr}");
    for expected in [
        " (int8): loss ",
        " (float32): loss ",
        "top-1 agreement: ",
        " of 40 images",
    ] {
        assert!(stdout.contains(expected), "{expected:?} not in: {stdout}");
    }

    // Refused: another network as the reference, float weights as --weights.
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let wider = MobileNetV1Config {
        alpha: 0.5,
        ..small_fashion_model()
    };
    let (other, _) = float_checkpoint(&other_dir, &wider, 3);
    let (ok, _, stderr) = eval(int8_arg, &["--float-reference", other.to_str().unwrap()]);
    assert!(
        !ok && stderr.contains("not the network the int8 file was quantized from"),
        "{stderr}"
    );
    assert!(stderr.contains("configuration"), "{stderr}");
    let (ok, _, stderr) = eval(float_arg, &["--float-reference", float_arg]);
    assert!(
        !ok && stderr.contains("holds float weights already"),
        "{stderr}"
    );
}

/// `count` smooth random RGB patterns (waves and gradients with a little noise), 32x32,
/// labelled round-robin over ten classes.
fn pattern_images(count: usize, seed: u64) -> DataSource {
    let mut rng = common::rng(seed);
    let mut pixels = Vec::with_capacity(count * 32 * 32 * 3);
    for _ in 0..count {
        let waves: Vec<[f32; 5]> = (0..3)
            .map(|_| std::array::from_fn(|_| rng.random_range(-1.0..1.0)))
            .collect();
        for y in 0..32 {
            for x in 0..32 {
                let (x, y) = (x as f32 / 32.0, y as f32 / 32.0);
                for [fx, fy, phase, slope, level] in &waves {
                    let wave = (8.0 * (fx * x + fy * y) + 3.0 * phase).sin();
                    let value = 0.5 + 0.3 * wave + 0.3 * slope * (x - y) + 0.2 * level;
                    let noise = rng.random_range(-0.05..0.05);
                    pixels.push((255.0 * (value + noise)).clamp(0.0, 255.0) as u8);
                }
            }
        }
    }
    ImageSet {
        height: 32,
        width: 32,
        channels: 3,
        pixels,
        labels: (0..count as u32).map(|i| i % 10).collect(),
        class_names: (0..10).map(|c| format!("class {c}")).collect(),
    }
    .into()
}

/// The timm fixture (random weights, ReLU6, three channels, 224) quantized on 32 patterns
/// and run on 100 others, in int8 and in float: (top-1 agreement, the classes int8 gives).
///
/// Its random weights make its logits barely depend on the image (their spread between
/// images is about 0.44 against values of 1 to 5; per-channel int8 weights alone move them
/// by 0.22 rms), so float predicts one class for 87 of the 100 images, and int8 follows
/// float less closely than on a trained network (99.1% on Fashion-MNIST, README).
fn timm_fixture_agreement() -> (f64, usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"));
    let float = load_pretrained(&path.join("tests/fixtures/timm_mnv1_025_c10.safetensors"))
        .expect("the timm fixture");
    let gpu = common::gpu();
    let options = CalibrationOptions {
        images: 32,
        batch_size: 16,
        ..CalibrationOptions::default()
    };
    let calibration = calibrate(gpu, &float, pattern_images(32, 11), &options).unwrap();
    let model = quantize(&float, &calibration, Method::DEFAULT).unwrap();
    let (held_out, batch) = (pattern_images(100, 12), 20);
    let loader = float.preprocess.loader_options(batch);
    let plan = float
        .config
        .inference_plan(gpu, &float.params, batch)
        .unwrap();
    let float_result = evaluate(&plan, held_out.clone(), loader.clone()).unwrap();
    let graph = model.config.build_folded(batch).unwrap().graph;
    let int8_plan = Int8Plan::compile(gpu, &graph, &model).unwrap();
    let logits = |images: &[f32]| -> anyhow::Result<Vec<f32>> { Ok(int8_plan.run(images)?.logits) };
    let int8_result = evaluate_with(&logits, held_out, loader, &mut |_| {}).unwrap();
    let (agreeing, count) = top1_agreement(&int8_result, &float_result).unwrap();
    assert_eq!(count, 100);
    let classes: std::collections::BTreeSet<u32> = int8_result.predictions.into_iter().collect();
    (agreeing as f64 / count as f64, classes.len())
}

#[test]
fn the_timm_fixture_in_int8_agrees_with_float_on_held_out_images() {
    let (agreement, classes) = timm_fixture_agreement();
    // Measured: 85 of 100 (mse ranges: 84; percentile: 79-80). A network broken into noise
    // agrees on a fraction of them; one blind to its input gives a single class.
    assert!(agreement >= 0.80, "top-1 agreement {agreement}");
    assert!(classes >= 2, "int8 gives one class for every image");
}
