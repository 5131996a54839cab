//! Per-epoch and per-step metrics files, the epoch report line, the curves PNG and the
//! confusion matrix PNG (from `eval` too).

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use mobilenet_wgpu::train::confusion::{
    cell_color, normalized_rows, plot_confusion, ConfusionLayout, CONFUSION,
};
use mobilenet_wgpu::train::curves::{
    accuracy_range, loss_range, plot_curves, CurvesError, CURVES_SIZE,
};
use mobilenet_wgpu::train::metrics::{
    append_metrics, format_epoch_line, read_metrics, truncate_metrics, EpochMetrics, MetricsError,
};
use mobilenet_wgpu::train::steps::{append_step, read_steps, StepMetrics};

/// A plausible epoch; `with_eval` adds validation and test results.
fn epoch(epoch: usize, with_eval: bool) -> EpochMetrics {
    let t = epoch as f64;
    let eval = |offset: f64| with_eval.then_some(offset + 2.0 / t);
    EpochMetrics {
        epoch,
        lr: 0.05 / t,
        train_loss: 2.0 / t,
        train_acc: 1.0 - 0.5 / t,
        val_loss: eval(0.1),
        val_acc: eval(-1.5).map(|v| v.clamp(0.0, 1.0)),
        val_top5: eval(-1.2).map(|v| v.clamp(0.0, 1.0)),
        test_loss: eval(0.15),
        test_acc: eval(-1.6).map(|v| v.clamp(0.0, 1.0)),
        test_top5: eval(-1.3).map(|v| v.clamp(0.0, 1.0)),
        seconds: 40.0 + t,
        images_per_sec: 1400.0 + t,
        bad_files: 0,
        global_batch: 32,
        ranks: 1,
    }
}

fn append_all(path: &Path, epochs: &[EpochMetrics]) {
    for m in epochs {
        append_metrics(path, m).unwrap();
    }
}

fn append_raw(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn metrics_append_and_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let epochs: Vec<EpochMetrics> = (1..=4).map(|e| epoch(e, e % 2 == 0)).collect();
    append_all(&path, &epochs);
    assert_eq!(read_metrics(&path).unwrap(), epochs);
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 4, "one line per epoch:\n{text}");
    assert!(text.ends_with('\n'));
}

#[test]
fn diverged_losses_survive_the_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let mut m = epoch(1, true);
    m.train_loss = f64::NAN;
    m.val_loss = Some(f64::INFINITY);
    m.test_loss = Some(f64::NEG_INFINITY);
    append_metrics(&path, &m).unwrap();
    let back = read_metrics(&path).unwrap();
    assert_eq!(back.len(), 1);
    assert!(back[0].train_loss.is_nan());
    assert_eq!(back[0].val_loss, Some(f64::INFINITY));
    assert_eq!(back[0].test_loss, Some(f64::NEG_INFINITY));
    assert_eq!(back[0].train_acc, m.train_acc);
}

#[test]
fn torn_last_line_is_ignored_and_repaired_by_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let epochs: Vec<EpochMetrics> = (1..=3).map(|e| epoch(e, true)).collect();
    append_all(&path, &epochs[..2]);
    // What a kill in the middle of writing epoch 3 leaves behind.
    append_raw(&path, b"{\"epoch\":3,\"lr\":0.0166,\"train_lo");
    assert_eq!(read_metrics(&path).unwrap(), epochs[..2]);

    append_metrics(&path, &epochs[2]).unwrap();
    assert_eq!(read_metrics(&path).unwrap(), epochs);
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        !text.contains("train_lo\""),
        "torn fragment must be gone:\n{text}"
    );
}

#[test]
fn complete_last_line_without_newline_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let first = serde_json::to_string(&epoch(1, false)).unwrap();
    fs::write(&path, first).unwrap();
    assert_eq!(read_metrics(&path).unwrap(), vec![epoch(1, false)]);
    append_metrics(&path, &epoch(2, false)).unwrap();
    assert_eq!(
        read_metrics(&path).unwrap(),
        vec![epoch(1, false), epoch(2, false)]
    );
}

