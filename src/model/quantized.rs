//! The int8 network (issue 21) as one compiled plan: every op of a folded graph becomes its
//! int8 dispatches (`ops::int8_ops`), with its numbers (`Int8Numbers`: the int8 file's
//! weights, scales, biases and activation parameters) packed and folded once here, at
//! load time; a batch is quantized on the CPU, uploaded as packed int8 and run in one
//! submit. The classifier's logits come back dequantized (f32), and the softmax after it
//! runs in f32 on the float kernel, as in float inference.

use std::collections::HashMap;

use crate::gpu::Gpu;
use crate::graph::{
    DispatchPlan, GraphBuilder, GraphError, Node, PlannedLayer, RunTiming, TensorId,
};
use crate::ops::int8::{
    fold_bias, logit_scale, pack_depthwise_weights, pack_gemm_weights, pack_rows, pool_multiplier,
    requant_multiplier, words_for,
};
use crate::ops::{
    int8_pointwise, Activation, Dispatch, Int8Activation, Int8Depthwise, Int8Gemm, Int8LayerParams,
    Int8Numbers, Int8Output, Int8Pool, Int8Stem, Int8Window, OpKind, Slot,
};

/// What one batch gives back.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Outputs {
    /// `[N, classes]`, dequantized from the classifier's i32 accumulators.
    pub logits: Vec<f32>,
    /// Softmax of the logits, when the graph ends in one.
    pub probabilities: Option<Vec<f32>>,
}

/// A folded graph compiled to int8 kernels on one device.
pub struct Int8Plan {
    plan: DispatchPlan,
    input: Int8Activation,
    input_shape: Vec<usize>,
    has_probabilities: bool,
}

/// The graph's ops turned into planned layers, tensor by tensor.
struct Lowering<'a> {
    graph: &'a GraphBuilder,
    numbers: &'a dyn Int8Numbers,
    tensors: HashMap<TensorId, usize>,
    sizes: Vec<u64>,
    problems: Vec<String>,
}

impl Int8Plan {
    /// Compiles `graph` (built folded, `MobileNetV1Config::build_folded`, for its batch)
    /// with `numbers`. Every missing or mis-sized number is reported at once
    /// (`GraphError::Params`), as is an op with no int8 form (batch norm left unfolded).
    pub fn compile(
        gpu: &Gpu,
        graph: &GraphBuilder,
        numbers: &dyn Int8Numbers,
    ) -> Result<Int8Plan, GraphError> {
        let &[input] = graph.inputs() else {
            return Err(GraphError::InputCount(graph.inputs().len()));
        };
        let info = graph.tensor(input)?;
        let mut lowering = Lowering {
            graph,
            numbers,
            tensors: HashMap::new(),
            sizes: Vec::new(),
            problems: Vec::new(),
        };
        let input_act = lowering.activation(input)?;
        lowering.tensor(input, false)?;
        let mut layers = Vec::new();
        let mut logits = None;
        let mut probabilities = None;
        for node in graph.nodes() {
            if let Some(layer) = lowering.layer(node)? {
                layers.push(layer);
            }
            match node.kind {
                OpKind::Dense(_) => logits = Some(lowering.tensors[&node.output]),
                OpKind::Softmax(_) => probabilities = Some(lowering.tensors[&node.output]),
                _ => {}
            }
        }
        let Some(logits) = logits else {
            lowering
                .problems
                .push("the graph has no classifier (dense layer)".into());
            return Err(GraphError::Params(lowering.problems));
        };
        if !lowering.problems.is_empty() {
            // A tensor two layers read is reported once.
            let mut seen = std::collections::HashSet::new();
            lowering.problems.retain(|p| seen.insert(p.clone()));
            return Err(GraphError::Params(lowering.problems));
        }
        let outputs: Vec<usize> = std::iter::once(logits).chain(probabilities).collect();
        let entry = lowering.tensors[&input];
        let plan = DispatchPlan::compile(gpu, &lowering.sizes, &layers, entry, &outputs)?;
        Ok(Int8Plan {
            plan,
            input: input_act,
            input_shape: info.shape.clone(),
            has_probabilities: probabilities.is_some(),
        })
    }

