//! A network of your own from the same GPU ops MobileNet is made of: build it with
//! `GraphBuilder`, train it a few dozen steps on synthetic data with `TrainPlan`, then
//! compile it for inference and classify fresh samples.
//!
//! The task: 12x12 RGB images whose left half is brighter (class 0) or whose right half
//! is (class 1), under noise. The network: a strided 3x3 convolution, a depthwise
//! separable block (depthwise 3x3 + batch norm + ReLU6, pointwise 1x1 + batch norm +
//! ReLU6), global average pooling, a dense classifier and a softmax. It runs in about a
//! second, on lavapipe too.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --release --example custom_graph
//! ```

use mobilenet_wgpu::graph::{GraphBuilder, ParamBuffers, TrainConfig, TrainPlan};
use mobilenet_wgpu::ops::{
    Activation, BatchNorm, Conv2d, Dense, Depthwise, Padding, Pointwise, TrainSettings, UpdateRule,
};
use mobilenet_wgpu::{Gpu, ParamStore};
use rand::{Rng, SeedableRng};
use std::sync::Arc;

const BATCH: usize = 8;
const SIDE: usize = 12;
const CHANNELS: usize = 3;
const CLASSES: usize = 2;
const STEPS: usize = 40;

/// A batch of images (NHWC) and their labels.
fn synthetic_batch(rng: &mut impl Rng) -> (Vec<f32>, Vec<u32>) {
    let mut images = Vec::with_capacity(BATCH * SIDE * SIDE * CHANNELS);
    let mut labels = Vec::with_capacity(BATCH);
    for _ in 0..BATCH {
        let label = rng.random_range(0..CLASSES as u32);
        for _y in 0..SIDE {
            for x in 0..SIDE {
                let left = x < SIDE / 2;
                let bright = (label == 0) == left;
                for _c in 0..CHANNELS {
                    let base = if bright { 0.8 } else { -0.8 };
                    images.push(base + rng.random_range(-0.5f32..0.5));
                }
            }
        }
        labels.push(label);
    }
    (images, labels)
}

fn build() -> anyhow::Result<GraphBuilder> {
    let bn = BatchNorm {
        eps: 1e-5,
        activation: Activation::Relu6,
    };
    let mut g = GraphBuilder::new();
    let x = g.input("image", &[BATCH, SIDE, SIDE, CHANNELS]);
    let x = g.conv2d(
        "stem",
        x,
        Conv2d {
            out_channels: 8,
            kernel: 3,
            stride: 2,
            padding: Padding::Symmetric,
            fused: None,
        },
    )?;
    let x = g.batch_norm("stem_bn", x, bn.clone())?;
    let x = g.depthwise(
        "dw",
        x,
        Depthwise {
            kernel: 3,
            stride: 1,
            padding: Padding::Symmetric,
            fused: None,
        },
    )?;
    let x = g.batch_norm("dw_bn", x, bn.clone())?;
    let x = g.pointwise(
        "pw",
        x,
        Pointwise {
            out_channels: 16,
            fused: None,
        },
    )?;
    let x = g.batch_norm("pw_bn", x, bn)?;
    let x = g.global_avg_pool("pool", x)?;
    let logits = g.dense(
        "fc",
        x,
        Dense {
            out_features: CLASSES,
            read_only: false,
        },
    )?;
    let probs = g.softmax("softmax", logits)?;
    // Training takes its loss on the first output (the logits); inference reads both.
    g.output(logits)?;
    g.output(probs)?;
    Ok(g)
}

fn main() -> anyhow::Result<()> {
    let gpu = Gpu::new()?;
    let graph = build()?;
    print_size(&graph);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let trained = train(&gpu, &graph, &mut rng)?;
    classify_fresh_samples(&gpu, &graph, &trained, &mut rng)
}

fn print_size(graph: &GraphBuilder) {
    println!(
        "graph: {} ops, {} parameter tensors, {} trainable values",
        graph.nodes().len(),
        graph.params().len(),
        graph
            .params()
            .iter()
            .filter(|p| p.role.trainable())
            .map(|p| p.len())
            .sum::<usize>()
    );
}

/// STEPS steps of SGD with momentum on synthetic batches; returns the trained parameters.
fn train(gpu: &Gpu, graph: &GraphBuilder, rng: &mut impl Rng) -> anyhow::Result<ParamStore> {
    // Parameters live in GPU buffers the training plan reads and updates in place.
    let buffers = Arc::new(ParamBuffers::new(gpu, graph)?);
    buffers.load(&ParamStore::initialize(graph, 7))?;
    let config = TrainConfig {
        settings: TrainSettings::default(),
        update: Some(UpdateRule::Sgd {
            momentum: 0.9,
            nesterov: false,
        }),
        ..Default::default()
    };
    let trainer = TrainPlan::compile(graph, gpu, buffers.clone(), &config)?;

    let mut losses = Vec::with_capacity(STEPS);
    for step in 0..STEPS {
        let (images, labels) = synthetic_batch(rng);
        // One submit: forward, backward, SGD update; loss and logits read back.
        let out = trainer.step(&images, &labels, 0.05)?;
        losses.push(out.mean_loss());
        if step % 10 == 0 || step == STEPS - 1 {
            println!(
                "step {step:3}: loss {:.4}, {}/{BATCH} correct",
                out.mean_loss(),
                out.correct(&labels)
            );
        }
    }
    let first = losses[..5].iter().sum::<f64>() / 5.0;
    let last = losses[STEPS - 5..].iter().sum::<f64>() / 5.0;
    println!("mean loss of the first 5 steps {first:.4}, of the last 5 steps {last:.4}");
    Ok(buffers.read()?)
}

/// Inference: the same graph compiled as a forward plan (batch norm from the running
/// statistics the training steps kept), loaded with the trained parameters.
fn classify_fresh_samples(
    gpu: &Gpu,
    graph: &GraphBuilder,
    trained: &ParamStore,
    rng: &mut impl Rng,
) -> anyhow::Result<()> {
    let plan = graph.compile(gpu)?;
    plan.load_params(trained)?;
    let (images, labels) = synthetic_batch(rng);
    let outputs = plan.run(&images)?;
    let probs = &outputs[1];
    let mut correct = 0;
    for (row, &label) in probs.chunks(CLASSES).zip(&labels) {
        let predicted = if row[1] > row[0] { 1 } else { 0 };
        correct += usize::from(predicted == label);
    }
    println!(
        "inference on {BATCH} new samples: {correct}/{BATCH} correct; first sample p = [{:.3}, {:.3}], label {}",
        probs[0], probs[1], labels[0]
    );
    Ok(())
}
