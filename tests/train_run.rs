//! End-to-end training runs on a small real subset of Fashion-MNIST (the Debian package
//! `dataset-fashion-mnist`, installed by scripts/setup.sh): the loss falls, the run
//! directory holds what it should, a killed run resumes to exactly the result of an
//! uninterrupted one, and a diverging run stops keeping its last good checkpoint.

mod common;

use mobilenet_wgpu::data::Augment;
use mobilenet_wgpu::train::checkpoint::Checkpoint;
use mobilenet_wgpu::train::metrics::read_metrics;
use mobilenet_wgpu::train::trainer::{BEST, CURVES, LAST, METRICS};
use mobilenet_wgpu::train::{
    train, DataOptions, DatasetKind, OptimizerConfig, OptimizerKind, Schedule, ScheduleKind,
    TrainOptions,
};
use mobilenet_wgpu::{MobileNetV1Config, Preset};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn small_run(out: &Path, epochs: usize, limit: usize) -> TrainOptions {
    TrainOptions {
        dataset: DatasetKind::FashionMnist,
        data_dir: None,
        val_dir: None,
        data: DataOptions::default(),
        model: MobileNetV1Config {
            alpha: 0.25,
            resolution: 28,
            in_channels: 1,
            stem_stride: 2,
            classes: 10,
            ..MobileNetV1Config::preset(Preset::Paper)
        },
        epochs,
        batch_size: 32,
        optimizer: OptimizerConfig {
            weight_decay: 4e-5,
            ..OptimizerConfig::new(OptimizerKind::Rmsprop)
        },
        schedule: Schedule::paper(),
        bn_momentum: 0.1,
        seed: 3,
        limit: Some(limit),
        test_limit: Some(200),
        val_fraction: 0.1,
        augment: Augment {
            pad_crop: 2,
            hflip: true,
            ..Augment::default()
        },
        out_dir: out.to_path_buf(),
        resume: false,
        progress: false,
        finetune: None,
        parallel: Default::default(),
    }
}

#[test]
fn loss_falls_and_the_run_directory_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = small_run(dir.path(), 4, 2000);
    options.test_limit = Some(500);
    let summary = train(common::gpu(), &options).expect("train");
    let losses: Vec<f64> = summary.epochs.iter().map(|m| m.train_loss).collect();
    let accuracy = summary.test.as_ref().map(|t| t.top1);
    println!("train loss per epoch: {losses:?}, test accuracy {accuracy:?}");
    assert!(
        losses.windows(2).all(|w| w[1] < w[0]) && losses[3] < losses[0] * 0.7,
        "the loss did not fall: {losses:?}"
    );
    let test = summary.test.expect("test evaluation");
    // Chance is 10%; 4 short epochs on 1,800 images get well past it.
    assert!(
        test.top1 > 0.45,
        "test accuracy {} after 4 small epochs",
        test.top1
    );
    assert_eq!(test.count, 500);
    let metrics = read_metrics(&dir.path().join(METRICS)).unwrap();
    assert_eq!(metrics.len(), 4);
    assert!(metrics
        .iter()
        .all(|m| m.val_acc.is_some() && m.test_acc.is_some() && m.images_per_sec > 0.0));
    for file in [LAST, BEST, CURVES] {
        assert!(dir.path().join(file).exists(), "{file} missing");
    }
    let last = Checkpoint::load(&dir.path().join(LAST)).unwrap();
    assert_eq!((last.epoch, last.step), (4, 4 * (1800 / 32)));
    assert!(!last.optimizer_state.is_empty());
    assert_eq!(last.class_names[0], "T-shirt/top");
}

#[test]
fn an_existing_run_is_not_overwritten_without_resume() {
    let dir = tempfile::tempdir().unwrap();
    train(common::gpu(), &small_run(dir.path(), 1, 96)).expect("first run");
    let before = std::fs::read(dir.path().join(LAST)).unwrap();
    let err = train(common::gpu(), &small_run(dir.path(), 1, 96))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    assert_eq!(std::fs::read(dir.path().join(LAST)).unwrap(), before);
    let mut other = small_run(dir.path(), 2, 96);
    other.resume = true;
    other.seed = 4;
    let err = train(common::gpu(), &other).unwrap_err().to_string();
    assert!(err.contains("other options"), "{err}");
}

