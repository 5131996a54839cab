//! The whole network, GPU against the CPU reference, for all three presets.
//! Same tolerance as the single ops, 1e-4 relative (per element, against |ref| + rms(ref)):
//! the reference accumulates in f64, and 27 layers of f32 rounding stay far below it.

mod common;

use common::{assert_close, gpu, random_params, rng, uniform};
use mobilenet_wgpu::reference;
use mobilenet_wgpu::{MobileNetV1Config, Preset};

const MODEL_RTOL: f64 = common::OP_RTOL;

fn check_model(config: MobileNetV1Config, batch: usize, seed: u64) {
    let model = config.build(batch).expect("build");
    let params = random_params(&model.graph, seed);
    let input_len = batch * config.resolution * config.resolution * config.in_channels;
    let input = uniform(&mut rng(seed), input_len, -1.0, 1.0);
    let plan = model.graph.compile(gpu()).expect("compile");
    plan.load_params(&params).expect("load");
    let outputs = plan.run(&input).expect("run");
    let expected = reference::run_graph(&model.graph, &params, &input).expect("reference");
    let what = format!(
        "{:?}/{}/alpha {}/res {}/{} classes/{} ch/batch {}",
        config.activation,
        config.padding,
        config.alpha,
        config.resolution,
        config.classes,
        config.in_channels,
        batch
    );
    let logit_rms = (expected[0].data.iter().map(|v| v * v).sum::<f32>()
        / expected[0].data.len() as f32)
        .sqrt();
    assert!(
        logit_rms > 1e-3,
        "{what}: logits vanished (rms {logit_rms}); the comparison would be meaningless"
    );
    assert_close(
        &format!("{what} logits"),
        &outputs[0],
        &expected[0].data,
        MODEL_RTOL,
    );
    assert_close(
        &format!("{what} probs"),
        &outputs[1],
        &expected[1].data,
        MODEL_RTOL,
    );
    for row in outputs[1].chunks(config.classes) {
        let sum: f32 = row.iter().sum();
        assert!(
            (sum - 1.0).abs() < 1e-4,
            "{what}: probabilities sum to {sum}"
        );
    }
}

fn small(preset: Preset, resolution: usize, classes: usize) -> MobileNetV1Config {
    MobileNetV1Config {
        alpha: 0.25,
        resolution,
        classes,
        ..MobileNetV1Config::preset(preset)
    }
}

#[test]
fn alpha_quarter_32px_all_presets() {
    for (i, preset) in [Preset::Paper, Preset::Timm, Preset::Keras]
        .into_iter()
        .enumerate()
    {
        for (j, classes) in [10, 13, 1000].into_iter().enumerate() {
            check_model(small(preset, 32, classes), 3, (i * 10 + j) as u64);
        }
    }
}

#[test]
fn alpha_quarter_64px_all_presets() {
    for (i, preset) in [Preset::Paper, Preset::Timm, Preset::Keras]
        .into_iter()
        .enumerate()
    {
        check_model(small(preset, 64, 7), 2, 40 + i as u64);
    }
}

#[test]
fn grayscale_stride_one_stem_odd_resolution() {
    // Fashion-MNIST shape: 28x28x1 with the CIFAR-style stride-1 stem; odd sizes appear
    // after the stride-2 blocks (7 -> 4 -> 2).
    for preset in [Preset::Paper, Preset::Keras] {
        let config = MobileNetV1Config {
            in_channels: 1,
            stem_stride: 1,
            ..small(preset, 28, 10)
        };
        check_model(config, 3, 50);
    }
}

#[test]
fn full_width_224_paper() {
    check_model(MobileNetV1Config::preset(Preset::Paper), 1, 60);
}
