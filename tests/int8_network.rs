//! The int8 MobileNet as one compiled plan (`model::Int8Plan`) against the whole-network
//! integer reference (`reference::run_int8_graph`): the logits match bit for bit, on every
//! preset (both paddings, ReLU and ReLU6), batch 1 and 2; the probabilities are the
//! softmax of those logits; missing numbers are all named at once.

mod common;

use std::collections::HashMap;

use mobilenet_wgpu::graph::{GraphBuilder, GraphError};
use mobilenet_wgpu::model::Int8Plan;
use mobilenet_wgpu::ops::{Int8Activation, Int8LayerParams, Int8Numbers, OpKind, ParamRole};
use mobilenet_wgpu::reference::run_int8_graph;
use mobilenet_wgpu::{MobileNetV1Config, Preset};
use rand::Rng;

/// A layer's int8 weights, their per-channel scales and its int32 bias.
type LayerNumbers = (Vec<i8>, Vec<f32>, Vec<i32>);

/// Int8 numbers drawn at random, sized for a graph: every layer's accumulators land across
/// its output's range (some clamped), as calibrated ones would.
#[derive(Default)]
struct RandomNumbers {
    layers: HashMap<String, LayerNumbers>,
    activations: HashMap<String, Int8Activation>,
}

impl Int8Numbers for RandomNumbers {
    fn layer(&self, name: &str) -> Option<Int8LayerParams<'_>> {
        self.layers.get(name).map(|(w, s, b)| Int8LayerParams {
            weight_q: w,
            weight_scale: s,
            bias_q: b,
        })
    }

    fn activation(&self, tensor: &str) -> Option<Int8Activation> {
        self.activations.get(tensor).copied()
    }
}

impl RandomNumbers {
    fn for_graph(graph: &GraphBuilder, seed: u64) -> RandomNumbers {
        let mut rng = common::rng(seed);
        let mut numbers = RandomNumbers::default();
        let input = graph.tensor(graph.inputs()[0]).expect("input");
        let image = Int8Activation {
            scale: 0.02,
            zero_point: 5,
        };
        numbers.activations.insert(input.name.clone(), image);
        for node in graph.nodes() {
            let out = graph.tensor(node.output).expect("tensor").name.clone();
            let x = graph.tensor(node.input).expect("tensor").name.clone();
            let s_x = numbers.activations.get(&x).map_or(1.0, |a| a.scale);
            if !matches!(node.kind, OpKind::Dense(_) | OpKind::Softmax(_)) {
                let zero_point = match node.kind {
                    OpKind::GlobalAvgPool(_) => -100,
                    _ => -128,
                };
                let act = Int8Activation {
                    scale: rng.random_range(0.02..0.06),
                    zero_point,
                };
                numbers.activations.insert(out.clone(), act);
            }
            let s_y = numbers.activations.get(&out).map_or(0.05, |a| a.scale);
            let weight = node
                .params
                .iter()
                .map(|&p| &graph.params()[p])
                .find(|p| matches!(p.role, ParamRole::Weight { .. }));
            let Some(weight) = weight else { continue };
            let channels = *weight.shape.last().expect("a weight shape");
            let k = weight.len() / channels;
            // |q_x - z_x| is about 40 after ReLU, |q_w| about 73.
            let spread = (k as f32).sqrt() * 40.0 * 73.0;
            let weight_q = (0..weight.len())
                .map(|_| rng.random_range(-127..=127))
                .collect();
            // s_w such that M = s_x * s_w / s_y spreads the accumulators over the range.
            let scales = (0..channels)
                .map(|_| rng.random_range(40.0..120.0) / spread * s_y / s_x)
                .collect();
            let bias = (0..channels)
                .map(|_| rng.random_range(-0.3 * spread..0.3 * spread) as i32)
                .collect();
            numbers
                .layers
                .insert(node.name.clone(), (weight_q, scales, bias));
        }
        numbers
    }
}

fn images(len: usize, seed: u64) -> Vec<f32> {
    common::uniform(&mut common::rng(seed), len, -2.5, 2.5)
}

#[test]
fn int8_plan_matches_the_integer_reference_on_every_preset() {
    let gpu = common::gpu();
    for (i, preset) in [Preset::Paper, Preset::Timm, Preset::Keras]
        .into_iter()
        .enumerate()
    {
        for batch in [1, 2] {
            let config = MobileNetV1Config {
                alpha: 0.25,
                resolution: 33,
                ..MobileNetV1Config::preset(preset)
            };
            let model = config.build_folded(batch).expect("build folded");
            let numbers = RandomNumbers::for_graph(&model.graph, 90 + i as u64);
            let plan = Int8Plan::compile(gpu, &model.graph, &numbers).expect("compile");
            let input_len = model.graph.shape(model.graph.inputs()[0]).expect("shape");
            let x = images(input_len.iter().product(), 7 + batch as u64);
            let expected = run_int8_graph(&model.graph, &numbers, &x).expect("reference");
            let got = plan.run(&x).expect("run");
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(
                bits(&got.logits),
                bits(&expected),
                "{preset:?} batch {batch}"
            );
            // The input matters: images differ, and so do their logits.
            let classes = config.classes;
            if batch == 2 {
                assert_ne!(expected[..classes], expected[classes..], "{preset:?}");
            }
            let probs = got
                .probabilities
                .expect("the folded graph ends in a softmax");
            check_softmax(&got.logits, &probs, config.classes);
        }
    }
}

/// The probabilities are the softmax of the logits (float kernel, float tolerance).
fn check_softmax(logits: &[f32], probs: &[f32], classes: usize) {
    assert_eq!(logits.len(), probs.len());
    for (row, p) in logits.chunks(classes).zip(probs.chunks(classes)) {
        let max = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
        let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
        for (&l, &q) in row.iter().zip(p) {
            let expected = (l as f64 - max).exp() / sum;
            assert!((q as f64 - expected).abs() < 1e-5, "{q} vs {expected}");
        }
    }
}

#[test]
fn missing_numbers_are_all_named() {
    let config = MobileNetV1Config {
        alpha: 0.25,
        resolution: 32,
        ..MobileNetV1Config::preset(Preset::Paper)
    };
    let model = config.build_folded(1).expect("build folded");
    let mut numbers = RandomNumbers::for_graph(&model.graph, 3);
    numbers.layers.remove("classifier");
    let pool = numbers
        .activations
        .keys()
        .find(|k| k.contains("pool"))
        .cloned();
    numbers
        .activations
        .remove(&pool.expect("a pool activation"));
    if let Some(layer) = numbers.layers.values_mut().next() {
        layer.2.pop();
    }
    match Int8Plan::compile(common::gpu(), &model.graph, &numbers) {
        Err(GraphError::Params(problems)) => {
            let text = problems.join("\n");
            assert_eq!(problems.len(), 3, "{text}");
            assert!(text.contains("`classifier`"), "{text}");
            assert!(text.contains("pool"), "{text}");
            assert!(text.contains("biases"), "{text}");
        }
        Err(other) => panic!("expected the missing numbers, got {other}"),
        Ok(_) => panic!("compiled without the classifier's numbers"),
    }
}
