//! End-to-end training runs on a small real subset of Fashion-MNIST (the Debian package
//! `dataset-fashion-mnist`, installed by scripts/setup.sh): the loss falls, the run
//! directory holds what it should, a killed run resumes to exactly the result of an
//! uninterrupted one, and a diverging run stops keeping its last good checkpoint.

mod common;

use mobilenet_wgpu::train::checkpoint::Checkpoint;
use mobilenet_wgpu::train::confusion::CONFUSION;
use mobilenet_wgpu::train::metrics::read_metrics;
use mobilenet_wgpu::train::steps::{read_steps, STEPS};
use mobilenet_wgpu::train::trainer::{BEST, CURVES, LAST, METRICS};
use mobilenet_wgpu::train::{train, OptimizerConfig, OptimizerKind, Schedule, ScheduleKind};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn loss_falls_and_the_run_directory_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = common::small_fashion_run(dir.path(), 4, 2000);
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
    // The confusion matrix of the last test evaluation, and the per-step log the curves
    // draw: read-backs within each epoch and one at its end (epoch 1.0, 2.0, ...).
    assert!(dir.path().join(CONFUSION).exists(), "{CONFUSION} missing");
    let steps = read_steps(&dir.path().join(STEPS));
    assert!(
        steps
            .windows(2)
            .all(|w| w[0].step < w[1].step && w[0].epoch < w[1].epoch),
        "{steps:?}"
    );
    for epoch in 1..=4 {
        let end = steps.iter().find(|s| s.epoch == epoch as f64);
        assert_eq!(end.map(|s| s.step), Some(epoch * (1800 / 32)), "{steps:?}");
    }
    assert!(steps.iter().all(|s| s.loss.is_finite() && s.lr > 0.0));
    let last = Checkpoint::load(&dir.path().join(LAST)).unwrap();
    assert_eq!((last.epoch, last.step), (4, 4 * (1800 / 32)));
    assert!(!last.optimizer_state.is_empty());
    assert_eq!(last.class_names[0], "T-shirt/top");
}

#[test]
fn an_existing_run_is_not_overwritten_without_resume() {
    let dir = tempfile::tempdir().unwrap();
    train(common::gpu(), &common::small_fashion_run(dir.path(), 1, 96)).expect("first run");
    let before = std::fs::read(dir.path().join(LAST)).unwrap();
    let err = train(common::gpu(), &common::small_fashion_run(dir.path(), 1, 96))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    assert_eq!(std::fs::read(dir.path().join(LAST)).unwrap(), before);
    let mut other = common::small_fashion_run(dir.path(), 2, 96);
    other.resume = true;
    other.seed = 4;
    let err = train(common::gpu(), &other).unwrap_err().to_string();
    assert!(err.contains("other options"), "{err}");
}

#[test]
fn a_killed_run_resumes_to_the_uninterrupted_result() {
    let epochs = 3;
    let straight = tempfile::tempdir().unwrap();
    train(
        common::gpu(),
        &common::small_fashion_run(straight.path(), epochs, 320),
    )
    .expect("uninterrupted run");

    // The same run through the CLI, killed with SIGKILL once its first epoch is saved.
    let killed = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .arg("train")
        // Everything small_run sets, so the options match whatever the CLI defaults are.
        .args(common::small_fashion_run_flags(3, 320))
        .args(["--pad-crop", "2", "--flip", "--no-progress", "--out"])
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

    let mut resume = common::small_fashion_run(killed.path(), epochs, 320);
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
    let mut options = common::small_fashion_run(dir.path(), 3, 96);
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
fn divergence_in_the_first_epoch_says_no_checkpoint_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = common::small_fashion_run(dir.path(), 2, 96);
    options.schedule = Schedule {
        kind: ScheduleKind::Constant,
        base_lr: 1e35,
        warmup_epochs: 0.0,
    };
    options.optimizer = OptimizerConfig::new(OptimizerKind::Sgd);
    let err = train(common::gpu(), &options).unwrap_err().to_string();
    assert!(err.contains("epoch 1"), "{err}");
    assert!(
        err.contains("before any checkpoint was written") && !err.contains("was kept"),
        "{err}"
    );
    assert!(!dir.path().join(LAST).exists());
}

/// `mobilenet train` on 96 Fashion-MNIST images for `epochs`, then `extra` flags; its
/// output.
fn train_cli(out: &Path, epochs: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args(["train", "--epochs", epochs])
        .args(["--limit", "96", "--test-limit", "50"])
        .args(["--alpha", "0.25", "--stem-stride", "2", "--no-progress"])
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run mobilenet train")
}

/// The evaluation after each epoch runs the network as inference does, batch norm folded
/// into the convolutions with its running statistics: its test figures are those `mobilenet
/// eval` (which folds) gives the checkpoint the epoch wrote, on the same 50 images, to the
/// last bit where both run the same kernels.
#[test]
fn the_epoch_evaluation_is_the_folded_network_the_checkpoint_gives() {
    let dir = tempfile::tempdir().unwrap();
    let default_kernels = [("MOBILENET_TUNE", "off")];
    let output = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .envs(default_kernels)
        .args(["train", "--epochs", "2"])
        .args(["--limit", "96", "--test-limit", "50"])
        .args(["--alpha", "0.25", "--stem-stride", "2", "--no-progress"])
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("run mobilenet train");
    assert!(output.status.success(), "{output:?}");
    let metrics = read_metrics(&dir.path().join(METRICS)).unwrap();
    let last = metrics.last().expect("two epochs of metrics");
    let eval = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .envs(default_kernels)
        .args([
            "eval",
            "--json",
            "--limit",
            "50",
            "--batch-size",
            "32",
            "--weights",
        ])
        .arg(dir.path().join(LAST))
        .output()
        .expect("run mobilenet eval");
    assert!(eval.status.success(), "{eval:?}");
    let figures: serde_json::Value = serde_json::from_slice(&eval.stdout).expect("eval JSON");
    assert_eq!(figures["count"], 50);
    assert_eq!(Some(figures["loss"].as_f64().unwrap()), last.test_loss);
    assert_eq!(Some(figures["top1"].as_f64().unwrap()), last.test_acc);
}

#[test]
fn resume_without_a_checkpoint_says_a_new_run_starts() {
    let dir = tempfile::tempdir().unwrap();
    // What a run killed in its first epoch leaves: a lock, perhaps metrics, no checkpoint.
    std::fs::write(dir.path().join(METRICS), "").unwrap();
    let output = train_cli(dir.path(), "1", &["--resume"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("holds no checkpoint") && text.contains("a new run starts"),
        "{text}"
    );
    assert!(text.contains("epoch 1/1"), "{text}");
    assert!(dir.path().join(LAST).is_file());
}

#[test]
fn missing_data_and_bad_checkpoints_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = common::small_fashion_run(dir.path(), 1, 96);
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
    let mut second = common::small_fashion_run(dir.path(), 1, 64);
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
