//! Which tensors of the folded network the int8 model quantizes, and their names: the
//! calibration, the quantizer and the file all walk these two lists, so they agree on what
//! is stored.
//!
//! Activations: the network input, every convolution's output (after its fused
//! activation) and the pool's output. Weights: every convolution and the classifier. The
//! logits and the softmax stay float (the classifier's accumulator is dequantized).

use crate::graph::{GraphBuilder, GraphError, TensorId};
use crate::ops::{OpKind, ParamRole};

/// An activation tensor stored as int8, named as in the graph (`image`, `stem.conv`,
/// `blocks.1.dw`, ..., `pool`).
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationTensor {
    pub name: String,
    pub id: TensorId,
    /// With the graph's batch first.
    pub shape: Vec<usize>,
}

/// A layer with int8 weights, per-channel scales and an int32 bias.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightLayer {
    /// The op's name (`stem.conv`, `blocks.1.dw`, `classifier`); its float parameters are
    /// `<name>.weight` and `<name>.bias`.
    pub name: String,
    /// In our float layout, output channels last.
    pub weight_shape: Vec<usize>,
    pub channels: usize,
    /// The activation tensor it reads (whose scale the bias takes).
    pub input: String,
}

/// The activation tensors of a folded graph, the input first, in network order.
pub fn activation_tensors(graph: &GraphBuilder) -> Result<Vec<ActivationTensor>, GraphError> {
    let input = *graph.inputs().first().ok_or(GraphError::InputCount(0))?;
    let quantized = graph.nodes().iter().filter(|node| {
        matches!(
            node.kind,
            OpKind::Conv2d(_)
                | OpKind::Depthwise(_)
                | OpKind::Pointwise(_)
                | OpKind::GlobalAvgPool(_)
        )
    });
    std::iter::once(input)
        .chain(quantized.map(|node| node.output))
        .map(|id| {
            let info = graph.tensor(id)?;
            Ok(ActivationTensor {
                name: info.name.clone(),
                id,
                shape: info.shape.clone(),
            })
        })
        .collect()
}

/// The layers of a folded graph that carry weights, in network order.
pub fn weight_layers(graph: &GraphBuilder) -> Result<Vec<WeightLayer>, GraphError> {
    let mut layers = Vec::new();
    for node in graph.nodes() {
        let weight = node
            .params
            .iter()
            .map(|&p| &graph.params()[p])
            .find(|p| matches!(p.role, ParamRole::Weight { .. }));
        let Some(weight) = weight else { continue };
        layers.push(WeightLayer {
            name: node.name.clone(),
            weight_shape: weight.shape.clone(),
            channels: *weight.shape.last().unwrap_or(&1),
            input: graph.tensor(node.input)?.name.clone(),
        });
    }
    Ok(layers)
}

/// Names of a layer's tensors in the int8 file.
pub fn weight_q_name(layer: &str) -> String {
    format!("{layer}.weight_q")
}

pub fn weight_scale_name(layer: &str) -> String {
    format!("{layer}.weight_scale")
}

pub fn bias_q_name(layer: &str) -> String {
    format!("{layer}.bias_q")
}

/// Names of an activation tensor's parameters in the int8 file.
pub fn act_scale_name(tensor: &str) -> String {
    format!("{tensor}.act_scale")
}

pub fn act_zero_point_name(tensor: &str) -> String {
    format!("{tensor}.act_zero_point")
}