#[test]
fn bad_line_is_an_error_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    append_metrics(&path, &epoch(1, true)).unwrap();
    append_raw(&path, b"\n{\"epoch\": \"two\"}\n");
    append_metrics(&path, &epoch(3, true)).unwrap();

    let err = read_metrics(&path).unwrap_err();
    // Line 2 is blank (ignored); line 3 is the bad one.
    assert!(
        matches!(err, MetricsError::BadLine { line: 3, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&format!("{}:3", path.display())), "{msg}");

    // A bad last line that was fully written (newline present) is not "torn".
    let path2 = dir.path().join("metrics2.jsonl");
    append_metrics(&path2, &epoch(1, true)).unwrap();
    append_raw(&path2, b"not json\n");
    let err = read_metrics(&path2).unwrap_err();
    assert!(
        matches!(err, MetricsError::BadLine { line: 2, .. }),
        "{err:?}"
    );

    let missing = dir.path().join("missing.jsonl");
    let err = read_metrics(&missing).unwrap_err();
    assert!(
        err.to_string().contains(&missing.display().to_string()),
        "{err}"
    );
}

#[test]
fn truncate_keeps_earlier_epochs_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let epochs: Vec<EpochMetrics> = (1..=5).map(|e| epoch(e, e > 2)).collect();
    append_all(&path, &epochs);
    append_raw(&path, b"{\"epoch\":6,"); // torn: dropped as well
    let before = fs::read_to_string(&path).unwrap();

    truncate_metrics(&path, 3).unwrap();
    assert_eq!(read_metrics(&path).unwrap(), epochs[..3]);
    let after = fs::read_to_string(&path).unwrap();
    assert!(before.starts_with(&after), "kept lines must be unchanged");
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["metrics.jsonl"], "no temporary files left");

    // Resuming a run and appending continues cleanly.
    append_metrics(&path, &epoch(4, true)).unwrap();
    assert_eq!(read_metrics(&path).unwrap().len(), 4);

    truncate_metrics(&path, 0).unwrap();
    assert!(read_metrics(&path).unwrap().is_empty());

    let missing = dir.path().join("missing.jsonl");
    truncate_metrics(&missing, 3).unwrap();
    assert!(!missing.exists());
}

#[test]
fn truncate_refuses_a_damaged_file_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    append_metrics(&path, &epoch(1, false)).unwrap();
    append_raw(&path, b"garbage\n");
    append_metrics(&path, &epoch(2, false)).unwrap();
    let before = fs::read(&path).unwrap();
    let err = truncate_metrics(&path, 1).unwrap_err();
    assert!(
        matches!(err, MetricsError::BadLine { line: 2, .. }),
        "{err:?}"
    );
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn epoch_line_matches_the_documented_format() {
    let m = EpochMetrics {
        epoch: 3,
        lr: 0.045,
        train_loss: 0.4123,
        train_acc: 0.8512,
        val_loss: Some(0.3977),
        val_acc: Some(0.86),
        val_top5: Some(0.99),
        test_loss: Some(0.4011),
        test_acc: Some(0.857),
        test_top5: Some(0.995),
        seconds: 41.2,
        images_per_sec: 1456.2,
        bad_files: 0,
        global_batch: 64,
        ranks: 1,
    };
    assert_eq!(
        format_epoch_line(&m, 10),
        "epoch 3/10  lr 0.0450  train loss 0.4123 acc 85.12%  val loss 0.3977 acc 86.00%  \
         test loss 0.4011 acc 85.70%  41.2 s  1456 img/s"
    );

    let m = EpochMetrics {
        lr: 2.5e-5,
        val_loss: None,
        val_acc: None,
        test_loss: None,
        test_acc: None,
        ..m
    };
    assert_eq!(
        format_epoch_line(&m, 90),
        "epoch 3/90  lr 2.50e-5  train loss 0.4123 acc 85.12%  41.2 s  1456 img/s"
    );

    let m = EpochMetrics { ranks: 2, ..m };
    assert_eq!(
        format_epoch_line(&m, 90),
        "epoch 3/90  lr 2.50e-5  train loss 0.4123 acc 85.12%  41.2 s  1456 img/s  \
         global batch 64 (2 ranks)"
    );
}

/// Decodes a PNG, returning its size and RGB(A) pixels.
fn decode_png(path: &Path) -> ((u32, u32), Vec<[u8; 3]>) {
    let bytes = fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let pixels = buf[..info.buffer_size()]
        .chunks_exact(3)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    ((info.width, info.height), pixels)
}

