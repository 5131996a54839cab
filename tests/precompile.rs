//! Compiling entry points ahead on helper devices (`Gpu::precompile`), on the real
//! adapter: on a software adapter with two or more cores each entry point not yet compiled
//! is compiled once, here or on a helper, none twice; `MOBILENET_COMPILE_THREADS=1` keeps
//! everything on this device. That plans compiled after it compute the right results is
//! every other GPU test's part (every plan's kernels are compiled this way).

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

// One test: it sets an environment variable the process shares.
#[test]
fn precompile_shares_entry_points_between_this_device_and_helpers_once() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gpu = common::open_gpu(KernelChoice::Defaults, None);
    let software = gpu.adapter().device_type == "Cpu";

    std::env::set_var("MOBILENET_COMPILE_THREADS", "1");
    let alone = gpu.precompile(&ENTRIES);
    std::env::remove_var("MOBILENET_COMPILE_THREADS");
    assert_eq!(
        alone,
        Precompiled::default(),
        "one compiler: no helpers, nothing ahead"
    );

    let first = gpu.precompile(&ENTRIES);
    if software && cores >= 2 {
        assert_eq!(first.here + first.on_helpers, DISTINCT, "{first:?}");
        assert!(first.here >= 1 && first.on_helpers >= 1, "{first:?}");
    } else {
        assert_eq!(
            first,
            Precompiled::default(),
            "only software adapters take helpers"
        );
    }
    let again = gpu.precompile(&ENTRIES);
    assert_eq!(again, Precompiled::default(), "nothing is compiled twice");
    for (shader, entry) in ENTRIES {
        gpu.pipeline(shader, entry)
            .expect("the precompiled pipeline");
    }
}