    /// The input's scale and zero point.
    pub fn input_quantization(&self) -> Int8Activation {
        self.input
    }

    /// The device memory the plan holds.
    pub fn memory(&self) -> crate::graph::MemoryReport {
        self.plan.memory()
    }

    /// Dispatches per batch.
    pub fn dispatch_count(&self) -> usize {
        self.plan.dispatch_count()
    }

    /// Every dispatch with the kernel it runs (`DispatchPlan::kernels`).
    pub fn kernels(&self) -> Vec<String> {
        self.plan.kernels()
    }

    /// `images` (preprocessed NHWC f32, the graph's input shape) quantized and packed.
    fn quantize_input(&self, images: &[f32]) -> Result<Vec<u32>, GraphError> {
        let expected: usize = self.input_shape.iter().product();
        if images.len() != expected {
            return Err(GraphError::InputLength {
                got: images.len(),
                expected,
                shape: self.input_shape.clone(),
            });
        }
        let channels = self.input_shape[3];
        let zero_point = self.input.zero_point as i8;
        Ok(pack_rows(
            &self.input.quantize_all(images),
            channels,
            zero_point,
        ))
    }

    /// Every dispatch timed on its own (`DispatchPlan::profile`).
    pub fn profile(
        &self,
        gpu: &Gpu,
        images: &[f32],
    ) -> Result<Vec<(String, std::time::Duration)>, GraphError> {
        let packed = self.quantize_input(images)?;
        self.plan.profile(gpu, bytemuck::cast_slice(&packed))
    }

    /// Quantizes `images` (preprocessed NHWC f32, the graph's input shape) and runs them.
    pub fn run(&self, images: &[f32]) -> Result<Int8Outputs, GraphError> {
        let packed = self.quantize_input(images)?;
        Ok(self.outputs(self.plan.run(bytemuck::cast_slice(&packed))?))
    }

    /// `run`, also reporting the wall-clock time (quantizing the input on the CPU, upload,
    /// the dispatches and the read-back) and, where the adapter has timestamps, the GPU
    /// time of the dispatches alone, as `Plan::run_timed` reports float inference.
    pub fn run_timed(&self, images: &[f32]) -> Result<(Int8Outputs, RunTiming), GraphError> {
        let start = std::time::Instant::now();
        let packed = self.quantize_input(images)?;
        let (outputs, timing) = self.plan.run_timed(bytemuck::cast_slice(&packed), start)?;
        Ok((self.outputs(outputs), timing))
    }

    /// The logits (and probabilities) from the plan's output bytes.
    fn outputs(&self, bytes: Vec<Vec<u8>>) -> Int8Outputs {
        let mut bytes = bytes.into_iter();
        let mut floats = || bytes.next().map(|b| bytemuck::pod_collect_to_vec(&b));
        let logits = floats().unwrap_or_default();
        let probabilities = if self.has_probabilities {
            floats()
        } else {
            None
        };
        Int8Outputs {
            logits,
            probabilities,
        }
    }
}

