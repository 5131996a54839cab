//! Shared test harness: the GPU (never skipped), seeded data, tolerance checks.
#![allow(dead_code)]

use mobilenet_wgpu::graph::{GraphBuilder, ParamStore};
use mobilenet_wgpu::ops::{OpKind, ParamRole};
use mobilenet_wgpu::reference::{self, Tensor};
use mobilenet_wgpu::Gpu;
use rand::{Rng, SeedableRng};
use std::sync::OnceLock;

/// Relative tolerance for single ops: |gpu - ref| <= RTOL * (|ref| + rms(ref)).
pub const OP_RTOL: f64 = 1e-4;

/// The adapter every GPU test runs on. A machine without one fails the test, loudly,
/// with the install command: a GPU test never passes by skipping.
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new() {
        Ok(gpu) => gpu,
        Err(e) => panic!(
            "GPU tests need a wgpu adapter and none could be opened: {e}\n\
             On Debian/Ubuntu without a GPU: apt-get install libvulkan1 mesa-vulkan-drivers"
        ),
    })
}

pub fn rng(seed: u64) -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(seed)
}

pub fn uniform(rng: &mut impl Rng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// Parameters with non-trivial BN statistics (so a wrong mean/var/gamma/beta shows up)
/// that still keep activations of order one through a deep network.
pub fn random_params(graph: &GraphBuilder, seed: u64) -> ParamStore {
    let mut store = ParamStore::initialize(graph, seed);
    let mut r = rng(seed ^ 0x5eed);
    for info in graph.params() {
        let n = info.len();
        let values = match info.role {
            ParamRole::Weight { .. } => continue,
            ParamRole::Gamma => uniform(&mut r, n, 0.7, 1.3),
            ParamRole::Beta | ParamRole::Bias => uniform(&mut r, n, -0.2, 0.2),
            ParamRole::RunningMean => uniform(&mut r, n, -0.2, 0.2),
            ParamRole::RunningVar => uniform(&mut r, n, 0.5, 1.5),
        };
        store.insert(&info.name, info.shape.clone(), values);
    }
    store
}

/// Largest |gpu - ref| / (|ref| + rms(ref)) over the tensor.
pub fn relative_error(gpu: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(gpu.len(), reference.len(), "length mismatch");
    let rms = (reference.iter().map(|&v| (v as f64).powi(2)).sum::<f64>()
        / reference.len().max(1) as f64)
        .sqrt();
    gpu.iter()
        .zip(reference)
        .map(|(&g, &r)| {
            assert!(g.is_finite(), "GPU produced a non-finite value {g}");
            (g as f64 - r as f64).abs() / (r.abs() as f64 + rms + 1e-30)
        })
        .fold(0.0, f64::max)
}

/// Asserts the GPU result matches the reference within `rtol`, printing the error seen.
pub fn assert_close(what: &str, gpu: &[f32], reference: &[f32], rtol: f64) -> f64 {
    let err = relative_error(gpu, reference);
    println!("{what}: max relative error {err:.3e} (tolerance {rtol:.0e})");
    assert!(
        err <= rtol,
        "{what}: max relative error {err:.3e} exceeds {rtol:.0e}"
    );
    err
}

/// Runs a one-op graph on the GPU and the reference with seeded random data; returns
/// (gpu output, reference output).
pub fn run_single_op(kind: OpKind, input_shape: &[usize], seed: u64) -> (Vec<f32>, Tensor) {
    let mut g = GraphBuilder::new();
    let x = g.input("x", input_shape);
    let y = g.add("op", kind, x).expect("valid test shape");
    g.output(y).expect("output");
    let params = random_params(&g, seed);
    let mut r = rng(seed);
    let input = uniform(&mut r, input_shape.iter().product(), -2.0, 2.0);
    let plan = g.compile(gpu()).expect("compile");
    plan.load_params(&params).expect("load params");
    let gpu_out = plan.run(&input).expect("run").remove(0);
    let ref_out = reference::run_graph(&g, &params, &input)
        .expect("reference")
        .remove(0);
    assert_eq!(
        g.shape(y).expect("shape"),
        ref_out.shape.as_slice(),
        "graph and reference disagree on the output shape"
    );
    (gpu_out, ref_out)
}

/// `run_single_op` plus the tolerance check.
pub fn check_op(what: &str, kind: OpKind, input_shape: &[usize], seed: u64) -> f64 {
    let (gpu_out, ref_out) = run_single_op(kind, input_shape, seed);
    assert_close(what, &gpu_out, &ref_out.data, OP_RTOL)
}