/// The series colours used by the plot: train blue, val orange, test green, the
/// per-step training loss washed-out blue, the learning rate purple.
const TRAIN: [u8; 3] = [31, 119, 180];
const VAL: [u8; 3] = [255, 127, 14];
const TEST: [u8; 3] = [44, 160, 44];
const STEP: [u8; 3] = [154, 194, 221];
const LR: [u8; 3] = [148, 103, 189];

/// Four logged steps per epoch, with a noisy loss above the epoch's and a warmup.
fn steps_for(epochs: &[EpochMetrics]) -> Vec<StepMetrics> {
    let mut steps = Vec::new();
    for m in epochs {
        for k in 1..=4 {
            let at = (m.epoch - 1) as f64 + k as f64 / 4.0;
            steps.push(StepMetrics {
                step: (m.epoch - 1) * 200 + k * 50,
                epoch: at,
                lr: 0.05 * at.min(1.0) / (1.0 + at),
                loss: m.train_loss * (1.2 + 0.1 * (k % 2) as f64),
                acc: m.train_acc,
            });
        }
    }
    steps
}

#[test]
fn curves_png_for_zero_one_and_many_epochs() {
    let dir = tempfile::tempdir().unwrap();
    for count in [0usize, 1, 5] {
        for with_eval in [false, true] {
            let epochs: Vec<EpochMetrics> = (1..=count).map(|e| epoch(e, with_eval)).collect();
            let path = dir.path().join(format!("curves-{count}-{with_eval}.png"));
            let steps = steps_for(&epochs);
            plot_curves(&path, &epochs, &steps, &format!("{count} epochs")).unwrap();

            let (size, pixels) = decode_png(&path);
            assert_eq!(size, CURVES_SIZE);
            let count_of = |color: [u8; 3]| pixels.iter().filter(|&&p| p == color).count();
            let white = count_of([255, 255, 255]);
            assert!(white > pixels.len() / 2, "mostly white background");
            assert!(white < pixels.len(), "something drawn (axes, text)");
            // Legend swatches are drawn only for series with data, so no data means no colour.
            let has_data = count > 0;
            assert_eq!(count_of(TRAIN) > 0, has_data, "train, {count} epochs");
            assert_eq!(
                count_of(VAL) > 0,
                has_data && with_eval,
                "val, {count} {with_eval}"
            );
            assert_eq!(
                count_of(TEST) > 0,
                has_data && with_eval,
                "test, {count} {with_eval}"
            );
            assert_eq!(count_of(STEP) > 0, has_data, "steps, {count} epochs");
            assert_eq!(count_of(LR) > 0, has_data, "learning rate, {count} epochs");
        }
    }
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.retain(|n| !n.ends_with(".png"));
    assert!(names.is_empty(), "temporary files left: {names:?}");
}

#[test]
fn curves_tolerate_diverged_losses_and_replace_old_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.png");
    fs::write(&path, b"an old, unrelated file that must be replaced").unwrap();
    let mut epochs: Vec<EpochMetrics> = (1..=3).map(|e| epoch(e, true)).collect();
    epochs[1].train_loss = f64::NAN;
    epochs[2].val_loss = Some(f64::INFINITY);
    plot_curves(&path, &epochs, &[], "").unwrap();
    let (size, _) = decode_png(&path);
    assert_eq!(size, CURVES_SIZE);
}

#[test]
fn curves_into_a_missing_directory_fail_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("curves.png");
    let err = plot_curves(&path, &[epoch(1, true)], &[], "t").unwrap_err();
    assert!(matches!(err, CurvesError::Write(_)), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn steps_append_read_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("steps.jsonl");
    assert!(read_steps(&path).is_empty(), "no file, no steps");
    let record = |step: usize, loss: f64| StepMetrics {
        step,
        epoch: step as f64 / 100.0,
        lr: 0.01,
        loss,
        acc: 0.5,
    };
    for step in [50, 100, 150, 200] {
        append_step(&path, &record(step, 1.0)).unwrap();
    }
    // A kill mid-write, then a resume from the checkpoint at step 100 redoing 150 and 200.
    append_raw(&path, b"{\"step\":250,\"epo");
    append_step(&path, &record(150, 0.5)).unwrap();
    append_step(&path, &record(200, 0.4)).unwrap();
    let steps = read_steps(&path);
    let seen: Vec<(usize, f64)> = steps.iter().map(|s| (s.step, s.loss)).collect();
    assert_eq!(seen, [(50, 1.0), (100, 1.0), (150, 0.5), (200, 0.4)]);
}

