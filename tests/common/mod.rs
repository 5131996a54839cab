//! Shared test harness: the GPU (never skipped), seeded data, tolerance checks.
#![allow(dead_code)]

use mobilenet_wgpu::data::Augment;
use mobilenet_wgpu::gpu::KernelChoice;
use mobilenet_wgpu::graph::{GraphBuilder, ParamStore};
use mobilenet_wgpu::ops::{alternatives, Alternatives, KernelCaps, ACCESS_KERNELS};
use mobilenet_wgpu::ops::{OpKind, Padding, ParamRole};
use mobilenet_wgpu::reference::{self, Tensor};
use mobilenet_wgpu::train::{
    DataOptions, DatasetKind, OptimizerConfig, OptimizerKind, Schedule, TrainOptions,
    DEFAULT_LOG_EVERY,
};
use mobilenet_wgpu::Gpu;
use mobilenet_wgpu::{MobileNetV1Config, Preset};
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::sync::OnceLock;

/// Relative tolerance for single ops: |gpu - ref| <= RTOL * (|ref| + rms(ref)).
pub const OP_RTOL: f64 = 1e-4;

/// Opens the adapter (a device of its own, choosing kernels as told, its choices cached in
/// `cache`), failing loudly with the install command: a GPU test never passes by skipping.
pub fn open_gpu(choice: KernelChoice, cache: Option<std::path::PathBuf>) -> Gpu {
    match Gpu::new() {
        Ok(gpu) => gpu.with_tuning(choice, cache),
        Err(e) => panic!(
            "GPU tests need a wgpu adapter and none could be opened: {e}\n\
             On Debian/Ubuntu without a GPU: apt-get install libvulkan1 mesa-vulkan-drivers"
        ),
    }
}

/// The adapter every GPU test runs on, with the default kernels: a choice by timing would
/// make results depend on the machine's load (tests/tuning.rs tests the tuner itself).
pub fn gpu() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| open_gpu(KernelChoice::Defaults, None))
}

/// One device per kernel this adapter offers, each forced to run it where it applies (the
/// defaults elsewhere), with the kernel's name: every GEMM kernel, and every depthwise
/// kernel but the default (the scalar form, which batch norm shares, and the vec4 one where
/// the 64-bit-word kernel is the default). The golden and gradient tests run every
/// candidate the tuner may pick.
pub fn kernel_devices() -> Vec<(&'static Gpu, &'static str)> {
    static DEVICES: OnceLock<Vec<(Gpu, &'static str)>> = OnceLock::new();
    DEVICES
        .get_or_init(|| {
            let depthwise = depthwise_kernels(gpu()).into_iter().skip(1);
            let offered = gemm_kernels(gpu()).into_iter().chain(depthwise);
            selected_kernels(offered.collect())
                .into_iter()
                .map(|name| (open_gpu(KernelChoice::Force(name.to_string()), None), name))
                .collect()
        })
        .iter()
        .map(|(device, name)| (device, *name))
        .collect()
}

/// One device per int8 GEMM kernel this adapter offers, each forced to run it (see
/// `kernel_devices`), where depthwise runs its default (16 channels at a time where the
/// channel count allows); and one forcing the 4-channel depthwise kernel.
pub fn int8_kernel_devices() -> Vec<&'static Gpu> {
    static DEVICES: OnceLock<Vec<Gpu>> = OnceLock::new();
    DEVICES
        .get_or_init(|| {
            let dispatch = mobilenet_wgpu::ops::int8_pointwise(
                &[1, 2, 2, 8],
                8,
                mobilenet_wgpu::ops::Int8Output::linear(0),
            );
            let offered = alternatives(&dispatch, &KernelCaps::of(gpu()))
                .expect("the int8 pointwise GEMM has alternatives");
            let names = offered.candidates.iter().map(|c| c.name);
            selected_kernels(names.chain([ACCESS_KERNELS[1]]).collect())
                .into_iter()
                .map(|name| open_gpu(KernelChoice::Force(name.to_string()), None))
                .collect()
        })
        .iter()
        .collect()
}

