//! `mobilenet bench --json` reports the fields scripts rely on (values are not timed
//! against thresholds here: a shared machine may be slow).

use std::process::Command;

#[test]
fn bench_json_has_the_documented_fields() {
    let output = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args([
            "bench",
            "--mode",
            "infer",
            "--batch",
            "2",
            "--resolution",
            "32",
            "--alpha",
            "0.25",
            "--warmup",
            "1",
            "--iters",
            "3",
            "--json",
        ])
        .output()
        .expect("run the mobilenet binary");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("one JSON object on stdout");
    for key in [
        "mode",
        "batch",
        "resolution",
        "alpha",
        "ms_per_batch",
        "images_per_sec",
        "gflops",
        "memory_bytes",
        "adapter",
    ] {
        assert!(report.get(key).is_some(), "missing {key} in {report}");
    }
    assert_eq!(report["mode"], "infer");
    assert_eq!(report["batch"], 2);
    assert!(report["ms_per_batch"].as_f64().unwrap() > 0.0);
    assert!(report["memory_bytes"].as_u64().unwrap() > 0);
}
