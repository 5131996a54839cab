//! ONNX export of the int8 model (issue 21) in the QDQ form: the float graph of
//! `weights::encode_onnx` with `QuantizeLinear`/`DequantizeLinear` around every convolution
//! and the classifier, the form onnxruntime's `quantize_static` writes by default and runs
//! with integer kernels (it fuses each DequantizeLinear -> Conv -> QuantizeLinear into
//! QLinearConv). Opset 13, the first with per-axis QuantizeLinear/DequantizeLinear.
//!
//! - Weights: int8 initializers in ONNX's layout (OIHW, the classifier `[out, in]`), scales
//!   per output channel (`axis` 0), int8 zero points 0, each through a DequantizeLinear.
//! - Biases: int32 at scale `s_x * s_w[c]`, zero point 0, through a DequantizeLinear, as
//!   `quantize_static` quantizes them (the file's `bias_q`, unchanged).
//! - Activations: QuantizeLinear -> DequantizeLinear with the tensor's scale and int8 zero
//!   point: the input, every convolution's output (after its activation) and the pool's.
//!   A Relu or Clip whose clamp the quantized range already applies is left out, as
//!   `quantize_static` leaves it out (after ReLU the zero point is -128, real 0).
//! - The logits stay float (Gemm on dequantized values), as our classifier dequantizes.

use super::file::SCHEME;
use super::model::{QuantizedLayer, QuantizedModel};
use super::scheme::{QuantParams, ACT_Q_MAX, ACT_Q_MIN};
use super::tensors::{activation_tensors, weight_layers};
use crate::graph::{GraphBuilder, ParamStore};
use crate::model::{conv_bn_pair, CLASSIFIER, CONV_LAYERS};
use crate::ops::int8::logit_scale;
use crate::ops::{Int8Output, OpKind};
use crate::weights::{
    activation_node, common_metadata, conv_attributes, finish_model, input_node, int, onnx_layout,
    write_atomic, GraphWriter, ModelParts, OnnxError, OnnxOptions, OnnxSummary, INT32, INT8,
    INT8_FORMAT,
};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Writes `model` as a QDQ ONNX model to `path`, atomically, as `weights::export_onnx`
/// writes a float one.
pub fn export_onnx_int8(
    model: &QuantizedModel,
    options: &OnnxOptions,
    path: &Path,
) -> Result<OnnxSummary, OnnxError> {
    let (bytes, summary) = encode_onnx_int8(model, options)?;
    write_atomic(path, &bytes)?;
    Ok(summary)
}

