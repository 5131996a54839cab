//! Every int8 kernel (issue 21) against the integer CPU reference (`reference::int8`),
//! bit for bit: `assert_eq!` on the packed output words (padded channels included, which
//! must hold the output's zero point) and on the bits of the classifier's f32 logits.
//! Odd sizes throughout: channel counts not divisible by 4, batch 1, 1x1 and odd spatial
//! sizes, stride 1 and 2, both paddings, every activation, zero points -128 and others,
//! accumulators beyond 2^24.
//!
//! Every check runs on each int8 GEMM kernel this adapter offers (`devices`): the other
//! int8 layers have one kernel each, which every device runs.

mod common;

use mobilenet_wgpu::graph::{run_dispatches, DispatchPlan, PlannedLayer, SlotData};
use mobilenet_wgpu::ops::{
    int8_pointwise, Activation, Dispatch, Int8Depthwise, Int8Gemm, Int8Output, Int8Pool, Int8Stem,
    Int8Window, Padding, Slot,
};
use mobilenet_wgpu::reference::int8 as reference;
use mobilenet_wgpu::Gpu;
use rand::Rng;

/// What an unwritten output word would hold: any word the kernel misses shows up.
const SENTINEL: u32 = 0xa5a5_a5a5;

fn devices() -> Vec<&'static Gpu> {
    common::int8_kernel_devices()
}

fn random_i8(rng: &mut impl Rng, len: usize, lo: i8, hi: i8) -> Vec<i8> {
    (0..len).map(|_| rng.random_range(lo..=hi)).collect()
}

/// How test data is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Inputs over the whole int8 range, accumulators spread across the output range.
    Spread,
    /// Inputs within 2 of the zero point, small weights and multipliers 1/2, 1/4, 3/4:
    /// many products land exactly halfway between two integers, where only rounding half
    /// to even gives the reference's result.
    Ties,
}

/// An input tensor of `len` values around zero point `zero`.
fn random_input(rng: &mut impl Rng, len: usize, zero: i32, mode: Mode) -> Vec<i8> {
    match mode {
        Mode::Spread => random_i8(rng, len, -128, 127),
        Mode::Ties => (0..len)
            .map(|_| (zero + rng.random_range(-2..=2)).clamp(-128, 127) as i8)
            .collect(),
    }
}

/// A layer's parameters as the kernels bind them: packed weights, bias_eff, per-channel
/// multipliers.
struct Params {
    weights: Vec<u32>,
    bias_eff: Vec<i32>,
    multipliers: Vec<f32>,
}

/// Random int8 weights (`[K][N]` or `[taps][C]`), an i32 bias and multipliers that put the
/// accumulators of `k` terms across the int8 range (some clamped at either end).
struct Layer {
    weight: Vec<i8>,
    bias: Vec<i32>,
    multipliers: Vec<f32>,
}

impl Layer {
    fn random(rng: &mut impl Rng, k: usize, n: usize, mode: Mode) -> Layer {
        if mode == Mode::Ties {
            return Layer {
                weight: random_i8(rng, k * n, -3, 3),
                bias: (0..n).map(|_| rng.random_range(-20..=20)).collect(),
                multipliers: (0..n).map(|c| [0.5, 0.25, 0.75][c % 3]).collect(),
            };
        }
        let spread = (k as f32).sqrt() * 150.0 * 73.0;
        Layer {
            weight: random_i8(rng, k * n, -127, 127),
            bias: (0..n)
                .map(|_| rng.random_range(-spread..spread) as i32)
                .collect(),
            multipliers: (0..n)
                .map(|_| rng.random_range(20.0..100.0) / spread)
                .collect(),
        }
    }

    fn params(&self, packed: Vec<u32>, input_zero: i32) -> Params {
        Params {
            weights: packed,
            bias_eff: reference::fold_bias(&self.bias, &self.weight, input_zero),
            multipliers: self.multipliers.clone(),
        }
    }
}

