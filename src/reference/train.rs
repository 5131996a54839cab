//! A whole training step of a chain graph on the CPU: the oracle for the GPU's.

use super::backward::{cross_entropy, run_op_backward, run_op_train, update_running_stats};
use super::optim::apply_update;
use super::Tensor;
use crate::graph::{GraphBuilder, GraphError, ParamStore};
use crate::ops::{OpKind, UpdateRule};
use std::collections::HashMap;

/// Gradients by parameter name.
pub type ParamGrads = HashMap<String, Vec<f32>>;

/// One step: forward in training mode (running statistics updated), cross-entropy on the
/// graph's first output, backward, then `rule` on every trainable parameter. Returns the
/// per-sample losses. `state` holds optimizer state by `<param>.<state>` name and is
/// created on first use with the rule's initial values.
#[allow(clippy::too_many_arguments)]
pub fn train_step(
    graph: &GraphBuilder,
    params: &mut ParamStore,
    state: &mut HashMap<String, Vec<f32>>,
    input: &[f32],
    labels: &[u32],
    rule: &UpdateRule,
    lr: f32,
    bn_momentum: f32,
    weight_decay: &HashMap<String, f32>,
) -> Result<Vec<f32>, GraphError> {
    let (losses, grads) = loss_gradients(graph, params, input, labels, Some(bn_momentum))?;
    apply_gradients(graph, params, state, &grads, rule, lr, weight_decay)?;
    Ok(losses)
}

/// One data-parallel step over `replicas.len()` replicas, each with its own part of the
/// global batch and its own batch-norm running statistics (`replicas[r]`): per-replica
/// forward and backward with that part's batch statistics, the gradients averaged, then
/// one update applied alike to every replica's trainable parameters. Returns each
/// replica's per-sample losses.
#[allow(clippy::too_many_arguments)]
pub fn data_parallel_step(
    graph: &GraphBuilder,
    replicas: &mut [ParamStore],
    state: &mut HashMap<String, Vec<f32>>,
    parts: &[(&[f32], &[u32])],
    rule: &UpdateRule,
    lr: f32,
    bn_momentum: f32,
    weight_decay: &HashMap<String, f32>,
) -> Result<Vec<Vec<f32>>, GraphError> {
    let mut losses = Vec::new();
    let mut mean: ParamGrads = HashMap::new();
    let share = 1.0 / parts.len().max(1) as f32;
    for (params, (input, labels)) in replicas.iter_mut().zip(parts) {
        let (loss, grads) = loss_gradients(graph, params, input, labels, Some(bn_momentum))?;
        losses.push(loss);
        for (name, grad) in grads {
            let sum = mean.entry(name).or_insert_with(|| vec![0.0; grad.len()]);
            sum.iter_mut().zip(&grad).for_each(|(s, g)| *s += g * share);
        }
    }
    let (first, others) = replicas
        .split_first_mut()
        .ok_or_else(|| GraphError::Params(vec!["no replicas".into()]))?;
    apply_gradients(graph, first, state, &mean, rule, lr, weight_decay)?;
    for other in others {
        for info in graph.params().iter().filter(|p| p.role.trainable()) {
            if let Some(values) = first.get(&info.name) {
                other.insert(&info.name, info.shape.clone(), values.to_vec());
            }
        }
    }
    Ok(losses)
}

/// `rule` applied to every trainable parameter with a gradient in `grads`.
fn apply_gradients(
    graph: &GraphBuilder,
    params: &mut ParamStore,
    state: &mut HashMap<String, Vec<f32>>,
    grads: &ParamGrads,
    rule: &UpdateRule,
    lr: f32,
    weight_decay: &HashMap<String, f32>,
) -> Result<(), GraphError> {
    for info in graph.params().iter().filter(|p| p.role.trainable()) {
        let Some(grad) = grads.get(&info.name) else {
            continue;
        };
        let mut tensors: Vec<Vec<f32>> = rule
            .state_names()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                state
                    .remove(&format!("{}.{s}", info.name))
                    .unwrap_or_else(|| vec![rule.state_init(i); info.len()])
            })
            .collect();
        let decay = weight_decay.get(&info.name).copied().unwrap_or(0.0);
        let param = params
            .get_mut(&info.name)
            .ok_or_else(|| GraphError::UnknownParam(info.name.clone()))?;
        apply_update(rule, param, grad, &mut tensors, lr, decay);
        for (s, values) in rule.state_names().iter().zip(tensors) {
            state.insert(format!("{}.{s}", info.name), values);
        }
    }
    Ok(())
}

/// Forward (training mode), loss and backward: per-sample losses and the gradient of the
/// mean loss for every trainable parameter. With `bn_momentum`, running statistics are
/// updated as the GPU step does.
pub fn loss_gradients(
    graph: &GraphBuilder,
    params: &mut ParamStore,
    input: &[f32],
    labels: &[u32],
    bn_momentum: Option<f32>,
) -> Result<(Vec<f32>, ParamGrads), GraphError> {
    let output = *graph.outputs().first().ok_or(GraphError::NoOutputs)?;
    let last = graph
        .nodes()
        .iter()
        .position(|n| n.output == output)
        .ok_or_else(|| GraphError::NotAChain("the first output is the graph input".into()))?;
    let nodes = &graph.nodes()[..=last];
    let input_shape = graph.shape(graph.inputs()[0])?.to_vec();
    let mut acts = vec![Tensor::new(input_shape, input.to_vec())];
    for node in nodes {
        let values: Vec<Vec<f32>> = node_params(graph, params, &node.params)?;
        let refs: Vec<&[f32]> = values.iter().map(Vec::as_slice).collect();
        let x = acts.last().ok_or(GraphError::NoOutputs)?;
        let y = run_op_train(&node.kind, x, &refs);
        if let (Some(m), OpKind::BatchNorm(_)) = (bn_momentum, &node.kind) {
            let names: Vec<String> = node
                .params
                .iter()
                .map(|&p| graph.params()[p].name.clone())
                .collect();
            let mut mean = params.get(&names[2]).unwrap_or_default().to_vec();
            let mut var = params.get(&names[3]).unwrap_or_default().to_vec();
            update_running_stats(x, &mut mean, &mut var, m);
            params.insert(&names[2], vec![mean.len()], mean);
            params.insert(&names[3], vec![var.len()], var);
        }
        acts.push(y);
    }
    let logits = acts.last().ok_or(GraphError::NoOutputs)?;
    let (losses, mut dy) = cross_entropy(logits, labels);
    let mut grads = HashMap::new();
    for (i, node) in nodes.iter().enumerate().rev() {
        let values = node_params(graph, params, &node.params)?;
        let refs: Vec<&[f32]> = values.iter().map(Vec::as_slice).collect();
        let (dx, param_grads) = run_op_backward(&node.kind, &acts[i], &refs, &dy);
        let trainable = node
            .params
            .iter()
            .filter(|&&p| graph.params()[p].role.trainable());
        for (&p, g) in trainable.zip(param_grads) {
            grads.insert(graph.params()[p].name.clone(), g);
        }
        dy = dx;
    }
    Ok((losses, grads))
}

fn node_params(
    graph: &GraphBuilder,
    params: &ParamStore,
    indices: &[usize],
) -> Result<Vec<Vec<f32>>, GraphError> {
    indices
        .iter()
        .map(|&p| {
            let name = &graph.params()[p].name;
            params
                .get(name)
                .map(<[f32]>::to_vec)
                .ok_or_else(|| GraphError::UnknownParam(name.clone()))
        })
        .collect()
}