/// The QDQ ONNX model's bytes and what they hold. `keep_bn` is refused: the int8 weights
/// were quantized with batch norm folded in, so there is no batch norm left to keep.
pub fn encode_onnx_int8(
    model: &QuantizedModel,
    options: &OnnxOptions,
) -> Result<(Vec<u8>, OnnxSummary), OnnxError> {
    if options.keep_bn {
        return Err(OnnxError::Config(
            "an int8 model has its batch norm folded into the int8 weights; there is none to \
             keep (drop --keep-bn, or export the float checkpoint with it)"
                .into(),
        ));
    }
    let config = &model.config;
    let folded = config
        .build_folded(1)
        .map_err(|e| OnnxError::Config(e.to_string()))?;
    check_model(model, &folded.graph)?;
    let image = activation_tensors(&folded.graph)
        .map_err(|e| OnnxError::Config(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| OnnxError::Config("the folded graph has no input".into()))?;
    let empty = ParamStore::new();
    let mut writer = Int8Writer {
        graph: GraphWriter::new(&empty),
        model,
        io: tensor_names(&folded.graph)?,
        pool: pool_output(&folded.graph)?,
    };
    let (input_dims, input) = input_node(&mut writer.graph, config, options.input_layout);
    let mut x = writer.qdq(input, &image.name)?;
    let mut size = config.resolution;
    for layer in 0..CONV_LAYERS {
        (x, size) = writer.conv_layer(layer, (x, size))?;
    }
    let output = writer.classifier_head(&x, options.softmax)?;
    let parts = ModelParts {
        config,
        layout: options.input_layout,
        input_dims,
        output,
        description: "MobileNet V1 int8 (QDQ)",
        metadata: int8_metadata(model, options),
    };
    Ok(finish_model(writer.graph, parts))
}

/// The float export's metadata, and what the int8 file adds: its scheme and calibration.
fn int8_metadata(model: &QuantizedModel, options: &OnnxOptions) -> BTreeMap<String, String> {
    let mut metadata = common_metadata(
        &model.config,
        &model.preprocess,
        &model.class_names,
        options,
    );
    let extra = [
        ("batchnorm", "folded".to_string()),
        ("source_format", INT8_FORMAT.to_string()),
        ("quantization", QUANTIZATION.to_string()),
        ("scheme", SCHEME.to_string()),
        (
            "calibration",
            serde_json::to_string(&model.calibration).unwrap_or_default(),
        ),
    ];
    metadata.extend(extra.into_iter().map(|(k, v)| (k.to_string(), v)));
    metadata
}

/// The `quantization` metadata: what the QDQ nodes hold, for a reader of the file.
const QUANTIZATION: &str = "int8 QDQ: weights int8 symmetric per output channel (axis 0, zero \
     point 0), biases int32 at scale s_x * s_w, activations int8 per tensor (scale, zero point)";

/// Every layer and activation the folded graph needs, with consistent sizes and zero points
/// in the int8 range, reported all at once.
fn check_model(model: &QuantizedModel, graph: &GraphBuilder) -> Result<(), OnnxError> {
    let graph_error = |e: crate::graph::GraphError| OnnxError::Config(e.to_string());
    let mut problems = Vec::new();
    for layer in weight_layers(graph).map_err(graph_error)? {
        let Some(q) = model.layer(&layer.name) else {
            problems.push(format!("{}: no int8 weights", layer.name));
            continue;
        };
        let values: usize = layer.weight_shape.iter().product();
        if q.shape != layer.weight_shape || q.weight_q.len() != values {
            problems.push(format!(
                "{}: int8 weights of shape {:?} ({} values), expected {:?}",
                layer.name,
                q.shape,
                q.weight_q.len(),
                layer.weight_shape
            ));
        }
        if q.weight_scale.len() != layer.channels || q.bias_q.len() != layer.channels {
            problems.push(format!(
                "{}: {} weight scales and {} biases for {} output channels",
                layer.name,
                q.weight_scale.len(),
                q.bias_q.len(),
                layer.channels
            ));
        }
    }
    for tensor in activation_tensors(graph).map_err(graph_error)? {
        match model.activation(&tensor.name) {
            None => problems.push(format!("{}: no activation scale", tensor.name)),
            Some(p) if !(ACT_Q_MIN..=ACT_Q_MAX).contains(&p.zero_point) => problems.push(format!(
                "{}: zero point {} is not int8",
                tensor.name, p.zero_point
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(OnnxError::Params {
        alpha: model.config.alpha,
        classes: model.config.classes,
        in_channels: model.config.in_channels,
        problems,
    })
}

/// Each op's input and output tensor names in the folded graph, by the op's name: which
/// activation's scale a layer reads and which it writes.
fn tensor_names(graph: &GraphBuilder) -> Result<HashMap<String, (String, String)>, OnnxError> {
    let name = |id| {
        graph
            .tensor(id)
            .map(|t| t.name.clone())
            .map_err(|e| OnnxError::Config(e.to_string()))
    };
    graph
        .nodes()
        .iter()
        .map(|node| Ok((node.name.clone(), (name(node.input)?, name(node.output)?))))
        .collect()
}

/// The name of the pool's output tensor in the folded graph (`pool`).
fn pool_output(graph: &GraphBuilder) -> Result<String, OnnxError> {
    let node = graph
        .nodes()
        .iter()
        .find(|node| matches!(node.kind, OpKind::GlobalAvgPool(_)))
        .ok_or_else(|| OnnxError::Config("the folded graph has no global average pool".into()))?;
    graph
        .tensor(node.output)
        .map(|t| t.name.clone())
        .map_err(|e| OnnxError::Config(e.to_string()))
}

/// The graph being written, and the int8 numbers it takes its initializers from.
struct Int8Writer<'a> {
    graph: GraphWriter<'a>,
    model: &'a QuantizedModel,
    /// Each op's input and output tensor names (`tensor_names`).
    io: HashMap<String, (String, String)>,
    /// The pool's output tensor, which the classifier reads.
    pool: String,
}

impl Int8Writer<'_> {
    fn activation(&self, tensor: &str) -> Result<QuantParams, OnnxError> {
        self.model
            .activation(tensor)
            .ok_or_else(|| OnnxError::Config(format!("no scale for activation `{tensor}`")))
    }

    fn layer(&self, name: &str) -> Result<&QuantizedLayer, OnnxError> {
        self.model
            .layer(name)
            .ok_or_else(|| OnnxError::Config(format!("no int8 weights for `{name}`")))
    }

    fn io(&self, op: &str) -> Result<(String, String), OnnxError> {
        self.io
            .get(op)
            .cloned()
            .ok_or_else(|| OnnxError::Config(format!("the folded graph has no op `{op}`")))
    }

    /// `x` quantized with activation `tensor`'s scale and zero point and dequantized again:
    /// the dequantized value's name. Scale and zero point are scalars (per tensor).
    fn qdq(&mut self, x: String, tensor: &str) -> Result<String, OnnxError> {
        let params = self.activation(tensor)?;
        let scale = format!("{tensor}.act_scale");
        let zero = format!("{tensor}.act_zero_point");
        self.graph.initializer(&scale, &[], &[params.scale]);
        let zero_byte = vec![params.zero_point as i8 as u8];
        self.graph.typed_initializer(&zero, &[], INT8, zero_byte);
        let quantized = format!("{tensor}.quantized");
        let q = self
            .graph
            .node("QuantizeLinear", &quantized, &[&x, &scale, &zero], vec![]);
        let dequantized = format!("{tensor}.dequantized");
        Ok(self.graph.node(
            "DequantizeLinear",
            &dequantized,
            &[&q, &scale, &zero],
            vec![],
        ))
    }

    /// Layer `name`'s int8 weights in ONNX's layout through a per-output-channel
    /// DequantizeLinear: the float weights' name.
    fn weight(&mut self, name: &str) -> Result<String, OnnxError> {
        let layer = self.layer(name)?;
        let weight_name = format!("{name}.weight");
        // Moved as f32, which holds every int8 exactly, to share the float layout code.
        let as_f32: Vec<f32> = layer.weight_q.iter().map(|&q| q as f32).collect();
        let (shape, moved) = onnx_layout(&weight_name, &layer.shape, &as_f32);
        let bytes = moved.iter().map(|&v| v as i8 as u8).collect();
        let channels = layer.weight_scale.len();
        let scales = layer.weight_scale.clone();
        let (q, scale, zero) = (
            format!("{name}.weight_q"),
            format!("{name}.weight_scale"),
            format!("{name}.weight_zero_point"),
        );
        self.graph.parameters += layer.weight_q.len();
        self.graph.typed_initializer(&q, &shape, INT8, bytes);
        self.graph.initializer(&scale, &[channels], &scales);
        let zeros = vec![0u8; channels];
        self.graph
            .typed_initializer(&zero, &[channels], INT8, zeros);
        Ok(self.graph.node(
            "DequantizeLinear",
            &weight_name,
            &[&q, &scale, &zero],
            vec![int("axis", 0)],
        ))
    }

    /// Layer `name`'s int32 bias at scale `s_x * s_w[c]` through a DequantizeLinear: the
    /// float bias's name.
    fn bias(&mut self, name: &str, input_scale: f32) -> Result<String, OnnxError> {
        let layer = self.layer(name)?;
        let channels = layer.bias_q.len();
        // f32(s_x * s_w[c]) from f64, as the scheme scales the bias (and the logits).
        let scales: Vec<f32> = layer
            .weight_scale
            .iter()
            .map(|&s_w| logit_scale(input_scale, s_w))
            .collect();
        let bytes = layer.bias_q.iter().flat_map(|b| b.to_le_bytes()).collect();
        let (q, scale, zero) = (
            format!("{name}.bias_q"),
            format!("{name}.bias_scale"),
            format!("{name}.bias_zero_point"),
        );
        self.graph.parameters += channels;
        self.graph.typed_initializer(&q, &[channels], INT32, bytes);
        self.graph.initializer(&scale, &[channels], &scales);
        let zeros = vec![0u8; channels * 4];
        self.graph
            .typed_initializer(&zero, &[channels], INT32, zeros);
        Ok(self.graph.node(
            "DequantizeLinear",
            &format!("{name}.bias"),
            &[&q, &scale, &zero],
            vec![int("axis", 0)],
        ))
    }

    /// Convolution `layer` on the dequantized `x` of spatial `size`, its activation where
    /// the output's quantization does not already apply it, and the output's QDQ pair: the
    /// dequantized output's name and size.
    fn conv_layer(
        &mut self,
        layer: usize,
        (x, size): (String, usize),
    ) -> Result<(String, usize), OnnxError> {
        let [conv, _] = conv_bn_pair(layer);
        let (input, output) = self.io(&conv)?;
        let s_x = self.activation(&input)?.scale;
        let y = self.activation(&output)?;
        let group = match layer % 2 {
            1 => self.layer(&conv)?.weight_scale.len(),
            _ => 1,
        };
        let config = &self.model.config;
        let (attributes, out) = conv_attributes(config, layer, size, group);
        let activation = config.activation;
        let weight = self.weight(&conv)?;
        let bias = self.bias(&conv, s_x)?;
        let mut y_float = self
            .graph
            .node("Conv", &conv, &[&x, &weight, &bias], attributes);
        // Our requantization clamps to the activation's bounds; QuantizeLinear saturates
        // to [-128, 127]. Where those agree (ReLU with zero point -128, ReLU6 whose 6 is
        // beyond 127) the node is redundant, and quantize_static leaves it out too.
        let bounds = Int8Output::new(activation, y.scale, y.zero_point);
        if (bounds.lo, bounds.hi) != (ACT_Q_MIN, ACT_Q_MAX) {
            y_float = activation_node(&mut self.graph, activation, &format!("{conv}.act"), y_float);
        }
        Ok((self.qdq(y_float, &output)?, out))
    }

    /// Pool, flatten, the pool's QDQ pair and the classifier on dequantized inputs (plus a
    /// softmax when asked): the graph output's name. Flatten comes before the QDQ pair so
    /// that the Gemm reads a DequantizeLinear directly, as QLinear fusion needs.
    fn classifier_head(&mut self, x: &str, softmax: bool) -> Result<&'static str, OnnxError> {
        let pool = self.pool.clone();
        let pooled = self.graph.node("GlobalAveragePool", "pool", &[x], vec![]);
        let flat = self
            .graph
            .node("Flatten", "flatten", &[&pooled], vec![int("axis", 1)]);
        let flat = self.qdq(flat, &pool)?;
        let s_x = self.activation(&pool)?.scale;
        let weight = self.weight(CLASSIFIER)?;
        let bias = self.bias(CLASSIFIER, s_x)?;
        self.graph.node_named(
            "Gemm",
            CLASSIFIER,
            &[&flat, &weight, &bias],
            "logits",
            vec![int("transB", 1)],
        );
        if !softmax {
            return Ok("logits");
        }
        self.graph.node_named(
            "Softmax",
            "softmax",
            &["logits"],
            "probabilities",
            vec![int("axis", 1)],
        );
        Ok("probabilities")
    }
}