/// Runs `dispatches` with the input (packed words), the parameters and an output of
/// `out_bytes` filled with SENTINEL; returns the output's bytes.
fn run(
    gpu: &Gpu,
    dispatches: &[Dispatch],
    input: &[u32],
    params: &Params,
    out_bytes: usize,
    workspace_words: usize,
) -> Vec<u8> {
    let sentinel = vec![SENTINEL; out_bytes / 4];
    let slots = [
        (Slot::Input, SlotData::Bytes(bytemuck::cast_slice(input))),
        (
            Slot::Param(0),
            SlotData::Bytes(bytemuck::cast_slice(&params.weights)),
        ),
        (
            Slot::Param(1),
            SlotData::Bytes(bytemuck::cast_slice(&params.bias_eff)),
        ),
        (
            Slot::Param(2),
            SlotData::Bytes(bytemuck::cast_slice(&params.multipliers)),
        ),
        (
            Slot::Output,
            SlotData::Bytes(bytemuck::cast_slice(&sentinel)),
        ),
        (
            Slot::Workspace,
            SlotData::Zeroed(workspace_words as u64 * 4),
        ),
    ];
    run_dispatches(gpu, "int8 test", dispatches, &slots, Slot::Output).expect("run")
}

fn words(bytes: &[u8]) -> Vec<u32> {
    bytemuck::pod_collect_to_vec(bytes)
}

/// The expected packed output: `values` `[.., channels]`, padded channels holding z.
fn packed(values: &[i8], channels: usize, zero_point: i32) -> Vec<u32> {
    reference::pack_rows(values, channels, zero_point as i8)
}

/// Output ranges worth covering: none, ReLU and ReLU6, with zero points at -128 and not.
fn outputs() -> Vec<(&'static str, Int8Output)> {
    vec![
        ("none z=3", Int8Output::new(Activation::None, 0.05, 3)),
        ("relu z=-128", Int8Output::new(Activation::Relu, 0.05, -128)),
        (
            "relu6 z=-128",
            Int8Output::new(Activation::Relu6, 0.05, -128),
        ),
        ("relu6 z=-20", Int8Output::new(Activation::Relu6, 0.03, -20)),
    ]
}

fn check_pointwise(shape: [usize; 4], cout: usize, input_zero: i32, mode: Mode, seed: u64) {
    let mut rng = common::rng(seed);
    let cin = shape[3];
    let pixels = shape[0] * shape[1] * shape[2];
    let input = random_input(&mut rng, pixels * cin, input_zero, mode);
    let layer = Layer::random(&mut rng, cin, cout, mode);
    let params = layer.params(
        reference::pack_gemm_weights(&layer.weight, cin, cout),
        input_zero,
    );
    let acc = reference::gemm_acc(&input, cin, input_zero, &layer.weight, &layer.bias);
    let packed_input = packed(&input, cin, input_zero);
    for (what, output) in outputs() {
        let expected = reference::requantize_channels(&acc, &layer.multipliers, output);
        let dispatch = int8_pointwise(&shape, cout, output);
        let out_bytes = pixels * cout.div_ceil(4) * 4;
        for gpu in devices() {
            let got = run(
                gpu,
                std::slice::from_ref(&dispatch),
                &packed_input,
                &params,
                out_bytes,
                0,
            );
            assert_eq!(
                words(&got),
                packed(&expected, cout, output.zero_point),
                "pointwise {shape:?} -> {cout}, z_x {input_zero}, {what}"
            );
        }
    }
}

#[test]
fn pointwise_matches_the_integer_reference() {
    for mode in [Mode::Spread, Mode::Ties] {
        check_pointwise([1, 1, 1, 1], 1, -128, mode, 1);
        check_pointwise([1, 1, 1, 4], 8, 0, mode, 2);
        check_pointwise([2, 3, 5, 7], 5, -128, mode, 3);
        check_pointwise([1, 7, 9, 13], 17, 37, mode, 4);
        check_pointwise([3, 2, 2, 32], 12, -7, mode, 5);
        // Several tiles across (the last one partly past N) and down.
        check_pointwise([1, 6, 7, 20], 70, 3, mode, 8);
        // K past 1,032, where int8 products would no longer sum exactly in f32.
        check_pointwise([1, 3, 7, 1037], 9, -128, mode, 7);
    }
}

