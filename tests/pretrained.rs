//! Pretrained weights: parity with PyTorch/timm and Keras on fixtures their own code wrote
//! (tests/fixtures/make_*.py), batchnorm folding, export round trips and bad files.

mod common;

use common::{gpu, random_params, relative_error, rng, uniform};
use mobilenet_wgpu::data::Normalize;
use mobilenet_wgpu::graph::ParamStore;
use mobilenet_wgpu::predict::Classifier;
use mobilenet_wgpu::train::checkpoint::Checkpoint;
use mobilenet_wgpu::weights::{
    export_timm, fold_batchnorm, load_pretrained, load_safetensors, save_safetensors, Naming,
    Pretrained,
};
use mobilenet_wgpu::{Activation, MobileNetV1Config, Padding, Preset};
use std::path::{Path, PathBuf};

/// Logits of the fixtures' frameworks and ours must agree to this, absolutely.
const PARITY_ABS: f32 = 1e-3;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// (input NHWC, shape, expected logits) of a fixture's IO file.
fn fixture_io(name: &str) -> (Vec<f32>, Vec<usize>, Vec<f32>) {
    let file = load_safetensors(&fixture(name)).expect("fixture IO file");
    let get = |n: &str| {
        file.tensors
            .iter()
            .find(|t| t.name == n)
            .unwrap_or_else(|| panic!("{name} has no `{n}`"))
            .clone()
    };
    let (input, logits) = (get("input"), get("logits"));
    (input.values, input.shape, logits.values)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Loads a fixture, runs its input through the folded GPU plan and compares with the
/// framework's logits. Returns the max abs difference.
fn check_parity(weights: &str, io: &str, naming: Naming, alpha: f32, classes: usize) -> f32 {
    let pretrained = load_pretrained(&fixture(weights)).expect("fixture loads");
    assert_eq!(pretrained.naming, naming);
    assert_eq!(pretrained.config.alpha, alpha);
    assert_eq!(pretrained.config.classes, classes);
    assert_eq!(pretrained.config.in_channels, 3);
    let (input, shape, expected) = fixture_io(io);
    let classifier = Classifier::new(gpu(), &pretrained, shape[0], Some(shape[1])).expect("plan");
    let logits = classifier.logits(&input).expect("run");
    let diff = max_abs_diff(&logits, &expected);
    println!("{weights}: max |logit difference| vs the framework {diff:.3e}");
    assert!(
        diff <= PARITY_ABS,
        "{weights}: logits differ by {diff} (> {PARITY_ABS})"
    );
    diff
}

#[test]
fn timm_checkpoint_matches_pytorch() {
    check_parity(
        "timm_mnv1_025_c10.safetensors",
        "timm_mnv1_025_c10_io.safetensors",
        Naming::Timm,
        0.25,
        10,
    );
}

#[test]
fn timm_f16_checkpoint_matches_pytorch() {
    check_parity(
        "timm_mnv1_050_c7_f16.safetensors",
        "timm_mnv1_050_c7_f16_io.safetensors",
        Naming::Timm,
        0.5,
        7,
    );
}

#[test]
fn keras_checkpoint_matches_keras() {
    let pretrained = load_pretrained(&fixture("keras_mnv1_025_c10.safetensors")).expect("load");
    assert_eq!(pretrained.config.padding, Padding::Same);
    assert_eq!(pretrained.config.activation, Activation::Relu6);
    assert_eq!(pretrained.config.bn_eps, 1e-3);
    check_parity(
        "keras_mnv1_025_c10.safetensors",
        "keras_mnv1_025_c10_io.safetensors",
        Naming::Keras,
        0.25,
        10,
    );
}

/// The unfolded graph (batchnorm as its own pass) on the GPU: the reference for folding.
fn unfolded_logits(pretrained: &Pretrained, input: &[f32], batch: usize, res: usize) -> Vec<f32> {
    let config = MobileNetV1Config {
        resolution: res,
        ..pretrained.config.clone()
    };
    let model = config.build(batch).expect("graph");
    let plan = model.graph.compile(gpu()).expect("compile");
    plan.load_params(&pretrained.params).expect("params");
    plan.run(input).expect("run").remove(0)
}

#[test]
fn folded_inference_equals_unfolded() {
    for preset in [Preset::Paper, Preset::Timm, Preset::Keras] {
        let config = MobileNetV1Config {
            alpha: 0.25,
            resolution: 32,
            classes: 13,
            ..MobileNetV1Config::preset(preset)
        };
        let graph = config.build(1).expect("graph").graph;
        let pretrained = Pretrained {
            naming: Naming::Ours,
            params: random_params(&graph, 7),
            preprocess: mobilenet_wgpu::data::Preprocess {
                resolution: 32,
                crop_pct: 1.0,
                normalize: Normalize::symmetric(3),
            },
            class_names: Vec::new(),
            config,
        };
        let input = uniform(&mut rng(3), 3 * 32 * 32 * 3, -1.0, 1.0);
        let folded = Classifier::new(gpu(), &pretrained, 3, None)
            .expect("plan")
            .logits(&input)
            .expect("run");
        let unfolded = unfolded_logits(&pretrained, &input, 3, 32);
        let err = relative_error(&folded, &unfolded);
        println!("{preset}: folded vs unfolded max relative error {err:.3e}");
        assert!(
            err <= 1e-4,
            "{preset}: folding changed the logits by {err:.3e}"
        );
    }
}

#[test]
fn folding_removes_batchnorm_and_keeps_the_rest() {
    let config = MobileNetV1Config {
        alpha: 0.25,
        classes: 4,
        resolution: 32,
        ..Default::default()
    };
    let graph = config.build(1).expect("graph").graph;
    let params = random_params(&graph, 1);
    let folded = fold_batchnorm(&params, config.bn_eps).expect("fold");
    let folded_graph = config.build_folded(1).expect("folded graph").graph;
    let mut expected: Vec<&str> = folded_graph
        .params()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    let mut got: Vec<&str> = folded.iter().map(|(n, _, _)| n).collect();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    // One pass per convolution instead of two.
    assert_eq!(
        graph.nodes().len() - folded_graph.nodes().len(),
        27,
        "all 27 batchnorms fold away"
    );
    // A missing batchnorm is named.
    let mut broken = ParamStore::new();
    for (name, shape, values) in params.iter() {
        if name != "blocks.3.pw_bn.running_var" {
            broken.insert(name, shape.to_vec(), values.to_vec());
        }
    }
    let problems = fold_batchnorm(&broken, config.bn_eps).expect_err("must fail");
    assert!(
        problems.0.iter().any(|p| p.contains("blocks.3.pw_bn")),
        "{problems:?}"
    );
}

#[test]
fn timm_export_round_trip_gives_identical_logits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = load_pretrained(&fixture("timm_mnv1_025_c10.safetensors")).expect("load");
    let exported = dir.path().join("exported.safetensors");
    export_timm(&original.config, &original.params, &exported).expect("export");
    let reloaded = load_pretrained(&exported).expect("reload");
    assert_eq!(reloaded.naming, Naming::Timm);
    assert_eq!(reloaded.config, original.config);
    assert_eq!(
        reloaded.params, original.params,
        "tensors survive bit for bit"
    );

    // Our own checkpoint (paper preset: ReLU) -> timm naming -> our loader.
    let config = MobileNetV1Config {
        alpha: 0.5,
        resolution: 32,
        classes: 6,
        in_channels: 1,
        ..Default::default()
    };
    let graph = config.build(1).expect("graph").graph;
    let checkpoint = Checkpoint {
        config: config.clone(),
        params: random_params(&graph, 11),
        optimizer_state: ParamStore::new(),
        epoch: 1,
        step: 10,
        best_val_acc: None,
        normalize: Normalize::none(1),
        crop_pct: 1.0,
        class_names: (0..6).map(|i| format!("c{i}")).collect(),
        train_options: None,
    };
    let ours = dir.path().join("ours.safetensors");
    checkpoint.save(&ours).expect("save");
    let ours = load_pretrained(&ours).expect("load ours");
    let timm = dir.path().join("ours_timm.safetensors");
    export_timm(&ours.config, &ours.params, &timm).expect("export ours");
    let back = load_pretrained(&timm).expect("load exported");
    assert_eq!(
        back.config, config,
        "the configuration travels in the metadata"
    );
    let file = load_safetensors(&timm).expect("read exported");
    assert!(file
        .tensors
        .iter()
        .any(|t| t.name == "blocks.3.5.conv_pw.weight" && t.shape == vec![256, 256, 1, 1]));
    let input = uniform(&mut rng(5), 2 * 32 * 32, -1.0, 1.0);
    let run = |p: &Pretrained| {
        Classifier::new(gpu(), p, 2, None)
            .expect("plan")
            .logits(&input)
            .expect("run")
    };
    assert_eq!(
        run(&ours),
        run(&back),
        "identical logits after the round trip"
    );
}