/// The kernels of `offered` that `MOBILENET_TEST_KERNELS` (comma-separated name prefixes,
/// e.g. "subgroup") selects; all of them when it is unset. .ci/run's pass at lavapipe's
/// 16-lane subgroups takes only the subgroup kernels, the only ones a subgroup's width can
/// change, as compiling for that width is slow where the CPU has no 512-bit vectors.
fn selected_kernels(offered: Vec<&'static str>) -> Vec<&'static str> {
    let Ok(prefixes) = std::env::var("MOBILENET_TEST_KERNELS") else {
        return offered;
    };
    let chosen: Vec<&'static str> = offered
        .iter()
        .copied()
        .filter(|name| prefixes.split(',').any(|p| name.starts_with(p.trim())))
        .collect();
    assert!(
        !chosen.is_empty(),
        "MOBILENET_TEST_KERNELS={prefixes:?} selects none of this adapter's kernels {offered:?}"
    );
    chosen
}

/// The GEMM kernels the tuner times for the shape a tuning-cache key names ("gemm ENTRY
/// WORDS"): the candidates depend on the operands' layout, which the uniform words give.
pub fn gemm_kernels_for_key(device: &Gpu, key: &str) -> Vec<&'static str> {
    // The entry point decides the candidates: only two kernels have the chunk-walking ones.
    let entry = match key.split(' ').nth(1) {
        Some("forward_stats") => "forward_stats",
        Some("forward_bt_sums") => "forward_bt_sums",
        _ => "forward",
    };
    let words: Vec<u32> = key
        .split(' ')
        .nth(2)
        .expect("a GEMM key ends with its uniform words")
        .split(',')
        .map(|w| w.parse().expect("a uniform word"))
        .collect();
    let dispatch = mobilenet_wgpu::ops::Dispatch {
        shader: mobilenet_wgpu::gpu::Shader::Gemm,
        entry,
        uniform: bytemuck::cast_slice(&words).to_vec(),
        bindings: Vec::new(),
        workgroups: [1, 1, 1],
    };
    let offered = alternatives(&dispatch, &KernelCaps::of(device)).expect("a GEMM");
    offered.timed().map(|c| c.name).collect()
}

/// The GEMM kernels this adapter can run, the default first: those offered for a narrow
/// pointwise convolution (every kernel but `subgroup-rows` has an entry for it), then
/// those offered only for its training form with batch-norm statistics (`subgroup-rows`).
pub fn gemm_kernels(device: &Gpu) -> Vec<&'static str> {
    let caps = KernelCaps::of(device);
    let dispatch = mobilenet_wgpu::ops::Pointwise {
        out_channels: 8,
        fused: None,
    }
    .forward(&[1, 2, 2, 8], &[1, 2, 2, 8])
    .remove(0);
    let with_stats =
        mobilenet_wgpu::ops::with_output_stats(&dispatch).expect("a plain pointwise GEMM");
    let mut names = Vec::new();
    for form in [dispatch, with_stats] {
        let offered = alternatives(&form, &caps).expect("a pointwise convolution is a GEMM");
        for candidate in offered.candidates {
            if !names.contains(&candidate.name) {
                names.push(candidate.name);
            }
        }
    }
    names
}

/// The depthwise kernels this adapter offers for a 3x3 layer on 16 channels, the default
/// first.
pub fn depthwise_kernels(device: &Gpu) -> Vec<&'static str> {
    let offered = depthwise_alternatives(device);
    offered.candidates.iter().map(|c| c.name).collect()
}

/// Those of `depthwise_kernels` that the tuner times on this adapter.
pub fn timed_depthwise_kernels(device: &Gpu) -> Vec<&'static str> {
    depthwise_alternatives(device)
        .timed()
        .map(|c| c.name)
        .collect()
}

fn depthwise_alternatives(device: &Gpu) -> Alternatives {
    let depthwise = mobilenet_wgpu::ops::Depthwise {
        kernel: 3,
        stride: 1,
        padding: Padding::Symmetric,
        fused: None,
    };
    let shape = [1, 4, 4, 16];
    let dispatch = depthwise.forward(&shape, &shape).remove(0);
    alternatives(&dispatch, &KernelCaps::of(device)).expect("a vec4 depthwise")
}