#[test]
fn pointwise_accumulators_beyond_two_to_the_24() {
    // 1024 inputs at the ends of the range against z = -128: |acc| up to 255 * 127 * 1024,
    // about 2^25.
    let mut rng = common::rng(6);
    let (cin, cout, pixels) = (1024, 6, 5);
    let input: Vec<i8> = (0..pixels * cin)
        .map(|_| if rng.random_bool(0.9) { 127 } else { -128 })
        .collect();
    let weight: Vec<i8> = (0..cin * cout)
        .map(|i| if (i % cout) % 2 == 0 { 127 } else { -127 })
        .collect();
    let bias = vec![12345, -999, 0, 1 << 20, -(1 << 20), 7];
    let acc = reference::gemm_acc(&input, cin, -128, &weight, &bias);
    assert!(acc.iter().any(|a| a.unsigned_abs() > 1 << 24), "{acc:?}");
    let max = acc.iter().map(|a| a.unsigned_abs()).max().unwrap_or(1) as f32;
    let multipliers: Vec<f32> = (0..cout).map(|c| (100.0 + c as f32) / max).collect();
    let output = Int8Output::linear(-3);
    let expected = reference::requantize_channels(&acc, &multipliers, output);
    let params = Params {
        weights: reference::pack_gemm_weights(&weight, cin, cout),
        bias_eff: reference::fold_bias(&bias, &weight, -128),
        multipliers,
    };
    let dispatch = int8_pointwise(&[1, 1, pixels, cin], cout, output);
    for gpu in devices() {
        let got = run(
            gpu,
            std::slice::from_ref(&dispatch),
            &packed(&input, cin, -128),
            &params,
            4 * pixels * 2,
            0,
        );
        assert_eq!(words(&got), packed(&expected, cout, -3));
    }
}

/// Accumulators set exactly (inputs at the zero point, so acc = q_b) where the f32
/// conversion rounds: ties between two f32s must go to the even one, as in the reference.
#[test]
fn conversion_of_large_accumulators_rounds_half_to_even() {
    let bias = vec![
        (1 << 24) + 1,
        -(1 << 24) - 1,
        (1 << 24) + 3,
        (1 << 25) + 2,
        (1 << 25) + 6,
        i32::MAX,
        i32::MIN,
        i32::MIN + 64,
        0x7fff_ff40,
        (1 << 24) - 1,
        -(1 << 30) - 64,
    ];
    let n = bias.len();
    let (cin, z) = (5, 19);
    let weight = random_i8(&mut common::rng(7), cin * n, -127, 127);
    let input = vec![z as i8; 2 * cin];
    let acc = reference::gemm_acc(&input, cin, z, &weight, &bias);
    assert_eq!(acc, [bias.clone(), bias.clone()].concat());
    let gemm = Int8Gemm { rows: 2, k: cin, n };
    // Logits with scale 1: the conversion itself.
    let ones = vec![1.0f32; n];
    let params = Params {
        weights: reference::pack_gemm_weights(&weight, cin, n),
        bias_eff: reference::fold_bias(&bias, &weight, z),
        multipliers: ones.clone(),
    };
    let expected: Vec<u32> = reference::dequantize_logits(&acc, &ones)
        .iter()
        .map(|v| v.to_bits())
        .collect();
    let packed_input = packed(&input, cin, z);
    for gpu in devices() {
        let dispatch = gemm.logits(Slot::Input, Slot::Output);
        let got = run(gpu, &[dispatch], &packed_input, &params, 4 * 2 * n, 0);
        assert_eq!(words(&got), expected, "f32(acc) of {bias:?}");
    }
    // Requantized at M = 2.5 / 2^24 (and 2.5 / 2^25): exact ties after the conversion.
    let m = 5.0 * 2f32.powi(-25);
    let multipliers: Vec<f32> = bias
        .iter()
        .map(|&b| {
            if b.unsigned_abs() >= 1 << 25 {
                m / 2.0
            } else {
                m
            }
        })
        .collect();
    let output = Int8Output::linear(0);
    let expected = reference::requantize_channels(&acc, &multipliers, output);
    let params = Params {
        multipliers,
        ..params
    };
    for gpu in devices() {
        let dispatch = gemm.forward(output, Slot::Input, Slot::Output);
        let got = run(
            gpu,
            &[dispatch],
            &packed_input,
            &params,
            4 * 2 * n.div_ceil(4),
            0,
        );
        assert_eq!(words(&got), packed(&expected, n, 0));
    }
}

