//! With no usable adapter the program fails and says how to install one.

use std::process::{Command, Output};

/// Runs a small `mobilenet bench` with extra environment variables.
fn bench_with_env(env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mobilenet"));
    command.args([
        "bench",
        "--batch",
        "1",
        "--resolution",
        "32",
        "--alpha",
        "0.25",
    ]);
    command.env_remove("WGPU_ADAPTER_NAME");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run the mobilenet binary")
}

#[test]
fn missing_adapter_fails_with_install_hint() {
    // Point the Vulkan loader at a driver list that does not exist; allow no other backend.
    let output = bench_with_env(&[
        ("WGPU_BACKEND", "vulkan"),
        ("VK_ICD_FILENAMES", "/nonexistent/icd.json"),
        ("VK_DRIVER_FILES", "/nonexistent/icd.json"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "bench succeeded without an adapter: {stderr}"
    );
    assert!(
        stderr.contains("no GPU adapter found")
            && stderr.contains("apt-get install libvulkan1 mesa-vulkan-drivers"),
        "the error does not name the fix: {stderr}"
    );
}

#[test]
fn unknown_adapter_name_lists_what_exists() {
    let output = bench_with_env(&[("WGPU_ADAPTER_NAME", "no-such-adapter-xyz")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("no-such-adapter-xyz") && stderr.contains("available"),
        "unexpected error: {stderr}"
    );
}