#[test]
fn export_refuses_what_timm_cannot_express() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = MobileNetV1Config {
        alpha: 0.25,
        classes: 3,
        stem_stride: 1,
        ..Default::default()
    };
    let params = random_params(&config.build(1).expect("graph").graph, 1);
    let err = export_timm(&config, &params, &dir.path().join("x.safetensors"))
        .expect_err("stride-1 stem");
    assert!(err.to_string().contains("stride"), "{err}");
}

/// Writes the timm fixture back with some tensors changed.
fn tampered(dir: &Path, edit: impl Fn(&str, &mut Vec<usize>, &mut Vec<f32>) -> bool) -> PathBuf {
    let file = load_safetensors(&fixture("timm_mnv1_025_c10.safetensors")).expect("fixture");
    let mut tensors = Vec::new();
    for t in file.tensors {
        let (mut shape, mut values) = (t.shape, t.values);
        if edit(&t.name, &mut shape, &mut values) {
            tensors.push((t.name, shape, values));
        }
    }
    let views: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
        .collect();
    let path = dir.join("tampered.safetensors");
    save_safetensors(&path, &views, &Default::default()).expect("write");
    path
}

#[test]
fn mismatched_checkpoints_report_every_problem_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = tampered(dir.path(), |name, shape, values| match name {
        "blocks.2.1.bn2.running_mean" => false,
        "blocks.0.0.conv_pw.weight" => {
            shape[0] += 1;
            values.extend(vec![0.0; shape[1]]);
            true
        }
        _ => true,
    });
    // Plus one tensor that is no part of MobileNet V1.
    let mut file = load_safetensors(&path).expect("read");
    file.tensors.push(mobilenet_wgpu::weights::NamedTensor {
        name: "head.extra.weight".into(),
        shape: vec![2],
        values: vec![1.0, 2.0],
    });
    let views: Vec<(&str, &[usize], &[f32])> = file
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.shape.as_slice(), t.values.as_slice()))
        .collect();
    save_safetensors(&path, &views, &Default::default()).expect("write");

    let message = load_pretrained(&path).expect_err("must fail").to_string();
    println!("{message}");
    for expected in [
        "blocks.2.1.bn2.running_mean: missing",
        "blocks.0.0.conv_pw.weight: shape [17, 8, 1, 1], expected [16, 8, 1, 1]",
        "head.extra.weight: unexpected",
        "alpha 0.25",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
}