fn check_logits(batch: usize, features: usize, classes: usize, input_zero: i32, seed: u64) {
    let mut rng = common::rng(seed);
    let input = random_i8(&mut rng, batch * features, -128, 127);
    let layer = Layer::random(&mut rng, features, classes, Mode::Spread);
    let scales: Vec<f32> = (0..classes)
        .map(|c| reference::logit_scale(0.02 + c as f32 * 1e-3, 3e-3))
        .collect();
    let params = Params {
        multipliers: scales.clone(),
        ..layer.params(
            reference::pack_gemm_weights(&layer.weight, features, classes),
            input_zero,
        )
    };
    let acc = reference::gemm_acc(&input, features, input_zero, &layer.weight, &layer.bias);
    let expected: Vec<u32> = reference::dequantize_logits(&acc, &scales)
        .iter()
        .map(|v| v.to_bits())
        .collect();
    let gemm = Int8Gemm {
        rows: batch,
        k: features,
        n: classes,
    };
    for gpu in devices() {
        let dispatch = gemm.logits(Slot::Input, Slot::Output);
        let input_words = packed(&input, features, input_zero);
        let got = run(
            gpu,
            &[dispatch],
            &input_words,
            &params,
            4 * batch * classes,
            0,
        );
        assert_eq!(
            words(&got),
            expected,
            "logits [{batch}, {features}] -> {classes}"
        );
    }
}

#[test]
fn classifier_logits_match_the_integer_reference() {
    check_logits(1, 1, 1, -128, 10);
    check_logits(1, 9, 10, 5, 11);
    check_logits(3, 64, 10, -128, 12);
    check_logits(5, 50, 13, -1, 13);
}

/// A convolution's test case: the input shape, filter size, stride, padding, the input's
/// zero point and how its data is drawn.
#[derive(Clone, Copy, Debug)]
struct Case {
    shape: [usize; 4],
    kernel: usize,
    stride: usize,
    padding: Padding,
    input_zero: i32,
    mode: Mode,
}

fn check_depthwise(case: Case, seed: u64) {
    let Case {
        shape,
        kernel,
        stride,
        padding,
        input_zero,
        mode,
    } = case;
    let mut rng = common::rng(seed);
    let channels = shape[3];
    let input = random_input(&mut rng, shape.iter().product(), input_zero, mode);
    let layer = Layer::random(&mut rng, kernel * kernel, channels, mode);
    let params = layer.params(
        reference::pack_depthwise_weights(&layer.weight, channels),
        input_zero,
    );
    let window = Int8Window {
        kernel,
        stride,
        padding,
        input_zero,
    };
    let (acc, out_shape) =
        reference::depthwise_acc(&input, shape, window, &layer.weight, &layer.bias);
    let packed_input = packed(&input, channels, input_zero);
    for (what, output) in outputs() {
        let expected = reference::requantize_channels(&acc, &layer.multipliers, output);
        let dispatch = Int8Depthwise { window, output }
            .forward(&shape)
            .expect("valid shape");
        let pixels: usize = out_shape[..3].iter().product();
        for gpu in devices() {
            let out_bytes = pixels * channels.div_ceil(4) * 4;
            let got = run(
                gpu,
                std::slice::from_ref(&dispatch),
                &packed_input,
                &params,
                out_bytes,
                0,
            );
            assert_eq!(
                words(&got),
                packed(&expected, channels, output.zero_point),
                "depthwise {case:?}, {what}"
            );
        }
    }
}