#[test]
fn the_accuracy_axis_follows_the_data() {
    // 85-90% used to sit on a 0-100 axis, where it looked flat.
    let r = accuracy_range(&[85.0, 87.5, 90.0]);
    assert!(
        r.start > 80.0 && r.start < 85.0 && r.end > 90.0 && r.end < 95.0,
        "{r:?}"
    );
    // A single value gets a window of a few points around it.
    let r = accuracy_range(&[87.3]);
    let width = r.end - r.start;
    assert!(r.contains(&87.3) && (2.0..5.0).contains(&width), "{r:?}");
    // Near either end the window slides inside 0..100 and keeps its width.
    let r = accuracy_range(&[99.5, 100.0]);
    assert!(r.end == 100.0 && r.start < 99.5 && r.start > 95.0, "{r:?}");
    let r = accuracy_range(&[0.0, 1.0]);
    assert!(r.start == 0.0 && r.end > 1.0 && r.end < 5.0, "{r:?}");
    let r = accuracy_range(&[10.0, 95.0]);
    assert!(r.start >= 0.0 && r.start < 10.0 && r.end > 95.0 && r.end <= 100.0);
    // Nothing to show: the whole scale.
    assert_eq!(accuracy_range(&[]), 0.0..100.0);
    assert_eq!(accuracy_range(&[f64::NAN]), 0.0..100.0);
    assert!(accuracy_range(&[f64::NAN, 50.0]).start > 45.0);
}

#[test]
fn the_loss_axis_spans_the_positive_finite_values() {
    let r = loss_range(&[2.3, 0.8, 0.31, f64::NAN, f64::INFINITY, 0.0]);
    assert!(
        r.start < 0.31 && r.start > 0.25 && r.end > 2.3 && r.end < 2.8,
        "{r:?}"
    );
    assert_eq!(loss_range(&[]), 0.1..10.0);
}

