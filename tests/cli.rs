//! The `mobilenet` binary as a new user meets it on a headless machine.

use std::process::Command;

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