#[test]
fn depthwise_matches_the_integer_reference() {
    let cases = [
        ([1, 1, 1, 3], Padding::Symmetric, -128),
        ([2, 5, 7, 6], Padding::Symmetric, -128),
        ([1, 8, 8, 4], Padding::Same, 37),
        ([1, 9, 11, 13], Padding::Same, -128),
        ([2, 6, 5, 9], Padding::Symmetric, 100),
        // Multiples of 16 channels: the 3x3 kernels load 16 at a time (forced off on one
        // of the devices); odd widths leave a partial quad.
        ([2, 5, 7, 16], Padding::Symmetric, -128),
        ([1, 9, 6, 32], Padding::Same, 21),
        // Small images, enough channels that a 3x3 invocation takes several images
        // (ops::depthwise::images_per_invocation): 2 of 5, the last group short; all 7,
        // with a channel count that is not a multiple of 4.
        ([5, 2, 2, 512], Padding::Symmetric, -128),
        ([7, 1, 1, 1030], Padding::Same, 5),
    ];
    let mut seed = 20;
    // 3x3 at stride 1 and 2 run forward_3x3 and forward_3x3_s2; the others the general
    // kernel.
    for mode in [Mode::Spread, Mode::Ties] {
        for (kernel, stride) in [(3, 1), (3, 2), (1, 1), (5, 3), (3, 3)] {
            for (shape, padding, input_zero) in cases {
                let case = Case {
                    shape,
                    kernel,
                    stride,
                    padding,
                    input_zero,
                    mode,
                };
                check_depthwise(case, seed);
                seed += 1;
            }
        }
    }
}

fn check_stem(case: Case, cout: usize) {
    let Case {
        shape,
        kernel,
        stride,
        padding,
        input_zero,
        mode,
    } = case;
    let mut rng = common::rng(40 + shape.iter().sum::<usize>() as u64);
    let cin = shape[3];
    let k = kernel * kernel * cin;
    let input = random_input(&mut rng, shape.iter().product(), input_zero, mode);
    let layer = Layer::random(&mut rng, k, cout, mode);
    let params = layer.params(
        reference::pack_gemm_weights(&layer.weight, k, cout),
        input_zero,
    );
    let window = Int8Window {
        kernel,
        stride,
        padding,
        input_zero,
    };
    let (acc, out_shape) = reference::conv2d_acc(&input, shape, window, &layer.weight, &layer.bias);
    let packed_input = packed(&input, cin, input_zero);
    for (what, output) in outputs() {
        let expected = reference::requantize_channels(&acc, &layer.multipliers, output);
        let stem = Int8Stem {
            out_channels: cout,
            window,
            output,
        };
        let dispatches = stem.forward(&shape).expect("valid shape");
        let workspace = stem.workspace_words(&shape).expect("valid shape");
        let pixels: usize = out_shape[..3].iter().product();
        for gpu in devices() {
            let out_bytes = pixels * cout.div_ceil(4) * 4;
            let got = run(
                gpu,
                &dispatches,
                &packed_input,
                &params,
                out_bytes,
                workspace,
            );
            assert_eq!(
                words(&got),
                packed(&expected, cout, output.zero_point),
                "stem {case:?} -> {cout}, {what}"
            );
        }
    }
}

