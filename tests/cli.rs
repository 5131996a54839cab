//! The `mobilenet` binary, and the library under it, as a new user meets them on a headless
//! machine.

use std::path::Path;
use std::process::{Command, Output};

#[test]
fn a_headless_start_prints_no_window_system_errors() {
    let output = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .arg("devices")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("run mobilenet devices");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("max_storage_buffer_binding_size"),
        "the adapters are still listed"
    );
}

/// The child half of `a_library_gpu_starts_quietly_and_keeps_a_valid_runtime_dir`: opens a
/// `Gpu` as a library user would and reports the variable it ran with.
#[test]
#[ignore = "run by a_library_gpu_starts_quietly_and_keeps_a_valid_runtime_dir"]
fn open_a_gpu_as_a_library_user() {
    mobilenet_wgpu::Gpu::new().expect("open the default adapter");
    let dir = std::env::var("XDG_RUNTIME_DIR").unwrap_or_default();
    println!("XDG_RUNTIME_DIR after Gpu::new: [{dir}]");
}

/// This test binary, running only `open_a_gpu_as_a_library_user`, with `runtime_dir` as
/// XDG_RUNTIME_DIR (unset for None): its output, and the variable the child ended with.
fn open_a_gpu_in_a_child(runtime_dir: Option<&Path>) -> (String, String) {
    let mut command = Command::new(std::env::current_exe().expect("the test binary"));
    command.args([
        "--ignored",
        "--exact",
        "open_a_gpu_as_a_library_user",
        "--nocapture",
        "--test-threads",
        "1",
    ]);
    match runtime_dir {
        Some(dir) => command.env("XDG_RUNTIME_DIR", dir),
        None => command.env_remove("XDG_RUNTIME_DIR"),
    };
    let output = command.output().expect("run the test binary");
    let text = both_streams(&output);
    assert!(
        output.status.success() && text.contains("1 passed"),
        "{text}"
    );
    let dir = text
        .split("XDG_RUNTIME_DIR after Gpu::new: [")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("the child did not report: {text}"))
        .to_string();
    (String::from_utf8_lossy(&output.stderr).into_owned(), dir)
}

#[test]
fn a_library_gpu_starts_quietly_and_keeps_a_valid_runtime_dir() {
    // Unset: the library points it at a private directory before wgpu starts, so Mesa's
    // Wayland probe finds no display silently (newer Mesa may not probe at all, hence the
    // check of the variable as well as of stderr).
    let (stderr, dir) = open_a_gpu_in_a_child(None);
    assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{stderr}");
    assert!(
        !dir.is_empty() && Path::new(&dir).is_dir(),
        "XDG_RUNTIME_DIR is [{dir}] after Gpu::new"
    );
    // A valid setting of the user's is left alone.
    let mine = tempfile::tempdir().unwrap();
    let (_, dir) = open_a_gpu_in_a_child(Some(mine.path()));
    assert_eq!(Path::new(&dir), mine.path());
}

fn both_streams(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn mobilenet(args: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run mobilenet")
}

#[test]
fn epochs_zero_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let output = mobilenet(&["train", "--epochs", "0", "--no-progress"], &run);
    let text = both_streams(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("--epochs 0 trains nothing") && text.contains("--epochs 1 or more"),
        "{text}"
    );
    assert!(!text.contains("done"), "{text}");
    assert!(!run.exists(), "a refused run left {}", run.display());

    let output = mobilenet(&["train", "--epochs", "0", "--resume"], &run);
    let text = both_streams(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("nothing to do"), "{text}");
    assert!(!run.exists(), "a refused run left {}", run.display());
}
