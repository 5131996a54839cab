//! Per-epoch metrics files, the epoch report line, and the curves PNG.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use mobilenet_wgpu::train::curves::{plot_curves, CurvesError, CURVES_SIZE};
use mobilenet_wgpu::train::metrics::{
    append_metrics, format_epoch_line, read_metrics, truncate_metrics, EpochMetrics, MetricsError,
};

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
        test_loss: eval(0.15),
        test_acc: eval(-1.6).map(|v| v.clamp(0.0, 1.0)),
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
        test_loss: Some(0.4011),
        test_acc: Some(0.857),
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

/// The series colours used by the plot: train blue, val orange, test green.
const TRAIN: [u8; 3] = [31, 119, 180];
const VAL: [u8; 3] = [255, 127, 14];
const TEST: [u8; 3] = [44, 160, 44];

#[test]
fn curves_png_for_zero_one_and_many_epochs() {
    let dir = tempfile::tempdir().unwrap();
    for count in [0usize, 1, 5] {
        for with_eval in [false, true] {
            let epochs: Vec<EpochMetrics> = (1..=count).map(|e| epoch(e, with_eval)).collect();
            let path = dir.path().join(format!("curves-{count}-{with_eval}.png"));
            plot_curves(&path, &epochs, &format!("{count} epochs")).unwrap();

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
    plot_curves(&path, &epochs, "").unwrap();
    let (size, _) = decode_png(&path);
    assert_eq!(size, CURVES_SIZE);
}

#[test]
fn curves_into_a_missing_directory_fail_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("curves.png");
    let err = plot_curves(&path, &[epoch(1, true)], "t").unwrap_err();
    assert!(matches!(err, CurvesError::Write(_)), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}