#[test]
fn bad_files_give_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let truncated = dir.path().join("truncated.safetensors");
    let bytes = std::fs::read(fixture("timm_mnv1_025_c10.safetensors")).expect("fixture");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let err = load_pretrained(&truncated)
        .expect_err("truncated")
        .to_string();
    assert!(err.contains("truncated"), "{err}");

    let text = dir.path().join("notes.safetensors");
    std::fs::write(&text, "these are not weights").expect("write");
    let err = load_pretrained(&text)
        .expect_err("not safetensors")
        .to_string();
    assert!(err.contains("not a valid safetensors file"), "{err}");

    let other = dir.path().join("resnet.safetensors");
    save_safetensors(
        &other,
        &[("layer1.0.conv1.weight", &[2, 2], &[0.0; 4])],
        &Default::default(),
    )
    .expect("write");
    let err = load_pretrained(&other).expect_err("unknown").to_string();
    assert!(
        err.contains("not a MobileNet V1 checkpoint") && err.contains("layer1.0.conv1.weight"),
        "{err}"
    );

    let missing = load_pretrained(&dir.path().join("absent.safetensors"))
        .expect_err("missing")
        .to_string();
    assert!(missing.contains("check the path"), "{missing}");
}

fn mobilenet(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args(args)
        .output()
        .expect("run the mobilenet binary")
}