#[test]
fn a_killed_run_resumes_to_the_uninterrupted_result() {
    let epochs = 3;
    let straight = tempfile::tempdir().unwrap();
    train(common::gpu(), &small_run(straight.path(), epochs, 320)).expect("uninterrupted run");

    // The same run through the CLI, killed with SIGKILL once its first epoch is saved.
    let killed = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args([
            "train",
            "--epochs",
            "3",
            "--limit",
            "320",
            "--test-limit",
            "200",
            "--batch-size",
            "32",
        ])
        // Everything small_run sets, so the options match whatever the CLI defaults are.
        .args([
            "--alpha",
            "0.25",
            "--stem-stride",
            "2",
            "--optimizer",
            "rmsprop",
            "--lr",
            "0.045",
            "--schedule",
            "step",
            "--weight-decay",
            "4e-5",
            "--bn-momentum",
            "0.1",
            "--val-fraction",
            "0.1",
        ])
        .args([
            "--seed",
            "3",
            "--pad-crop",
            "2",
            "--flip",
            "--no-progress",
            "--out",
        ])
        .arg(killed.path())
        // The library runs compared with it use the default kernels (common::gpu()); kernels
        // timed by this process could differ, and the comparison is bit for bit.
        .env("MOBILENET_TUNE", "off")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start mobilenet train");
    let metrics = killed.path().join(METRICS);
    let deadline = Instant::now() + Duration::from_secs(600);
    while read_metrics(&metrics).map(|m| m.is_empty()).unwrap_or(true) {
        assert!(Instant::now() < deadline, "the first epoch never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("kill the run");
    let _ = child.wait();

    let mut resume = small_run(killed.path(), epochs, 320);
    resume.resume = true;
    train(common::gpu(), &resume).expect("resumed run");

    let a = Checkpoint::load(&straight.path().join(LAST)).unwrap();
    let b = Checkpoint::load(&killed.path().join(LAST)).unwrap();
    common::assert_same_checkpoint(&a, &b);
    let ma = read_metrics(&straight.path().join(METRICS)).unwrap();
    let mb = read_metrics(&killed.path().join(METRICS)).unwrap();
    assert_eq!(ma.len(), epochs);
    assert_eq!(mb.len(), epochs);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(
            (x.epoch, x.train_loss, x.val_acc),
            (y.epoch, y.train_loss, y.val_acc)
        );
    }
}

#[test]
fn divergence_stops_training_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = small_run(dir.path(), 3, 96);
    // A sane first epoch, then a learning rate 1e30 times larger: weights overflow f32.
    options.schedule = Schedule {
        kind: ScheduleKind::StepDecay {
            factor: 1e30,
            every_epochs: 1.0,
        },
        base_lr: 0.01,
        warmup_epochs: 0.0,
    };
    options.optimizer = OptimizerConfig::new(OptimizerKind::Sgd);
    let err = train(common::gpu(), &options).unwrap_err().to_string();
    assert!(
        err.contains("training stopped and the last good checkpoint"),
        "{err}"
    );
    // BN keeps the loss finite for a while after the weights explode, so the trainer
    // also checks the weights; either way the checkpoint is the last good epoch's.
    let last = Checkpoint::load(&dir.path().join(LAST)).expect("the last good checkpoint survives");
    let completed = read_metrics(&dir.path().join(METRICS)).unwrap().len();
    assert!(
        last.epoch >= 1 && last.epoch < 3 && last.epoch == completed,
        "{}",
        last.epoch
    );
    assert!(err.contains(&format!("epoch {}", last.epoch + 1)), "{err}");
    assert!(last
        .params
        .iter()
        .all(|(_, _, v)| v.iter().all(|x| x.is_finite())));
}

#[test]
fn missing_data_and_bad_checkpoints_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = small_run(dir.path(), 1, 96);
    options.data_dir = Some(dir.path().join("no-such-dir"));
    let err = format!("{:#}", train(common::gpu(), &options).unwrap_err());
    assert!(
        err.contains("apt-get install dataset-fashion-mnist"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file at all").unwrap();
    let err = Checkpoint::load(&garbage).unwrap_err().to_string();
    assert!(err.contains("garbage.safetensors"), "{err}");
    let output = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args(["eval", "--weights"])
        .arg(&garbage)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("garbage.safetensors"));
}

#[test]
fn a_run_directory_is_locked_while_a_run_lives_and_freed_when_it_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args([
            "train",
            "--epochs",
            "50",
            "--limit",
            "640",
            "--test-limit",
            "100",
            "--no-progress",
            "--out",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start mobilenet train");
    let lock = dir.path().join(mobilenet_wgpu::train::run_lock::LOCK);
    let pid = child.id().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&lock)
        .map(|text| text.trim() != pid)
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "the run never took its lock");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut second = small_run(dir.path(), 1, 64);
    second.resume = true;
    let error = train(common::gpu(), &second).expect_err("a second run on a locked directory");
    let message = format!("{error:#}");
    assert!(
        message.contains("in use by another run") && message.contains(&pid),
        "{message}"
    );
    child.kill().expect("kill the run");
    let _ = child.wait();
    // The killed run's lock file is still there, but no longer held.
    assert!(lock.exists());
    mobilenet_wgpu::train::run_lock::RunLock::acquire(dir.path())
        .expect("the directory is free once its run is gone");
}