#[test]
fn stem_matches_the_integer_reference() {
    let cases = [
        ([1, 1, 1, 3], 8, 3, 2, Padding::Symmetric, -3),
        ([1, 7, 9, 3], 8, 3, 2, Padding::Symmetric, 12),
        ([2, 8, 6, 3], 5, 3, 2, Padding::Same, -128),
        ([1, 6, 6, 1], 6, 3, 2, Padding::Symmetric, 0),
        ([1, 5, 5, 3], 12, 3, 1, Padding::Same, 50),
        // The 3x3 stems on one and three channels unfold quads of 4 output pixels: rows of
        // 7 (a last quad of 3) and 6 (of 2), both strides, both paddings.
        ([2, 5, 7, 1], 4, 3, 1, Padding::Symmetric, -60),
        ([1, 4, 6, 3], 8, 3, 1, Padding::Symmetric, 100),
        ([1, 9, 13, 1], 3, 3, 2, Padding::Same, 27),
        ([1, 6, 11, 3], 9, 3, 2, Padding::Same, -1),
        ([1, 7, 6, 2], 7, 5, 2, Padding::Same, -9),
        // A whole word a pixel (the last one-word case), and inputs of several words a
        // pixel, which take the kernel that packs one patch word per invocation.
        ([1, 5, 4, 4], 6, 3, 2, Padding::Symmetric, 7),
        ([1, 4, 5, 5], 5, 3, 1, Padding::Same, -20),
        ([2, 3, 3, 8], 4, 3, 2, Padding::Symmetric, 3),
    ];
    for mode in [Mode::Spread, Mode::Ties] {
        for (shape, cout, kernel, stride, padding, input_zero) in cases {
            let case = Case {
                shape,
                kernel,
                stride,
                padding,
                input_zero,
                mode,
            };
            check_stem(case, cout);
        }
    }
}

fn check_pool(shape: [usize; 4], input_zero: i32, output_zero: i32, output_scale: f32) {
    let mut rng = common::rng(60 + shape.iter().sum::<usize>() as u64);
    let multiplier = reference::pool_multiplier(0.05, output_scale, shape[1] * shape[2]);
    check_pool_with(shape, input_zero, output_zero, multiplier, &mut rng);
}

fn check_pool_with(
    shape: [usize; 4],
    input_zero: i32,
    output_zero: i32,
    multiplier: f32,
    rng: &mut impl Rng,
) {
    let channels = shape[3];
    let input = random_i8(rng, shape.iter().product(), -128, 127);
    let expected = reference::global_avg_pool(&input, shape, input_zero, multiplier, output_zero);
    let pool = Int8Pool {
        input_zero,
        output_zero,
        multiplier,
    };
    let dispatch = pool.forward(&shape).expect("valid shape");
    let none = Params {
        weights: vec![0],
        bias_eff: vec![0],
        multipliers: vec![0.0],
    };
    for gpu in devices() {
        let out_bytes = shape[0] * channels.div_ceil(4) * 4;
        let input_words = packed(&input, channels, input_zero);
        let got = run(
            gpu,
            std::slice::from_ref(&dispatch),
            &input_words,
            &none,
            out_bytes,
            0,
        );
        assert_eq!(
            words(&got),
            packed(&expected, channels, output_zero),
            "pool {shape:?}, z_in {input_zero}, z_out {output_zero}"
        );
    }
}

#[test]
fn pool_matches_the_integer_reference() {
    check_pool([1, 1, 1, 3], -128, -128, 0.05);
    check_pool([2, 7, 7, 13], -128, -128, 0.02);
    check_pool([3, 3, 5, 4], 10, -30, 0.01);
    check_pool([1, 2, 2, 1024], -128, 5, 0.004);
    // A scale that clamps most averages.
    check_pool([1, 4, 3, 6], 0, 0, 0.0001);
    // Multipliers 1/2 and 1/4 (2 and 4 pixels, s_in = s_out): odd sums are exact ties.
    let mut rng = common::rng(70);
    check_pool_with([2, 1, 2, 7], 3, -1, 0.5, &mut rng);
    check_pool_with([1, 2, 2, 5], -128, 0, 0.25, &mut rng);
    assert_eq!(reference::pool_multiplier(0.05, 0.05, 2), 0.5);
}

/// The parameters of a layer in the bytes a `PlannedLayer` takes.
fn param_bytes(params: &Params) -> Vec<Vec<u8>> {
    vec![
        bytemuck::cast_slice(&params.weights).to_vec(),
        bytemuck::cast_slice(&params.bias_eff).to_vec(),
        bytemuck::cast_slice(&params.multipliers).to_vec(),
    ]
}