/// The batch-norm kernels this adapter offers for the entry point a tuning-cache key names
/// ("batchnorm <entry> <uniform words>"), on 16 channels, the default first.
pub fn batchnorm_kernels_for_key(device: &Gpu, key: &str) -> Vec<&'static str> {
    let entry = key
        .split(' ')
        .nth(1)
        .expect("a batchnorm key names its entry point");
    let bn = mobilenet_wgpu::ops::BatchNorm {
        eps: 1e-5,
        activation: mobilenet_wgpu::ops::Activation::Relu,
    };
    let shape = [1, 4, 4, 16];
    let train = mobilenet_wgpu::ops::TrainSettings::default();
    let mut passes = bn.forward_train(&shape, &train);
    passes.extend(bn.backward(&shape, &shape, true, &train));
    let dispatch = passes.iter().find(|d| d.entry == entry);
    let dispatch = dispatch.unwrap_or_else(|| panic!("no batch-norm pass runs {entry}"));
    let offered = alternatives(dispatch, &KernelCaps::of(device)).expect("a vec4 batch norm");
    offered.candidates.iter().map(|c| c.name).collect()
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
    run_single_op_on(gpu(), kind, input_shape, seed)
}

/// `run_single_op` on a given device.
pub fn run_single_op_on(
    device: &Gpu,
    kind: OpKind,
    input_shape: &[usize],
    seed: u64,
) -> (Vec<f32>, Tensor) {
    let mut g = GraphBuilder::new();
    let x = g.input("x", input_shape);
    let y = g.add("op", kind, x).expect("valid test shape");
    g.output(y).expect("output");
    let params = random_params(&g, seed);
    let mut r = rng(seed);
    let input = uniform(&mut r, input_shape.iter().product(), -2.0, 2.0);
    let plan = g.compile(device).expect("compile");
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
/// Checks the op on every GEMM kernel the adapter can run (see `kernel_devices`); returns
/// the largest error.
pub fn check_op(what: &str, kind: OpKind, input_shape: &[usize], seed: u64) -> f64 {
    kernel_devices()
        .into_iter()
        .map(|(device, gemm)| {
            let (gpu_out, ref_out) = run_single_op_on(device, kind.clone(), input_shape, seed);
            assert_close(
                &format!("{what} [{gemm}]"),
                &gpu_out,
                &ref_out.data,
                OP_RTOL,
            )
        })
        .fold(0.0, f64::max)
}

// Edge shapes shared by the forward (golden) and backward (gradient) tests: batch 1 and 3,
// odd sizes, stride 2 on odd and even inputs, channel counts that are not multiples of
// the workgroup or tile, alpha-0.25 widths, 1x1 spatial sizes.

pub const PADDINGS: [Padding; 2] = [Padding::Symmetric, Padding::Same];

/// Standard convolution: (input NHWC, output channels, stride). The one-channel cases run
/// the quad im2col (rows of 10 and 8 outputs at stride 1 and 2, a short last quad at 10).
pub const CONV_CASES: [([usize; 4], usize, usize); 9] = [
    ([1, 7, 7, 3], 8, 2),
    ([3, 15, 15, 3], 13, 1),
    ([1, 8, 8, 3], 24, 2),
    ([3, 16, 16, 1], 8, 2),
    ([1, 15, 15, 3], 32, 2),
    ([2, 5, 6, 2], 3, 1),
    ([1, 1, 1, 3], 3, 2),
    ([2, 9, 10, 1], 8, 1),
    ([1, 11, 7, 1], 5, 2),
];

/// Depthwise: (input NHWC, stride). Each invocation of the 3x3 forward takes several of the
/// small images of the 2x2x1000, 4x4x1000 and 1x1x1030 cases (ops::depthwise's
/// images_per_invocation: 2 of 5, the last group short; 3 of 6 at stride 2; all 7, with
/// channels not a multiple of 4). Images of at most 2x2 pixels in and out (those, but the
/// 4x4 ones, and the last three) take the whole-image kernel, `forward_3x3_small`.
pub const DEPTHWISE_CASES: [([usize; 4], usize); 16] = [
    ([1, 7, 7, 13], 2),
    ([3, 15, 15, 8], 1),
    ([1, 8, 8, 24], 2),
    ([3, 7, 7, 3], 1),
    ([1, 16, 16, 16], 2),
    ([1, 3, 3, 1000], 1),
    ([2, 2, 2, 64], 2),
    ([1, 1, 1, 13], 2),
    ([5, 2, 2, 1000], 1),
    ([6, 4, 4, 1000], 2),
    ([7, 1, 1, 1030], 1),
    // Channel groups a multiple of 8, spread across a subgroup's lanes (spread_group).
    ([2, 9, 7, 32], 1),
    ([1, 10, 9, 64], 2),
    // Small images one pixel high or wide.
    ([3, 2, 1, 12], 1),
    ([4, 1, 2, 20], 2),
    ([2, 2, 2, 6], 1),
];

/// Pointwise: (input NHWC, output channels). [2, 40, 40, 8] has 3200 rows, so its weight
/// gradient takes the split-K path. With 512 and 1024 outputs, inference stores the
/// weight's rows padded (`padded_row_stride`).
pub const POINTWISE_CASES: [([usize; 4], usize); 12] = [
    ([1, 7, 7, 3], 13),
    ([3, 15, 15, 8], 24),
    ([1, 1, 1, 1000], 13),
    ([2, 5, 5, 16], 1000),
    ([1, 8, 8, 64], 64),
    ([3, 3, 3, 13], 3),
    ([1, 4, 4, 256], 8),
    ([2, 40, 40, 8], 16),
    ([1, 2, 3, 1], 1),
    ([1, 3, 3, 16], 512),
    ([2, 3, 3, 24], 512),
    ([1, 2, 2, 12], 1024),
];

/// Batch norm + activation inputs.
pub const BN_SHAPES: [[usize; 4]; 5] = [
    [1, 7, 7, 13],
    [3, 15, 15, 8],
    [1, 2, 2, 1000],
    [2, 2, 2, 24],
    [3, 1, 1, 3],
];

/// Global average pool inputs.
pub const POOL_SHAPES: [[usize; 4]; 5] = [
    [1, 7, 7, 13],
    [3, 15, 15, 8],
    [2, 1, 1, 1000],
    [1, 4, 4, 256],
    [3, 2, 5, 3],
];

/// Dense: ([batch, in], out).
pub const DENSE_CASES: [([usize; 2], usize); 7] = [
    ([1, 13], 1000),
    ([3, 1000], 10),
    ([3, 8], 3),
    ([1, 256], 13),
    ([3, 1024], 1000),
    ([300, 16], 13),
    ([1, 1], 1),
];

/// Asserts that two checkpoints hold bit-identical weights and optimizer state (how a resumed
/// run is compared with the uninterrupted one).
pub fn assert_same_checkpoint(
    a: &mobilenet_wgpu::train::checkpoint::Checkpoint,
    b: &mobilenet_wgpu::train::checkpoint::Checkpoint,
) {
    assert_eq!((a.epoch, a.step), (b.epoch, b.step));
    for (name, _, values) in a.params.iter().chain(a.optimizer_state.iter()) {
        let other = b
            .params
            .get(name)
            .or_else(|| b.optimizer_state.get(name))
            .unwrap_or_else(|| panic!("{name} is missing from the second checkpoint"));
        assert!(
            values
                .iter()
                .zip(other)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{name} differs between the resumed and the uninterrupted run"
        );
    }
}

/// Batches whose pre-activations come this close to a ReLU kink are redrawn (see
/// `min_kink_distance`).
pub const KINK_MARGIN: f64 = 1e-5;

/// Smallest distance of any BN pre-activation (training mode) to an activation kink (0,
/// and 6 for ReLU6). A pre-activation within f32 rounding of a kink takes different
/// branches on the GPU and in the f64 reference (seen: |z| = 2.4e-6 flipped one ReLU
/// mask and changed the upstream gradients by 30%), which says nothing about either
/// implementation, so the whole-network test draws batches that keep clear of them.
/// Kinks themselves are tested op by op in tests/gradients.rs.
pub fn min_kink_distance(graph: &GraphBuilder, params: &ParamStore, input: &[f32]) -> f64 {
    let mut x = Tensor::new(
        graph.shape(graph.inputs()[0]).unwrap().to_vec(),
        input.to_vec(),
    );
    let mut closest = f64::INFINITY;
    for node in graph.nodes() {
        let values: Vec<&[f32]> = node
            .params
            .iter()
            .map(|&p| params.get(&graph.params()[p].name).unwrap())
            .collect();
        if let OpKind::BatchNorm(op) = &node.kind {
            let c = x.shape[3];
            let (mean, var) = reference::batch_stats(&x);
            for (i, &v) in x.data.iter().enumerate() {
                let ch = i % c;
                let z = (v as f64 - mean[ch]) / (var[ch] + op.eps as f64).sqrt()
                    * values[0][ch] as f64
                    + values[1][ch] as f64;
                closest = closest.min(z.abs());
                if op.activation == mobilenet_wgpu::ops::Activation::Relu6 {
                    closest = closest.min((z - 6.0).abs());
                }
            }
        }
        if graph.outputs().first() == Some(&node.output) {
            break;
        }
        x = reference::run_op_train(&node.kind, &x, &values);
    }
    closest
}

/// A small training chain (depthwise, BN + ReLU6, pointwise, BN + ReLU6, pool, dense) on
/// `batch` 6x6x5 inputs: the GPU matches the CPU reference on it to 1e-4 over several steps.
pub fn small_net(batch: usize) -> GraphBuilder {
    let mut g = GraphBuilder::new();
    let x = g.input("x", &[batch, 6, 6, 5]);
    let bn = mobilenet_wgpu::ops::BatchNorm {
        eps: 1e-3,
        activation: mobilenet_wgpu::ops::Activation::Relu6,
    };
    let dw = mobilenet_wgpu::ops::Depthwise {
        kernel: 3,
        stride: 2,
        padding: Padding::Same,
        fused: None,
    };
    let y = g.depthwise("dw", x, dw).unwrap();
    let y = g.batch_norm("dw_bn", y, bn.clone()).unwrap();
    let y = g
        .pointwise(
            "pw",
            y,
            mobilenet_wgpu::ops::Pointwise {
                out_channels: 12,
                fused: None,
            },
        )
        .unwrap();
    let y = g.batch_norm("pw_bn", y, bn).unwrap();
    let y = g.global_avg_pool("pool", y).unwrap();
    let y = g
        .dense(
            "fc",
            y,
            mobilenet_wgpu::ops::Dense {
                out_features: 7,
                read_only: false,
            },
        )
        .unwrap();
    g.output(y).unwrap();
    g
}

/// The small network the training tests use: width 0.25 at Fashion-MNIST's 28x28x1, the
/// paper's stride-2 stem.
pub fn small_fashion_model() -> MobileNetV1Config {
    MobileNetV1Config {
        alpha: 0.25,
        resolution: 28,
        in_channels: 1,
        stem_stride: 2,
        classes: 10,
        ..MobileNetV1Config::preset(Preset::Paper)
    }
}

/// A short Fashion-MNIST run of the first `limit` training images (10% held out) and 200
/// test images into `out`: the width-0.25 network at 28x28 with the stride-2 stem.
pub fn small_fashion_run(out: &Path, epochs: usize, limit: usize) -> TrainOptions {
    TrainOptions {
        dataset: DatasetKind::FashionMnist,
        data_dir: None,
        val_dir: None,
        data: DataOptions::default(),
        model: small_fashion_model(),
        epochs,
        batch_size: 32,
        optimizer: OptimizerConfig {
            weight_decay: 4e-5,
            ..OptimizerConfig::new(OptimizerKind::Rmsprop)
        },
        schedule: Schedule::paper(),
        bn_momentum: 0.1,
        seed: 3,
        limit: Some(limit),
        test_limit: Some(200),
        val_fraction: 0.1,
        augment: Augment {
            pad_crop: 2,
            hflip: true,
            ..Augment::default()
        },
        out_dir: out.to_path_buf(),
        resume: false,
        progress: false,
        progress_bar: false,
        log_every: DEFAULT_LOG_EVERY,
        finetune: None,
        parallel: Default::default(),
    }
}

/// The `mobilenet train` flags that make its options those of `small_fashion_run` with
/// `limit` images (the augmentation and `--log-every` aside), so that a library run can
/// resume a command-line one.
pub fn small_fashion_run_flags(epochs: usize, limit: usize) -> Vec<String> {
    let flags = [
        ("--epochs", epochs.to_string()),
        ("--limit", limit.to_string()),
        ("--test-limit", "200".into()),
        ("--batch-size", "32".into()),
        ("--alpha", "0.25".into()),
        ("--stem-stride", "2".into()),
        ("--optimizer", "rmsprop".into()),
        ("--lr", "0.045".into()),
        ("--schedule", "step".into()),
        ("--weight-decay", "4e-5".into()),
        ("--bn-momentum", "0.1".into()),
        ("--val-fraction", "0.1".into()),
        ("--seed", "3".into()),
    ];
    flags
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_string(), value])
        .collect()
}
