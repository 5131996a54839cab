//! Transfer learning on a small image folder the test writes: a timm-named pretrained
//! network (tests/fixtures), a new classifier, the backbone frozen or partly trained.

mod common;

use mobilenet_wgpu::data::Augment;
use mobilenet_wgpu::predict::Classifier;
use mobilenet_wgpu::train::trainer::{Finetune, LAST};
use mobilenet_wgpu::train::{
    train, DataOptions, DatasetKind, OptimizerConfig, OptimizerKind, Schedule, ScheduleKind,
    TrainOptions,
};
use mobilenet_wgpu::weights::{load_pretrained, Pretrained};
use mobilenet_wgpu::MobileNetV1Config;
use rand::Rng;
use std::path::{Path, PathBuf};

const CLASSES: [&str; 3] = ["stripes", "columns", "checks"];

fn pretrained_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm_mnv1_025_c10.safetensors")
}

/// Three classes of noisy 40x36 RGB PNG patterns, `per_class` images each.
fn write_folder(dir: &Path, per_class: usize) {
    let mut r = common::rng(9);
    for (label, name) in CLASSES.iter().enumerate() {
        let class_dir = dir.join(name);
        std::fs::create_dir_all(&class_dir).unwrap();
        for i in 0..per_class {
            let phase = r.random_range(0..4u32);
            let image = image::RgbImage::from_fn(40, 36, |x, y| {
                let on = match label {
                    0 => (y + phase) / 3 % 2 == 0,
                    1 => (x + phase) / 3 % 2 == 0,
                    _ => ((x + phase) / 4 + (y + phase) / 4) % 2 == 0,
                };
                let base = if on { 200.0 } else { 50.0 };
                let mut v = |shift: f32| {
                    (base + shift + r.random_range(-40.0..40.0)).clamp(0.0, 255.0) as u8
                };
                image::Rgb([v(0.0), v(10.0), v(-10.0)])
            });
            image.save(class_dir.join(format!("{i:03}.png"))).unwrap();
        }
    }
}

fn options(data: &Path, out: &Path, trainable_blocks: Option<usize>) -> TrainOptions {
    TrainOptions {
        dataset: DatasetKind::Folder,
        data_dir: Some(data.to_path_buf()),
        val_dir: None,
        data: DataOptions::default(),
        model: MobileNetV1Config::default(),
        epochs: 12,
        batch_size: 8,
        optimizer: OptimizerConfig {
            weight_decay: 0.0,
            ..OptimizerConfig::new(OptimizerKind::Rmsprop)
        },
        schedule: Schedule {
            kind: ScheduleKind::Constant,
            base_lr: 0.01,
            warmup_epochs: 0.0,
        },
        bn_momentum: 0.1,
        seed: 1,
        limit: None,
        test_limit: None,
        val_fraction: 0.2,
        augment: Augment::default(),
        out_dir: out.to_path_buf(),
        resume: false,
        progress: false,
        progress_bar: false,
        log_every: mobilenet_wgpu::train::DEFAULT_LOG_EVERY,
        finetune: Some(Finetune {
            weights: pretrained_fixture(),
            trainable_blocks,
            resolution: Some(32),
            classes: Some(CLASSES.len()),
        }),
        parallel: Default::default(),
    }
}

/// Tensors of `a` whose name starts with none of `trained` must equal `b`'s bit for bit.
fn assert_frozen(a: &Pretrained, b: &Pretrained, trained: &[&str]) -> usize {
    let mut compared = 0;
    for (name, _, values) in a.params.iter() {
        if trained.iter().any(|p| name.starts_with(p)) {
            continue;
        }
        let other = b
            .params
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(
            values
                .iter()
                .zip(other)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name} changed although it is frozen"
        );
        compared += 1;
    }
    compared
}

#[test]
fn frozen_backbone_trains_the_head_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_folder(&data, 40);
    let out = dir.path().join("run");
    let summary = train(common::gpu(), &options(&data, &out, Some(0))).expect("finetune");
    let losses: Vec<f64> = summary.epochs.iter().map(|m| m.train_loss).collect();
    println!("train loss per epoch (frozen backbone): {losses:?}");
    // The fixture's backbone has random (calibrated) weights, so its features separate
    // the patterns only roughly; the head must still learn steadily on them.
    assert!(
        losses[11] < losses[0] * 0.85,
        "the loss did not fall: {losses:?}"
    );

    let pretrained = load_pretrained(&pretrained_fixture()).unwrap();
    let tuned = load_pretrained(&out.join(LAST)).expect("the result loads like any checkpoint");
    assert_eq!(tuned.config.classes, 3);
    let mut class_names = CLASSES.map(String::from).to_vec();
    class_names.sort();
    assert_eq!(
        tuned.class_names, class_names,
        "folder classes are the sorted subfolders"
    );
    let frozen = assert_frozen(&tuned, &pretrained, &["classifier"]);
    assert_eq!(frozen, 27 * 4 + 27, "every backbone tensor compared");
    assert_ne!(
        tuned.params.get("classifier.weight").map(<[f32]>::len),
        pretrained.params.get("classifier.weight").map(<[f32]>::len)
    );

    // predict runs the result on an image file.
    let classifier = Classifier::new(common::gpu(), &tuned, 1, None).unwrap();
    let image = data.join("columns/000.png");
    let predictions = classifier.classify_files(&[image], 3).unwrap();
    assert_eq!(predictions[0].top.len(), 3);
}

#[test]
fn unfreezing_the_last_blocks_trains_them_and_nothing_before() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_folder(&data, 8);
    let out = dir.path().join("run");
    let mut options = options(&data, &out, Some(2));
    options.epochs = 2;
    train(common::gpu(), &options).expect("finetune");
    let pretrained = load_pretrained(&pretrained_fixture()).unwrap();
    let tuned = load_pretrained(&out.join(LAST)).unwrap();
    assert_frozen(
        &tuned,
        &pretrained,
        &["classifier", "blocks.12.", "blocks.13."],
    );
    let changed = |name: &str| tuned.params.get(name) != pretrained.params.get(name);
    assert!(changed("blocks.13.pw.weight") && changed("blocks.12.dw.weight"));
    assert!(
        changed("blocks.12.dw_bn.running_mean"),
        "trained blocks update BN statistics"
    );
}

#[test]
fn wrong_class_count_and_bad_weights_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_folder(&data, 2);
    let mut bad = options(&data, &dir.path().join("a"), Some(0));
    bad.finetune.as_mut().unwrap().classes = Some(5);
    let err = train(common::gpu(), &bad).expect_err("5 != 3").to_string();
    assert!(
        err.contains("--classes 5") && err.contains("3 classes"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not weights at all").unwrap();
    let mut bad = options(&data, &dir.path().join("b"), Some(0));
    bad.finetune.as_mut().unwrap().weights = garbage;
    let err = format!("{:#}", train(common::gpu(), &bad).expect_err("garbage"));
    assert!(err.contains("not a valid safetensors file"), "{err}");
}
