//! A whole folded graph run by the integer reference (`int8`): the oracle of the compiled
//! int8 plan, whose logits must match these bit for bit.

use std::collections::HashMap;

use super::int8::{
    conv2d_acc, depthwise_acc, dequantize_logits, gemm_acc, global_avg_pool, logit_scale,
    pool_multiplier, requant_multiplier, requantize_channels, Int8Output,
};
use crate::graph::{GraphBuilder, Node};
use crate::ops::{Activation, Int8Activation, Int8LayerParams, Int8Numbers, Int8Window, OpKind};

/// An int8 tensor: values (NHWC or [N, C], unpacked), shape, quantization.
struct Quantized {
    values: Vec<i8>,
    shape: Vec<usize>,
    act: Int8Activation,
}

/// Runs `images` (NHWC f32, the graph's input shape) through `graph` (folded) with
/// `numbers`, every op in integers as the int8 scheme defines it; returns the classifier's
/// logits `[N, classes]`. The softmax after them, if any, is left out: it is float.
pub fn run_int8_graph(
    graph: &GraphBuilder,
    numbers: &dyn Int8Numbers,
    images: &[f32],
) -> Result<Vec<f32>, String> {
    let &[input] = graph.inputs() else {
        return Err("the graph needs exactly one input".into());
    };
    let info = graph.tensor(input).map_err(|e| e.to_string())?;
    let act = activation(numbers, &info.name)?;
    let mut tensors = HashMap::new();
    tensors.insert(
        input,
        Quantized {
            values: images.iter().map(|&r| act.quantize(r)).collect(),
            shape: info.shape.clone(),
            act,
        },
    );
    for node in graph.nodes() {
        let x = tensors
            .get(&node.input)
            .ok_or_else(|| format!("`{}` reads a tensor no int8 op wrote", node.name))?;
        match &node.kind {
            OpKind::Dense(_) => return classifier(node, numbers, x),
            OpKind::Softmax(_) => continue,
            _ => {}
        }
        let y = step(graph, node, numbers, x)?;
        tensors.insert(node.output, y);
    }
    Err("the graph has no classifier".into())
}

fn activation(numbers: &dyn Int8Numbers, tensor: &str) -> Result<Int8Activation, String> {
    numbers
        .activation(tensor)
        .ok_or_else(|| format!("no scale and zero point for `{tensor}`"))
}

fn layer<'a>(numbers: &'a dyn Int8Numbers, node: &Node) -> Result<Int8LayerParams<'a>, String> {
    numbers
        .layer(&node.name)
        .ok_or_else(|| format!("no int8 weights for `{}`", node.name))
}

/// One convolution or the pool, from `x` to the node's output tensor.
fn step(
    graph: &GraphBuilder,
    node: &Node,
    numbers: &dyn Int8Numbers,
    x: &Quantized,
) -> Result<Quantized, String> {
    let out_name = &graph.tensor(node.output).map_err(|e| e.to_string())?.name;
    let y = activation(numbers, out_name)?;
    let shape: [usize; 4] = x.shape.clone().try_into().map_err(|_| "not NHWC")?;
    if let OpKind::GlobalAvgPool(_) = node.kind {
        return Ok(pool(x, shape, y));
    }
    let p = layer(numbers, node)?;
    let (acc, out_shape, fused) = convolution_acc(&node.kind, x, shape, &p)?;
    let multipliers: Vec<f32> = p
        .weight_scale
        .iter()
        .map(|&s_w| requant_multiplier(x.act.scale, s_w, y.scale))
        .collect();
    let output = Int8Output::new(fused.unwrap_or(Activation::None), y.scale, y.zero_point);
    Ok(Quantized {
        values: requantize_channels(&acc, &multipliers, output),
        shape: out_shape,
        act: y,
    })
}

/// The global average pool of NHWC `x` into activation `y`.
fn pool(x: &Quantized, shape: [usize; 4], y: Int8Activation) -> Quantized {
    let m = pool_multiplier(x.act.scale, y.scale, shape[1] * shape[2]);
    Quantized {
        values: global_avg_pool(&x.values, shape, x.act.zero_point, m, y.zero_point),
        shape: vec![shape[0], shape[3]],
        act: y,
    }
}

/// A convolution's i32 accumulators (bias included), their shape, and the activation fused
/// after it.
type Accumulators = (Vec<i32>, Vec<usize>, Option<Activation>);

/// The accumulators of convolution `kind` on NHWC `x`.
fn convolution_acc(
    kind: &OpKind,
    x: &Quantized,
    shape: [usize; 4],
    p: &Int8LayerParams,
) -> Result<Accumulators, String> {
    let window = |kernel, stride, padding| Int8Window {
        kernel,
        stride,
        padding,
        input_zero: x.act.zero_point,
    };
    match kind {
        OpKind::Conv2d(op) => {
            let w = window(op.kernel, op.stride, op.padding);
            let (acc, s) = conv2d_acc(&x.values, shape, w, p.weight_q, p.bias_q);
            Ok((acc, s.to_vec(), op.fused))
        }
        OpKind::Depthwise(op) => {
            let w = window(op.kernel, op.stride, op.padding);
            let (acc, s) = depthwise_acc(&x.values, shape, w, p.weight_q, p.bias_q);
            Ok((acc, s.to_vec(), op.fused))
        }
        OpKind::Pointwise(op) => {
            let acc = gemm_acc(&x.values, shape[3], x.act.zero_point, p.weight_q, p.bias_q);
            let s = vec![shape[0], shape[1], shape[2], op.out_channels];
            Ok((acc, s, op.fused))
        }
        other => Err(format!("{} has no int8 form", other.type_name())),
    }
}

fn classifier(node: &Node, numbers: &dyn Int8Numbers, x: &Quantized) -> Result<Vec<f32>, String> {
    let p = layer(numbers, node)?;
    let acc = gemm_acc(
        &x.values,
        x.shape[1],
        x.act.zero_point,
        p.weight_q,
        p.bias_q,
    );
    let scales: Vec<f32> = p
        .weight_scale
        .iter()
        .map(|&s_w| logit_scale(x.act.scale, s_w))
        .collect();
    Ok(dequantize_logits(&acc, &scales))
}