#[test]
fn predict_cli_classifies_images_of_any_size_and_depth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = fixture("timm_mnv1_025_c10.safetensors");
    // 16-bit RGBA and 8-bit grey PNGs, of other sizes than the network's input.
    let rgba = dir.path().join("rgba16.png");
    image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(300, 200, |x, y| {
        image::Rgba([(x * 200) as u16, (y * 300) as u16, 30000, 65535])
    })
    .save(&rgba)
    .expect("png");
    let grey = dir.path().join("grey.png");
    image::GrayImage::from_fn(50, 90, |x, y| image::Luma([((x + y) % 256) as u8]))
        .save(&grey)
        .expect("png");
    let out = mobilenet(&[
        "predict".as_ref(),
        "--weights".as_ref(),
        weights.as_os_str(),
        rgba.as_os_str(),
        grey.as_os_str(),
        "--json".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let predictions = json.as_array().expect("an array");
    assert_eq!(predictions.len(), 2);
    for p in predictions {
        let top = p["top"].as_array().expect("top");
        assert_eq!(top.len(), 5);
        let probs: Vec<f64> = top
            .iter()
            .map(|t| t["probability"].as_f64().unwrap())
            .collect();
        assert!(probs.windows(2).all(|w| w[0] >= w[1]), "sorted: {probs:?}");
        assert!(probs.iter().sum::<f64>() <= 1.0 + 1e-5);
        assert_eq!(
            top[0]["name"].as_str().unwrap(),
            format!("class {}", top[0]["class"])
        );
    }
}

#[test]
fn predict_cli_names_an_image_that_does_not_decode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = fixture("timm_mnv1_025_c10.safetensors");
    let broken = dir.path().join("broken.jpg");
    std::fs::write(&broken, b"\xff\xd8\xff\xe0 truncated jpeg").expect("write");
    let out = mobilenet(&[
        "predict".as_ref(),
        "--weights".as_ref(),
        weights.as_os_str(),
        broken.as_os_str(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.jpg") && stderr.contains("cannot decode"),
        "{stderr}"
    );
}

#[test]
fn predict_cli_takes_a_tensor_and_writes_the_logits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = fixture("timm_mnv1_025_c10.safetensors");
    let logits_path = dir.path().join("logits.safetensors");
    let io = fixture("timm_mnv1_025_c10_io.safetensors");
    let out = mobilenet(&[
        "predict".as_ref(),
        "--weights".as_ref(),
        weights.as_os_str(),
        "--tensor".as_ref(),
        io.as_os_str(),
        "--logits-out".as_ref(),
        logits_path.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = load_safetensors(&logits_path).expect("logits file");
    assert_eq!(written.tensors[0].name, "logits");
    assert_eq!(written.tensors[0].shape, vec![3, 10]);
    let (_, _, expected) = fixture_io("timm_mnv1_025_c10_io.safetensors");
    assert!(max_abs_diff(&written.tensors[0].values, &expected) <= PARITY_ABS);
}

#[test]
fn export_cli_writes_timm_weights_that_load_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let weights = fixture("timm_mnv1_025_c10.safetensors");
    let exported = dir.path().join("exported.safetensors");
    let out = mobilenet(&[
        "export".as_ref(),
        "--weights".as_ref(),
        weights.as_os_str(),
        "--format".as_ref(),
        "timm".as_ref(),
        "--out".as_ref(),
        exported.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(load_pretrained(&exported).is_ok());
}

#[test]
fn preprocessing_follows_timm_eval_transform() {
    use mobilenet_wgpu::data::Preprocess;
    // A 256x320 image whose columns encode their x: after resizing the shorter side to
    // 224 / 0.875 = 256 (a no-op here) and a centre crop of 224, column 0 of the crop is
    // column round((320 - 224) / 2) = 48 of the original.
    let image = image::RgbImage::from_fn(320, 256, |x, _| image::Rgb([x as u8, 0, 255]));
    let preprocess = Preprocess {
        resolution: 224,
        crop_pct: 0.875,
        normalize: Normalize::symmetric(3),
    };
    let values = preprocess.apply(&image::DynamicImage::ImageRgb8(image));
    assert_eq!(values.len(), 224 * 224 * 3);
    let expected_first = 48.0 / 255.0 / 0.5 - 1.0;
    assert!((values[0] - expected_first).abs() < 1e-5, "{}", values[0]);
    assert!((values[2] - 1.0).abs() < 1e-6, "blue 255 normalises to 1");
    // Grey networks get luminance.
    let grey = Preprocess {
        normalize: Normalize::none(1),
        ..preprocess
    };
    let values = grey.apply(&image::DynamicImage::ImageRgb8(
        image::RgbImage::from_pixel(10, 10, image::Rgb([255, 255, 255])),
    ));
    assert_eq!(values.len(), 224 * 224);
    assert!(values.iter().all(|&v| (v - 1.0).abs() < 1e-5));
}
