//! The programs in examples/ run, not only build: each is started on tiny inputs this
//! test writes (a few small JPEGs and PNGs, a three-class image folder at 32x32, the
//! alpha-0.25 timm fixture as "pretrained" weights) and its output is checked. Also
//! `mobilenet completions SHELL`.
//!
//! `cargo test` builds the example binaries into `<target>/debug/examples/`; this test
//! finds them next to its own binary (`<target>/debug/deps/examples-HASH`). Running only
//! this test (`cargo test --test examples`) does not build them: run
//! `cargo build --examples` first.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// `<target>/<profile>/examples/NAME`, found from this test binary's own path.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not in <target>/<profile>/deps", exe.display()));
    let path = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "example binary {} is missing: `cargo test` builds it, but `cargo test --test examples` \
         alone does not; run `cargo build --examples` first",
        path.display()
    );
    path
}

/// Runs `program`, returns its stdout; fails with both streams unless it succeeded.
fn run(program: &Path, args: &[&std::ffi::OsStr], cwd: &Path) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let stderr = String::from_utf8_lossy(&stderr);
    assert!(
        status.success(),
        "{} {args:?} failed ({status})\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        program.display()
    );
    println!("{} {args:?}:\n{stdout}", program.display());
    stdout
}

/// A noisy stripe pattern: horizontal stripes for class 0, vertical for 1, checks for 2.
fn pattern(class: usize, seed: u32, width: u32, height: u32) -> image::RgbImage {
    image::RgbImage::from_fn(width, height, |x, y| {
        let phase = seed % 4;
        let on = match class {
            0 => ((y + phase) / 3).is_multiple_of(2),
            1 => ((x + phase) / 3).is_multiple_of(2),
            _ => ((x + phase) / 4 + (y + phase) / 4).is_multiple_of(2),
        };
        let noise = (x * 31 + y * 17 + seed * 13) % 40;
        let v = if on { 180 + noise } else { 30 + noise } as u8;
        image::Rgb([v, v.saturating_add(10), v.saturating_sub(10)])
    })
}

#[test]
fn classify_prints_top_classes_of_each_image() {
    let dir = tempfile::tempdir().unwrap();
    let jpeg = dir.path().join("stripes.jpg");
    let png = dir.path().join("checks.png");
    pattern(0, 1, 48, 40).save(&jpeg).unwrap();
    pattern(2, 2, 30, 50).save(&png).unwrap();
    let weights = fixture("timm_mnv1_025_c10.safetensors");
    let out = run(
        &example("classify"),
        &[weights.as_os_str(), jpeg.as_os_str(), png.as_os_str()],
        dir.path(),
    );
    assert!(
        out.contains("alpha 0.25, 10 classes"),
        "no weights line: {out}"
    );
    for image in [&jpeg, &png] {
        let shown = image.display().to_string();
        let at = out
            .lines()
            .position(|line| line == shown)
            .unwrap_or_else(|| panic!("{shown} not listed: {out}"));
        let ranked: Vec<&str> = out.lines().skip(at + 1).take(3).collect();
        assert!(
            ranked.iter().all(|line| line.contains("%  class ")),
            "expected 3 ranked classes after {shown}: {ranked:?}"
        );
    }
}

#[test]
fn finetune_trains_a_head_on_a_folder_and_the_result_classifies() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (class, name) in ["checks", "columns", "stripes"].iter().enumerate() {
        let folder = data.join(name);
        std::fs::create_dir_all(&folder).unwrap();
        for i in 0..8u32 {
            let image = pattern(2 - class, i, 40, 36);
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            image.save(folder.join(format!("{i}.{ext}"))).unwrap();
        }
    }
    let out_dir = dir.path().join("run");
    let weights = fixture("timm_mnv1_025_c10.safetensors");
    let out = run(
        &example("finetune"),
        &[
            weights.as_os_str(),
            data.as_os_str(),
            out_dir.as_os_str(),
            "2".as_ref(),
            "32".as_ref(),
        ],
        dir.path(),
    );
    assert!(
        out.contains("classes: checks, columns, stripes"),
        "classes not reported: {out}"
    );
    for epoch in 1..=2 {
        let line = out
            .lines()
            .find(|line| line.starts_with(&format!("epoch {epoch}: train loss ")))
            .unwrap_or_else(|| panic!("no line for epoch {epoch}: {out}"));
        assert!(line.contains("val loss"), "no validation figures: {line}");
        // `progress: false`: the trainer prints nothing, so each epoch is reported once.
        let trainer_line = format!("epoch {epoch}/2 ");
        assert!(
            !out.lines().any(|line| line.starts_with(&trainer_line)),
            "the trainer printed its own epoch line: {out}"
        );
    }
    let tuned = out_dir.join("last.safetensors");
    assert!(
        out.contains(&format!("fine-tuned weights: {}", tuned.display())),
        "{out}"
    );
    assert!(tuned.is_file(), "{} was not written", tuned.display());

    // The fine-tuned checkpoint is ordinary weights: the classify example reads it and
    // names the folder's classes.
    let image = data.join("stripes/0.png");
    let out = run(
        &example("classify"),
        &[tuned.as_os_str(), image.as_os_str()],
        dir.path(),
    );
    assert!(out.contains("3 classes, 32x32 input"), "{out}");
    for name in ["checks", "columns", "stripes"] {
        assert!(
            out.contains(&format!("%  {name}")),
            "{name} not ranked: {out}"
        );
    }
}

#[test]
fn custom_graph_trains_and_infers() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&example("custom_graph"), &[], dir.path());
    assert!(out.contains("graph: 9 ops"), "{out}");
    let losses = out
        .lines()
        .find_map(|line| line.strip_prefix("mean loss of the first 5 steps "))
        .unwrap_or_else(|| panic!("no loss summary: {out}"));
    let (first, last) = losses
        .split_once(", of the last 5 steps ")
        .unwrap_or_else(|| panic!("unexpected loss summary {losses:?}"));
    let (first, last): (f64, f64) = (first.parse().unwrap(), last.parse().unwrap());
    assert!(
        last < 0.5 * first,
        "the loss did not fall: {first} -> {last}"
    );
    let inference = out
        .lines()
        .find_map(|line| line.strip_prefix("inference on 8 new samples: "))
        .unwrap_or_else(|| panic!("no inference line: {out}"));
    let correct: usize = inference.split('/').next().unwrap().parse().unwrap();
    assert!(
        correct >= 6,
        "only {correct}/8 correct after training: {out}"
    );
}

#[test]
fn completions_name_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let mobilenet = Path::new(env!("CARGO_BIN_EXE_mobilenet"));
    for shell in ["bash", "zsh", "fish"] {
        let script = run(
            mobilenet,
            &["completions".as_ref(), shell.as_ref()],
            dir.path(),
        );
        assert!(script.contains("mobilenet"), "{shell}: {script}");
        for subcommand in ["predict", "train", "finetune", "summary", "completions"] {
            assert!(
                script.contains(subcommand),
                "{shell} completions do not mention {subcommand}"
            );
        }
    }
}