/// The packed weights, bias_eff and per-channel factors of a layer, as parameter bytes.
/// The int8 kernel of a convolution node (stem, depthwise or pointwise) from input `x` to
/// output `y`, given its weights and output channels: its dispatches, its weights packed as
/// that kernel reads them, and the workspace bytes it needs (the stem's unfolded patches).
fn convolution_kernel(
    kind: &OpKind,
    input: &[usize],
    (weight_q, channels): (&[i8], usize),
    x: Int8Activation,
    y: Int8Activation,
) -> Result<(Vec<Dispatch>, Vec<u32>, u64), String> {
    let k = weight_q.len() / channels.max(1);
    let window = |kernel, stride, padding| Int8Window {
        kernel,
        stride,
        padding,
        input_zero: x.zero_point,
    };
    let output = |fused: Option<Activation>| {
        Int8Output::new(fused.unwrap_or(Activation::None), y.scale, y.zero_point)
    };
    match kind {
        OpKind::Conv2d(op) => {
            let stem = Int8Stem {
                out_channels: op.out_channels,
                window: window(op.kernel, op.stride, op.padding),
                output: output(op.fused),
            };
            let workspace = stem.workspace_words(input)? as u64 * 4;
            let weights = pack_gemm_weights(weight_q, k, channels);
            Ok((stem.forward(input)?.to_vec(), weights, workspace))
        }
        OpKind::Depthwise(op) => {
            let dw = Int8Depthwise {
                window: window(op.kernel, op.stride, op.padding),
                output: output(op.fused),
            };
            let weights = pack_depthwise_weights(weight_q, channels);
            Ok((vec![dw.forward(input)?], weights, 0))
        }
        OpKind::Pointwise(op) => {
            let dispatch = int8_pointwise(input, op.out_channels, output(op.fused));
            Ok((vec![dispatch], pack_gemm_weights(weight_q, k, channels), 0))
        }
        other => Err(format!("{} has no int8 form", other.type_name())),
    }
}

fn param_bytes(weights: Vec<u32>, bias_eff: Vec<i32>, factors: Vec<f32>) -> Vec<Vec<u8>> {
    vec![
        bytemuck::cast_slice(&weights).to_vec(),
        bytemuck::cast_slice(&bias_eff).to_vec(),
        bytemuck::cast_slice(&factors).to_vec(),
    ]
}

impl<'a> Lowering<'a> {
    /// The plan's index of `id`, allocated on first sight: packed int8, or f32 (`float`).
    fn tensor(&mut self, id: TensorId, float: bool) -> Result<usize, GraphError> {
        if let Some(&index) = self.tensors.get(&id) {
            return Ok(index);
        }
        let shape = &self.graph.tensor(id)?.shape;
        let (rows, last) = shape.split_at(shape.len().saturating_sub(1));
        let last = last.first().copied().unwrap_or(1);
        let rows: usize = rows.iter().product();
        let bytes = if float {
            rows * last * 4
        } else {
            rows * words_for(last) * 4
        };
        self.sizes.push(bytes as u64);
        self.tensors.insert(id, self.sizes.len() - 1);
        Ok(self.sizes.len() - 1)
    }

    /// The activation parameters of tensor `id`; a missing one is recorded and stands in
    /// as (1, 0) so that every problem is found in one pass.
    fn activation(&mut self, id: TensorId) -> Result<Int8Activation, GraphError> {
        let graph = self.graph;
        let name = &graph.tensor(id)?.name;
        Ok(self.numbers.activation(name).unwrap_or_else(|| {
            self.problems
                .push(format!("no scale and zero point for activation `{name}`"));
            Int8Activation {
                scale: 1.0,
                zero_point: 0,
            }
        }))
    }

    /// The numbers of `node`'s weights, checked against its shapes (`None`, recorded,
    /// when missing or mis-sized).
    fn weights(&mut self, node: &Node) -> Option<Int8LayerParams<'a>> {
        let graph = self.graph;
        let spec = node.params.first().map(|&p| &graph.params()[p])?;
        let channels = *spec.shape.last()?;
        let numbers = self.numbers;
        let Some(params) = numbers.layer(&node.name) else {
            self.problems
                .push(format!("no int8 weights for layer `{}`", node.name));
            return None;
        };
        let sizes = [
            params.weight_q.len(),
            params.weight_scale.len(),
            params.bias_q.len(),
        ];
        if sizes != [spec.len(), channels, channels] {
            self.problems.push(format!(
                "layer `{}`: {} weights, {} scales and {} biases; its shape {:?} needs {}, {channels} and {channels}",
                node.name, sizes[0], sizes[1], sizes[2], spec.shape, spec.len()
            ));
            return None;
        }
        Some(params)
    }

    /// `node` as a planned layer, or `None` where its numbers are missing (recorded).
    fn layer(&mut self, node: &Node) -> Result<Option<PlannedLayer>, GraphError> {
        let input_shape = self.graph.tensor(node.input)?.shape.clone();
        let output_shape = self.graph.tensor(node.output)?.shape.clone();
        let input = self.tensor(node.input, matches!(node.kind, OpKind::Softmax(_)))?;
        let float_out = matches!(node.kind, OpKind::Dense(_) | OpKind::Softmax(_));
        let output = self.tensor(node.output, float_out)?;
        let shape_error = |reason: String| GraphError::Shape {
            op: node.name.clone(),
            kind: node.kind.type_name(),
            input: input_shape.clone(),
            reason,
        };
        let lowered = match &node.kind {
            OpKind::Softmax(_) => Some((node.kind.forward(&input_shape, &output_shape), vec![], 0)),
            OpKind::GlobalAvgPool(_) => {
                self.pool(node, &input_shape)?.map(|d| (vec![d], vec![], 0))
            }
            OpKind::Dense(_) => self.dense(node, &input_shape)?,
            OpKind::BatchNorm(_) => {
                return Err(shape_error(
                    "batch norm has no int8 form; build the graph folded".into(),
                ))
            }
            _ => self.convolution(node, &input_shape).map_err(shape_error)?,
        };
        Ok(lowered.map(|(dispatches, params, workspace)| PlannedLayer {
            name: node.name.clone(),
            dispatches,
            input,
            output,
            params,
            workspace_bytes: workspace,
        }))
    }
}

