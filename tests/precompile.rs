//! Compiling entry points ahead on helper devices (`Gpu::precompile`), on the real
//! adapter: on a software Vulkan adapter (lavapipe) with two or more cores each entry point
//! not yet compiled is compiled once, here or on a helper, none twice. What `bench` reports
//! of it and `MOBILENET_COMPILE_THREADS` are tests/bench.rs's part; that plans compiled
//! after it compute the right results is every other GPU test's (every plan's kernels are
//! compiled this way).

mod common;

use mobilenet_wgpu::gpu::{KernelChoice, Precompiled, Shader};

/// Cheap entry points to compile, one of them twice.
const ENTRIES: [(Shader, &str); 6] = [
    (Shader::Reduce, "column_partial"),
    (Shader::Reduce, "sum_partials"),
    (Shader::Reduce, "sum_partials4"),
    (Shader::Pool, "forward"),
    (Shader::Pool, "backward"),
    (Shader::Reduce, "sum_partials"),
];
const DISTINCT: usize = 5;

#[test]
fn precompile_shares_entry_points_between_this_device_and_helpers_once() {
    let gpu = common::open_gpu(KernelChoice::Defaults, None);
    let first = gpu.precompile(&ENTRIES);
    let software = gpu.adapter().device_type == "Cpu";
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if software && gpu.backend() == wgpu::Backend::Vulkan && cores >= 2 {
        assert_eq!(first.here + first.on_helpers, DISTINCT, "{first:?}");
        assert!(first.here >= 1 && first.on_helpers >= 1, "{first:?}");
        assert!(first.seconds > 0.0, "{first:?}");
    } else {
        assert_eq!(
            first,
            Precompiled::default(),
            "only software Vulkan adapters take helpers"
        );
    }
    assert_eq!(
        gpu.compiled_ahead(),
        first,
        "the device's total: this one call"
    );
    let again = gpu.precompile(&ENTRIES);
    assert_eq!(again, Precompiled::default(), "nothing is compiled twice");
    for (shader, entry) in ENTRIES {
        gpu.pipeline(shader, entry)
            .expect("the precompiled pipeline");
    }
}
