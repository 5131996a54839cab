//! The TensorBoard event files a run writes (`RUN_DIR/events.out.tfevents.*`), read back
//! with TensorBoard's own reader: the `tensorboard` Python package's EventAccumulator, run
//! by tests/fixtures/read_tfevents.py in the virtual environment scripts/setup.sh makes
//! (target/tb-venv; MOBILENET_TB_PYTHON names another interpreter). Every per-epoch tag
//! and value is compared with metrics.jsonl, the per-step tags with the steps
//! `--log-every` sets and the schedule's learning rate, and a resumed run (also one whose
//! last epoch was logged but never checkpointed) logs no step twice.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mobilenet_wgpu::data::Augment;
use mobilenet_wgpu::train::checkpoint::Checkpoint;
use mobilenet_wgpu::train::metrics::{read_metrics, EpochMetrics};
use mobilenet_wgpu::train::trainer::{LAST, METRICS};
use mobilenet_wgpu::train::{train, Schedule, ScheduleKind, TrainOptions};

/// Steps between TensorBoard points in these runs (9 steps per epoch).
const LOG_EVERY: usize = 4;
const STEP_TAGS: [&str; 3] = ["train/loss", "train/accuracy", "train/learning_rate"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A run of 288 training images (9 steps of 32), 32 validation and 200 test images.
fn small_run(out: &Path, epochs: usize) -> TrainOptions {
    TrainOptions {
        augment: Augment::default(),
        log_every: LOG_EVERY,
        ..common::small_fashion_run(out, epochs, 320)
    }
}

/// What TensorBoard read: the event files' names and every scalar as (step, value).
struct Logged {
    files: Vec<String>,
    scalars: BTreeMap<String, Vec<(usize, f64)>>,
}

/// The interpreter that has TensorBoard installed.
fn tensorboard_python() -> PathBuf {
    match std::env::var_os("MOBILENET_TB_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => root().join("target/tb-venv/bin/python"),
    }
}

/// Reads `dir`'s event files with TensorBoard's EventAccumulator. Fails, never skips,
/// without the reader, and says how to get it.
fn read_back(dir: &Path) -> Logged {
    let python = tensorboard_python();
    assert!(
        python.exists(),
        "{} is missing: this test reads event files with TensorBoard's own reader. Create \
         it with scripts/setup.sh (or: python3 -m venv target/tb-venv && \
         target/tb-venv/bin/pip install tensorboard), or set MOBILENET_TB_PYTHON to a \
         python that can import tensorboard",
        python.display()
    );
    let output = Command::new(&python)
        .arg(root().join("tests/fixtures/read_tfevents.py"))
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        output.status.success(),
        "read_tfevents.py failed (is tensorboard installed for {}? scripts/setup.sh \
         installs it): {}",
        python.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let files = json["files"].as_array().expect("files").iter();
    let files = files
        .map(|f| f.as_str().expect("a name").to_string())
        .collect();
    let mut scalars = BTreeMap::new();
    for (tag, points) in json["scalars"].as_object().expect("scalars") {
        let points = points.as_array().expect("points").iter().map(|p| {
            let step = p[0].as_u64().expect("a step") as usize;
            (step, value(&p[1]))
        });
        scalars.insert(tag.clone(), points.collect());
    }
    Logged { files, scalars }
}

fn value(v: &serde_json::Value) -> f64 {
    match v.as_str() {
        Some("NaN") => f64::NAN,
        Some("inf") => f64::INFINITY,
        Some("-inf") => f64::NEG_INFINITY,
        _ => v.as_f64().expect("a number"),
    }
}

/// The per-epoch tags and the metrics.jsonl field each must equal.
fn epoch_fields(m: &EpochMetrics) -> Vec<(&'static str, Option<f64>)> {
    vec![
        ("epoch/train_loss", Some(m.train_loss)),
        ("epoch/train_accuracy", Some(m.train_acc)),
        ("epoch/learning_rate", Some(m.lr)),
        ("epoch/images_per_sec", Some(m.images_per_sec)),
        ("epoch/seconds", Some(m.seconds)),
        ("epoch/bad_files", Some(m.bad_files as f64)),
        ("epoch/val_loss", m.val_loss),
        ("epoch/val_top1", m.val_acc),
        ("epoch/val_top5", m.val_top5),
        ("epoch/test_loss", m.test_loss),
        ("epoch/test_top1", m.test_acc),
        ("epoch/test_top5", m.test_top5),
    ]
}

/// Every tag logged per epoch holds exactly metrics.jsonl's values (as f32, TensorBoard's
/// precision), one per epoch, and no other per-epoch tag exists.
fn assert_epochs_match(logged: &Logged, metrics: &[EpochMetrics]) {
    let mut expected: BTreeMap<&str, Vec<(usize, f32)>> = BTreeMap::new();
    for m in metrics {
        for (tag, v) in epoch_fields(m) {
            let v = v.unwrap_or_else(|| panic!("epoch {} has no {tag}", m.epoch));
            expected.entry(tag).or_default().push((m.epoch, v as f32));
        }
    }
    let epoch_tags: Vec<&str> = logged
        .scalars
        .keys()
        .map(String::as_str)
        .filter(|t| t.starts_with("epoch/"))
        .collect();
    assert_eq!(epoch_tags, expected.keys().copied().collect::<Vec<_>>());
    for (tag, want) in expected {
        let got: Vec<(usize, f32)> = logged.scalars[tag]
            .iter()
            .map(|&(s, v)| (s, v as f32))
            .collect();
        assert_eq!(got, want, "{tag} against metrics.jsonl");
    }
}

/// The global steps that carry a point: every LOG_EVERY-th and each epoch's last.
fn expected_steps(steps_per_epoch: usize, epochs: usize) -> Vec<usize> {
    let total = steps_per_epoch * epochs;
    (1..=total)
        .filter(|s| s % LOG_EVERY == 0 || s % steps_per_epoch == 0)
        .collect()
}

fn steps_of(logged: &Logged, tag: &str) -> Vec<usize> {
    let points = logged.scalars.get(tag);
    let points = points.unwrap_or_else(|| panic!("no {tag} in {:?}", logged.scalars.keys()));
    points.iter().map(|p| p.0).collect()
}

/// The per-step tags sit at the expected steps, each step once, and nothing else is logged.
fn assert_step_tags(logged: &Logged, steps_per_epoch: usize, epochs: usize) {
    let expected = expected_steps(steps_per_epoch, epochs);
    for tag in STEP_TAGS {
        assert_eq!(steps_of(logged, tag), expected, "{tag}: steps");
    }
    let others: Vec<&String> = logged
        .scalars
        .keys()
        .filter(|t| !t.starts_with("epoch/") && !STEP_TAGS.contains(&t.as_str()))
        .collect();
    assert!(others.is_empty(), "unexpected tags {others:?}");
}

#[test]
fn event_files_hold_metrics_jsonl_and_the_logged_steps() {
    let dir = tempfile::tempdir().unwrap();
    let epochs = 2;
    let mut options = small_run(dir.path(), epochs);
    // Warm-up then cosine: a learning rate that differs from step to step.
    options.schedule = Schedule {
        kind: ScheduleKind::Cosine { min_lr: 0.0 },
        base_lr: 0.045,
        warmup_epochs: 0.5,
    };
    train(common::gpu(), &options).expect("train");
    let metrics = read_metrics(&dir.path().join(METRICS)).unwrap();
    let steps_per_epoch = Checkpoint::load(&dir.path().join(LAST)).unwrap().step / epochs;
    assert_eq!(steps_per_epoch, 9);
    let logged = read_back(dir.path());
    println!("event files {:?}", logged.files);
    assert_eq!(logged.files.len(), 1, "{:?}", logged.files);
    assert!(logged.files[0].starts_with("events.out.tfevents."));
    assert_epochs_match(&logged, &metrics);
    assert_step_tags(&logged, steps_per_epoch, epochs);

    for &(step, lr) in &logged.scalars["train/learning_rate"] {
        let want = options.schedule.lr_at(step - 1, steps_per_epoch, epochs);
        assert_eq!(lr as f32, want as f32, "learning rate at step {step}");
    }
    // Each point is the mean over the steps since the previous one (32 images each), so
    // weighted by those steps they give the epoch's training loss and accuracy.
    for (tag, field) in [("train/loss", 0), ("train/accuracy", 1)] {
        let mut previous = 0;
        let mut sums = vec![0.0; epochs];
        for &(step, v) in &logged.scalars[tag] {
            sums[(step - 1) / steps_per_epoch] += v * (step - previous) as f64;
            previous = step;
        }
        for (m, sum) in metrics.iter().zip(sums) {
            let want = [m.train_loss, m.train_acc][field];
            let mean = sum / steps_per_epoch as f64;
            assert!(
                (mean - want).abs() < 1e-5 * want.abs().max(1.0),
                "{tag}: {mean} vs {want}"
            );
        }
    }
    let values = logged.scalars.values().flatten();
    let non_finite: Vec<_> = values.filter(|p| !p.1.is_finite()).collect();
    assert!(non_finite.is_empty(), "{non_finite:?}");
}

#[test]
fn a_resumed_run_logs_no_step_twice() {
    let dir = tempfile::tempdir().unwrap();
    let last = dir.path().join(LAST);
    // Epoch 1 through the command line (--log-every), then resumed to 2 epochs.
    let status = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .arg("train")
        // Everything small_run sets, so that the library run below resumes this one.
        .args(common::small_fashion_run_flags(1, 320))
        .args(["--log-every", "4", "--no-progress", "--out"])
        .arg(dir.path())
        .env("MOBILENET_TUNE", "off")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run mobilenet train");
    assert!(status.success());
    let after_epoch_1 = std::fs::read(&last).unwrap();
    let resume = |epochs| TrainOptions {
        resume: true,
        ..small_run(dir.path(), epochs)
    };
    train(common::gpu(), &resume(2)).expect("resumed to 2 epochs");
    // As if killed after epoch 2 was logged but before its checkpoint was saved: the
    // next resume redoes epoch 2, and its points must replace the first ones.
    std::fs::write(&last, after_epoch_1).unwrap();
    train(common::gpu(), &resume(3)).expect("resumed to 3 epochs");

    let logged = read_back(dir.path());
    println!("event files {:?}", logged.files);
    for (tag, points) in &logged.scalars {
        let steps: Vec<usize> = points.iter().map(|p| p.0).collect();
        assert!(
            steps.windows(2).all(|w| w[0] < w[1]),
            "{tag}: steps {steps:?} repeat or go back"
        );
    }
    let metrics = read_metrics(&dir.path().join(METRICS)).unwrap();
    assert_eq!(metrics.len(), 3);
    assert_epochs_match(&logged, &metrics);
    let steps_per_epoch = Checkpoint::load(&last).unwrap().step / 3;
    assert_step_tags(&logged, steps_per_epoch, 3);
}