fn planned(name: &str, dispatches: Vec<Dispatch>, tensor: usize, params: &Params) -> PlannedLayer {
    PlannedLayer {
        name: name.to_string(),
        dispatches,
        input: tensor,
        output: tensor + 1,
        params: param_bytes(params),
        workspace_bytes: 0,
    }
}

/// Bytes of a packed NHWC (or [N, C]) int8 tensor.
fn tensor_bytes(shape: &[usize]) -> u64 {
    let (pixels, channels) = shape.split_at(shape.len() - 1);
    (pixels.iter().product::<usize>() * channels[0].div_ceil(4) * 4) as u64
}

/// A small int8 network built twice as it goes: run by the reference on the CPU, and as
/// `PlannedLayer`s for the GPU. Tensor i is `shapes[i]`; layer i reads tensor i.
struct Net {
    rng: rand::rngs::StdRng,
    /// The reference's current activation, and its zero point.
    x: Vec<i8>,
    zero: i32,
    shapes: Vec<Vec<usize>>,
    layers: Vec<PlannedLayer>,
}

impl Net {
    fn last(&self) -> [usize; 4] {
        self.shapes[self.shapes.len() - 1]
            .clone()
            .try_into()
            .expect("NHWC")
    }

    fn push(&mut self, layer: PlannedLayer, x: Vec<i8>, zero: i32, shape: Vec<usize>) {
        self.layers.push(layer);
        self.x = x;
        self.zero = zero;
        self.shapes.push(shape);
    }

    fn stem(&mut self, window: Int8Window, cout: usize, output: Int8Output) {
        let shape = self.last();
        let k = 9 * shape[3];
        let stem = Layer::random(&mut self.rng, k, cout, Mode::Spread);
        let (acc, out_shape) =
            reference::conv2d_acc(&self.x, shape, window, &stem.weight, &stem.bias);
        let y = reference::requantize_channels(&acc, &stem.multipliers, output);
        let op = Int8Stem {
            out_channels: cout,
            window,
            output,
        };
        let dispatches = op.forward(&shape).expect("valid shape").to_vec();
        let params = stem.params(
            reference::pack_gemm_weights(&stem.weight, k, cout),
            self.zero,
        );
        let mut layer = planned("stem", dispatches, self.layers.len(), &params);
        layer.workspace_bytes = op.workspace_words(&shape).expect("valid shape") as u64 * 4;
        self.push(layer, y, output.zero_point, out_shape.to_vec());
    }

    fn depthwise(&mut self, stride: usize, padding: Padding, output: Int8Output) {
        let shape = self.last();
        let c = shape[3];
        let window = Int8Window {
            kernel: 3,
            stride,
            padding,
            input_zero: self.zero,
        };
        let dw = Layer::random(&mut self.rng, 9, c, Mode::Spread);
        let (acc, out_shape) =
            reference::depthwise_acc(&self.x, shape, window, &dw.weight, &dw.bias);
        let y = reference::requantize_channels(&acc, &dw.multipliers, output);
        let op = Int8Depthwise { window, output };
        let params = dw.params(reference::pack_depthwise_weights(&dw.weight, c), self.zero);
        let dispatch = op.forward(&shape).expect("valid shape");
        let layer = planned("dw", vec![dispatch], self.layers.len(), &params);
        self.push(layer, y, output.zero_point, out_shape.to_vec());
    }

    fn pointwise(&mut self, cout: usize, output: Int8Output) {
        let shape = self.last();
        let c = shape[3];
        let pw = Layer::random(&mut self.rng, c, cout, Mode::Spread);
        let acc = reference::gemm_acc(&self.x, c, self.zero, &pw.weight, &pw.bias);
        let y = reference::requantize_channels(&acc, &pw.multipliers, output);
        let params = pw.params(reference::pack_gemm_weights(&pw.weight, c, cout), self.zero);
        let dispatch = int8_pointwise(&shape, cout, output);
        let layer = planned("pw", vec![dispatch], self.layers.len(), &params);
        let out_shape = vec![shape[0], shape[1], shape[2], cout];
        self.push(layer, y, output.zero_point, out_shape);
    }