#[test]
fn accuracy_between_85_and_90_percent_fills_its_panel() {
    let accuracies = [0.85, 0.90, 0.88, 0.89, 0.895];
    let epochs: Vec<EpochMetrics> = accuracies
        .iter()
        .enumerate()
        .map(|(i, &acc)| EpochMetrics {
            train_acc: acc,
            ..epoch(i + 1, false)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.png");
    plot_curves(&path, &epochs, &[], "zoom").unwrap();
    let ((width, height), pixels) = decode_png(&path);
    // The accuracy panel is the upper right quarter; its legend sits in the lower right
    // corner, so the columns near the right edge are left out.
    let rows: Vec<u32> = pixels
        .iter()
        .enumerate()
        .filter(|(_, &p)| p == TRAIN)
        .map(|(i, _)| (i as u32 % width, i as u32 / width))
        .filter(|&(x, y)| x > width / 2 && x < width - 200 && y < height - 200)
        .map(|(_, y)| y)
        .collect();
    let extent = rows.iter().max().unwrap() - rows.iter().min().unwrap();
    assert!(extent > 200, "the 85-90% line spans only {extent} pixels");
}

/// Fashion-MNIST's first classes, as the data set names them.
fn class_names(count: usize) -> Vec<String> {
    mobilenet_wgpu::data::FASHION_MNIST_CLASSES
        .iter()
        .take(count)
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn confusion_rows_are_normalised() {
    let shares = normalized_rows(&[vec![8, 2, 0], vec![0, 5, 0], vec![1, 1, 2], vec![0, 0, 0]]);
    assert_eq!(shares[0], [0.8, 0.2, 0.0]);
    assert_eq!(shares[1], [0.0, 1.0, 0.0]);
    assert_eq!(shares[2], [0.25, 0.25, 0.5]);
    assert_eq!(
        shares[3],
        [0.0, 0.0, 0.0],
        "a class without samples stays empty"
    );
}

/// Draws `confusion` and checks the picture's size and every cell's colour (sampled a
/// quarter into the cell, clear of its percentage and the grid lines).
fn check_confusion_png(confusion: &[Vec<u64>], names: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(CONFUSION);
    let title = "Confusion matrix (% of each true class)";
    plot_confusion(&path, confusion, names, title).unwrap();
    let layout = ConfusionLayout::new(confusion.len(), names, title);
    let ((width, _), pixels) = decode_png(&path);
    assert_eq!((width, pixels.len() as u32 / width), layout.size);
    let shares = normalized_rows(confusion);
    for (row, values) in shares.iter().enumerate() {
        for (col, &share) in values.iter().enumerate() {
            let (x0, y0, x1, y1) = layout.cell_rect(row, col);
            let (x, y) = (x0 + (x1 - x0) / 4, y0 + (y1 - y0) / 4);
            let pixel = pixels[(y * width + x) as usize];
            assert_eq!(
                pixel,
                cell_color(share),
                "cell ({row}, {col}) at ({x}, {y}), {share}"
            );
        }
    }
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [CONFUSION], "no temporary files left");
}

#[test]
fn confusion_png_colours_each_cell_by_its_share() {
    // The scale must tell shares apart, or the cell checks below could not fail.
    let (empty, fifth, full) = (cell_color(0.0), cell_color(0.2), cell_color(1.0));
    let darkness = |c: [u8; 3]| 765 - c.iter().map(|&v| v as u32).sum::<u32>();
    assert!(darkness(empty) < darkness(fifth) && darkness(fifth) < darkness(full));
    assert_ne!(cell_color(0.8), cell_color(0.7));

    check_confusion_png(
        &[vec![8, 2, 0], vec![0, 5, 0], vec![1, 1, 2]],
        &class_names(3),
    );
    let ten: Vec<Vec<u64>> = (0..10)
        .map(|i| {
            (0..10)
                .map(|j| if i == j { 90 } else { (i * j % 7) as u64 })
                .collect()
        })
        .collect();
    check_confusion_png(&ten, &class_names(10));
    // Too many classes for names: indices label the axes; a row without samples.
    let mut many: Vec<Vec<u64>> = (0..200)
        .map(|i| {
            (0..200)
                .map(|j| (i == j) as u64 * 3 + (j == (i + 1) % 200) as u64)
                .collect()
        })
        .collect();
    many[7] = vec![0; 200];
    check_confusion_png(&many, &[]);
}

#[test]
fn confusion_into_a_missing_directory_fails_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join(CONFUSION);
    let err = plot_confusion(&path, &[vec![1]], &class_names(1), "t").unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

/// An untrained network for Fashion-MNIST saved as our checkpoint, as `train` would.
fn untrained_checkpoint(path: &Path) {
    use mobilenet_wgpu::graph::ParamStore;
    use mobilenet_wgpu::train::checkpoint::Checkpoint;
    use mobilenet_wgpu::train::trainer::default_normalize;
    let config = common::small_fashion_model();
    let graph = config.build(1).unwrap().graph;
    Checkpoint {
        params: ParamStore::initialize(&graph, 0),
        config,
        optimizer_state: ParamStore::new(),
        epoch: 1,
        step: 1,
        best_val_acc: None,
        normalize: default_normalize(1),
        crop_pct: 1.0,
        class_names: class_names(10),
        train_options: None,
    }
    .save(path)
    .unwrap();
}

#[test]
fn eval_draws_the_confusion_matrix_beside_the_weights_or_into_out() {
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("best.safetensors");
    untrained_checkpoint(&weights);
    let out = dir.path().join("elsewhere");
    fs::create_dir(&out).unwrap();
    let eval = |extra: &[&std::ffi::OsStr]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mobilenet"))
            .args(["eval", "--limit", "64", "--batch-size", "32", "--weights"])
            .arg(&weights)
            .args(extra)
            .output()
            .expect("run mobilenet eval");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        stdout
    };
    let stdout = eval(&["--out".as_ref(), out.as_os_str()]);
    let drawn = out.join(CONFUSION);
    assert!(stdout.contains(&drawn.display().to_string()), "{stdout}");
    assert!(
        !dir.path().join(CONFUSION).exists(),
        "--out decides where it goes"
    );
    let ((width, _), pixels) = decode_png(&drawn);
    let expected = ConfusionLayout::new(10, &class_names(10), "");
    assert_eq!(pixels.len() as u32 / width, expected.size.1);
    assert!(width >= expected.size.0);

    // Without --out, beside the weights; --json keeps stdout to the JSON record.
    let stdout = eval(&["--json".as_ref()]);
    serde_json::from_str::<serde_json::Value>(&stdout).expect("stdout is one JSON record");
    decode_png(&dir.path().join(CONFUSION));
}