/// Dispatches, parameter bytes and workspace bytes of one layer.
type Lowered = (Vec<Dispatch>, Vec<Vec<u8>>, u64);

impl Lowering<'_> {
    /// The stem, a depthwise or a pointwise convolution.
    fn convolution(&mut self, node: &Node, input: &[usize]) -> Result<Option<Lowered>, String> {
        let error = |e: GraphError| e.to_string();
        let x = self.activation(node.input).map_err(error)?;
        let y = self.activation(node.output).map_err(error)?;
        let Some(params) = self.weights(node) else {
            return Ok(None);
        };
        let multipliers: Vec<f32> = params
            .weight_scale
            .iter()
            .map(|&s_w| requant_multiplier(x.scale, s_w, y.scale))
            .collect();
        let bias_eff = fold_bias(params.bias_q, params.weight_q, x.zero_point);
        let weights = (params.weight_q, params.bias_q.len());
        let (dispatches, weights, workspace) =
            convolution_kernel(&node.kind, input, weights, x, y)?;
        let params = param_bytes(weights, bias_eff, multipliers);
        Ok(Some((dispatches, params, workspace)))
    }

    fn pool(&mut self, node: &Node, input: &[usize]) -> Result<Option<Dispatch>, GraphError> {
        let x = self.activation(node.input)?;
        let y = self.activation(node.output)?;
        let pool = Int8Pool {
            input_zero: x.zero_point,
            output_zero: y.zero_point,
            multiplier: pool_multiplier(x.scale, y.scale, input[1] * input[2]),
        };
        let shape_error = |reason| GraphError::Shape {
            op: node.name.clone(),
            kind: node.kind.type_name(),
            input: input.to_vec(),
            reason,
        };
        Ok(Some(pool.forward(input).map_err(shape_error)?))
    }

    /// The classifier: f32 logits, `f32(acc) * f32(s_x * s_w[c])`.
    fn dense(&mut self, node: &Node, input: &[usize]) -> Result<Option<Lowered>, GraphError> {
        let x = self.activation(node.input)?;
        let Some(params) = self.weights(node) else {
            return Ok(None);
        };
        let classes = params.bias_q.len();
        let scales = params
            .weight_scale
            .iter()
            .map(|&s_w| logit_scale(x.scale, s_w))
            .collect();
        let weights = pack_gemm_weights(params.weight_q, input[1], classes);
        let bias_eff = fold_bias(params.bias_q, params.weight_q, x.zero_point);
        let gemm = Int8Gemm {
            rows: input[0],
            k: input[1],
            n: classes,
        };
        let dispatch = gemm.logits(Slot::Input, Slot::Output);
        Ok(Some((
            vec![dispatch],
            param_bytes(weights, bias_eff, scales),
            0,
        )))
    }
}