    /// Global average pooling to (scale ratio `ratio`, zero point `zero`).
    fn pool(&mut self, ratio: f32, zero: i32) {
        let shape = self.last();
        let multiplier = reference::pool_multiplier(ratio, 1.0, shape[1] * shape[2]);
        let y = reference::global_avg_pool(&self.x, shape, self.zero, multiplier, zero);
        let pool = Int8Pool {
            input_zero: self.zero,
            output_zero: zero,
            multiplier,
        };
        let layer = PlannedLayer {
            name: "pool".into(),
            dispatches: vec![pool.forward(&shape).expect("valid shape")],
            input: self.layers.len(),
            output: self.layers.len() + 1,
            params: Vec::new(),
            workspace_bytes: 0,
        };
        self.push(layer, y, zero, vec![shape[0], shape[3]]);
    }

    /// The classifier's layer and the logits the reference expects, as bits.
    fn classifier(&mut self, classes: usize) -> Vec<u32> {
        let [batch, features] = [
            self.shapes[self.shapes.len() - 1][0],
            self.shapes[self.shapes.len() - 1][1],
        ];
        let dense = Layer::random(&mut self.rng, features, classes, Mode::Spread);
        let scales: Vec<f32> = (0..classes)
            .map(|c| reference::logit_scale(0.03, 1e-3 * (c + 1) as f32))
            .collect();
        let acc = reference::gemm_acc(&self.x, features, self.zero, &dense.weight, &dense.bias);
        let params = Params {
            multipliers: scales.clone(),
            ..dense.params(
                reference::pack_gemm_weights(&dense.weight, features, classes),
                self.zero,
            )
        };
        let gemm = Int8Gemm {
            rows: batch,
            k: features,
            n: classes,
        };
        let dispatch = gemm.logits(Slot::Input, Slot::Output);
        self.layers.push(planned(
            "classifier",
            vec![dispatch],
            self.layers.len(),
            &params,
        ));
        reference::dequantize_logits(&acc, &scales)
            .iter()
            .map(|v| v.to_bits())
            .collect()
    }
}

/// Stem, two depthwise-pointwise blocks, pool and classifier as one `DispatchPlan`: the
/// logits of the chained kernels are the reference chain's, bit for bit.
#[test]
fn a_small_int8_network_runs_as_one_plan() {
    let mut rng = common::rng(80);
    let shape = [2, 9, 7, 3];
    let image = random_i8(&mut rng, shape.iter().product(), -128, 127);
    let mut net = Net {
        rng,
        x: image.clone(),
        zero: 5,
        shapes: vec![shape.to_vec()],
        layers: Vec::new(),
    };
    let relu6 = Int8Output::new(Activation::Relu6, 0.05, -128);
    let stem_window = Int8Window {
        kernel: 3,
        stride: 2,
        padding: Padding::Symmetric,
        input_zero: 5,
    };
    net.stem(stem_window, 6, relu6);
    net.depthwise(1, Padding::Symmetric, relu6);
    net.pointwise(10, Int8Output::new(Activation::Relu, 0.04, -128));
    net.depthwise(
        2,
        Padding::Same,
        Int8Output::new(Activation::Relu6, 0.03, -100),
    );
    net.pointwise(9, Int8Output::linear(4));
    net.pool(0.75, -2);
    let expected = net.classifier(5);
    let mut sizes: Vec<u64> = net.shapes.iter().map(|s| tensor_bytes(s)).collect();
    sizes.push((shape[0] * 5 * 4) as u64);
    let input = packed(&image, 3, 5);
    for gpu in devices() {
        let plan = DispatchPlan::compile(gpu, &sizes, &net.layers, 0, &[sizes.len() - 1])
            .expect("compile");
        assert_eq!(plan.dispatch_count(), 2 + 2 * 2 + 2);
        for _ in 0..2 {
            let logits = plan.run(bytemuck::cast_slice(&input)).expect("run");
            assert_eq!(words(&logits[0]), expected);
        }
    }
}
