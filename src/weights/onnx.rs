//! ONNX export (opset 13): the network as standard operators, with its weights as initializers,
//! for any runtime that reads ONNX (onnxruntime, tract, TensorRT, OpenVINO, ...).
//!
//! The graph is the one `MobileNetV1Config::build` describes, written node by node: stem
//! convolution, 13 depthwise (`group` = channels) + pointwise convolutions, each followed by
//! its batchnorm (folded into the convolution's weights and bias by default, or kept as a
//! `BatchNormalization` node) and activation (`Relu`, or `Clip` 0..6 for ReLU6), then
//! `GlobalAveragePool`, `Flatten`, `Gemm` and optionally `Softmax`. Padding is written as
//! explicit `pads`; TF SAME padding becomes asymmetric pads computed for the configured
//! resolution, so the spatial size is fixed and only the batch dimension is dynamic.
//!
//! The int8 exporter (`quant::onnx`) writes its QDQ graph with the same pieces
//! (`GraphWriter`, `conv_attributes`, `finish_model`, ...), which are crate-visible for it.
//!
//! The protobuf messages below are the subset of the public `onnx.proto` (proto2) this
//! exporter writes, with its field numbers; `prost` encodes them. Repeated scalars are
//! written unpacked, as proto2 declares them, except where onnx.proto asks for packing.

use super::pretrained::{foreign_shape, kind_of, torch_transpose, Kind};
use super::{fold_batchnorm, write_atomic, FoldError, Naming, Pretrained, WeightsError};
use crate::data::Preprocess;
use crate::model::{conv_bn_pair, MobileNetV1Config, Preset, BLOCKS, CONV_LAYERS};
use crate::ops::{Activation, Padding};
use prost::Message;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// The ONNX operator set the graph uses.
pub const ONNX_OPSET: i64 = 13;
/// IR version 7 is the one released with opset 13 (ONNX 1.8).
const IR_VERSION: i64 = 7;
/// TensorProto.DataType.FLOAT.
const FLOAT: i32 = 1;
/// TensorProto.DataType.INT8: the int8 model's weights and zero points.
pub(crate) const INT8: i32 = 3;
/// TensorProto.DataType.INT32: the int8 model's biases and their zero points.
pub(crate) const INT32: i32 = 6;

/// The layout of the exported model's `input`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputLayout {
    /// `[N, C, H, W]`, what PyTorch and most ONNX tooling expect.
    #[default]
    Nchw,
    /// `[N, H, W, C]`, as TensorFlow and image decoders hold pixels (a Transpose is inserted).
    Nhwc,
}

impl FromStr for InputLayout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "nchw" => Ok(InputLayout::Nchw),
            "nhwc" => Ok(InputLayout::Nhwc),
            other => Err(format!(
                "unknown input layout {other:?}; expected nchw or nhwc"
            )),
        }
    }
}

impl fmt::Display for InputLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputLayout::Nchw => "NCHW",
            InputLayout::Nhwc => "NHWC",
        })
    }
}

/// What the exported graph looks like beyond the weights themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OnnxOptions {
    pub input_layout: InputLayout,
    /// Keep every batchnorm as a `BatchNormalization` node instead of folding it.
    pub keep_bn: bool,
    /// End with `Softmax`: the output is `probabilities` instead of `logits`.
    pub softmax: bool,
}

/// What was written, for the command line to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxSummary {
    /// Size of the file in bytes.
    pub bytes: usize,
    pub nodes: usize,
    /// Weight values stored in the initializers.
    pub parameters: usize,
    /// `logits` or `probabilities`.
    pub output: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot export to ONNX: {0}")]
    Config(String),
    #[error(
        "cannot export to ONNX: the weights do not match their configuration (alpha {alpha}, \
         {classes} classes, {in_channels} input channels):\n  {}",
        problems.join("\n  ")
    )]
    Params {
        alpha: f32,
        classes: usize,
        in_channels: usize,
        problems: Vec<String>,
    },
    #[error("cannot export to ONNX: {0}")]
    Fold(#[from] FoldError),
    #[error(transparent)]
    File(#[from] WeightsError),
}

/// Writes `weights` as an ONNX model to `path`. The model is encoded fully in memory first and
/// then written atomically: a failed export leaves no file behind and an existing `path` as it
/// was.
pub fn export_onnx(
    weights: &Pretrained,
    options: &OnnxOptions,
    path: &Path,
) -> Result<OnnxSummary, OnnxError> {
    let (bytes, summary) = encode_onnx(weights, options)?;
    write_atomic(path, &bytes)?;
    Ok(summary)
}

/// The ONNX model's bytes, and what they hold: `export_onnx` without the file. Fails, naming
/// every problem, when a parameter of the configuration is missing or mis-shaped.
pub fn encode_onnx(
    weights: &Pretrained,
    options: &OnnxOptions,
) -> Result<(Vec<u8>, OnnxSummary), OnnxError> {
    let config = &weights.config;
    config
        .validate()
        .map_err(|e| OnnxError::Config(e.to_string()))?;
    check_params(weights)?;
    let params = if options.keep_bn {
        weights.params.clone()
    } else {
        fold_batchnorm(&weights.params, config.bn_eps)?
    };
    let mut graph = GraphWriter::new(&params);
    let (input_dims, mut x) = input_node(&mut graph, config, options.input_layout);
    let mut size = config.resolution;
    for layer in 0..CONV_LAYERS {
        (x, size) = conv_layer(&mut graph, config, options, layer, (x, size));
    }
    let output = classifier_head(&mut graph, &x, options.softmax);
    let model = ModelParts {
        config,
        layout: options.input_layout,
        input_dims,
        output,
        description: "MobileNet V1",
        metadata: metadata(weights, options),
    };
    Ok(finish_model(graph, model))
}

/// What `finish_model` needs besides the nodes: the graph's input and output and the
/// file's metadata.
pub(crate) struct ModelParts<'a> {
    pub config: &'a MobileNetV1Config,
    pub layout: InputLayout,
    pub input_dims: [i64; 4],
    /// `logits` or `probabilities`.
    pub output: &'static str,
    /// How the graph's and model's doc strings name the network.
    pub description: &'static str,
    pub metadata: BTreeMap<String, String>,
}

/// The ModelProto around `graph`'s nodes and initializers, encoded, with its summary: one
/// place that writes the opset, the dynamic batch and the doc strings for every exporter.
pub(crate) fn finish_model(graph: GraphWriter, parts: ModelParts) -> (Vec<u8>, OnnxSummary) {
    let ModelParts { config, output, .. } = parts;
    let nodes = graph.nodes.len();
    let parameters = graph.parameters;
    let graph = GraphProto {
        node: graph.nodes,
        name: "mobilenet_v1".into(),
        initializer: graph.initializers,
        doc_string: format!(
            "{} alpha {} at {}x{}, {} classes, exported by mobilenet-wgpu",
            parts.description, config.alpha, config.resolution, config.resolution, config.classes
        ),
        input: vec![value_info("input", &parts.input_dims)],
        output: vec![value_info(output, &[0, config.classes as i64])],
    };
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: ONNX_OPSET,
        }],
        producer_name: "mobilenet-wgpu".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        model_version: 1,
        doc_string: format!(
            "input: {} float, (pixel / 255 - mean) / std per channel (see metadata_props); \
             output: {output} [batch, {}]",
            parts.layout, config.classes
        ),
        graph: Some(graph),
        metadata_props: parts
            .metadata
            .into_iter()
            .map(|(key, value)| StringStringEntryProto { key, value })
            .collect(),
    };
    let bytes = model.encode_to_vec();
    let summary = OnnxSummary {
        bytes: bytes.len(),
        nodes,
        parameters,
        output,
    };
    (bytes, summary)
}

/// The graph input and the name of the NCHW tensor it becomes (a Transpose for NHWC).
pub(crate) fn input_node(
    graph: &mut GraphWriter,
    config: &MobileNetV1Config,
    layout: InputLayout,
) -> ([i64; 4], String) {
    let res = config.resolution as i64;
    let channels = config.in_channels as i64;
    match layout {
        InputLayout::Nchw => ([0, channels, res, res], "input".to_string()),
        InputLayout::Nhwc => {
            let nchw = graph.node(
                "Transpose",
                "input_to_nchw",
                &["input"],
                vec![ints("perm", &[0, 3, 1, 2])],
            );
            ([0, res, res, channels], nchw)
        }
    }
}

/// Convolution `layer` (stem, then depthwise and pointwise in turn) with its batch norm
/// (folded into the convolution or kept) and activation, on `x` of spatial `size`: the
/// output's name and size.
fn conv_layer(
    graph: &mut GraphWriter,
    config: &MobileNetV1Config,
    options: &OnnxOptions,
    layer: usize,
    (x, size): (String, usize),
) -> (String, usize) {
    let [conv, norm] = conv_bn_pair(layer);
    // Depthwise layers (odd) have one group per channel.
    let group = match layer % 2 {
        1 => graph
            .params
            .shape(&format!("{conv}.weight"))
            .and_then(|s| s.last().copied())
            .unwrap_or(1),
        _ => 1,
    };
    let (attributes, out) = conv_attributes(config, layer, size, group);
    let weight = graph.param(&format!("{conv}.weight"));
    let mut inputs = vec![x.as_str(), weight.as_str()];
    let bias = (!options.keep_bn).then(|| graph.param(&format!("{conv}.bias")));
    if let Some(bias) = &bias {
        inputs.push(bias);
    }
    let mut x = graph.node("Conv", &conv, &inputs, attributes);
    if options.keep_bn {
        let stats: Vec<String> = ["gamma", "beta", "running_mean", "running_var"]
            .iter()
            .map(|s| graph.param(&format!("{norm}.{s}")))
            .collect();
        let mut inputs = vec![x.as_str()];
        inputs.extend(stats.iter().map(String::as_str));
        x = graph.node(
            "BatchNormalization",
            &norm,
            &inputs,
            vec![float("epsilon", config.bn_eps)],
        );
    }
    let act = format!("{}.act", if options.keep_bn { &norm } else { &conv });
    (activation_node(graph, config.activation, &act, x), out)
}

/// `activation` applied to `x` by a node named `name` (`Relu`, or `Clip` 0..6 for ReLU6;
/// none is no node): the name of its result.
pub(crate) fn activation_node(
    graph: &mut GraphWriter,
    activation: Activation,
    name: &str,
    x: String,
) -> String {
    match activation {
        Activation::None => x,
        Activation::Relu => graph.node("Relu", name, &[&x], vec![]),
        Activation::Relu6 => {
            graph.scalar("relu6.min", 0.0);
            graph.scalar("relu6.max", 6.0);
            graph.node("Clip", name, &[&x, "relu6.min", "relu6.max"], vec![])
        }
    }
}

/// The `Conv` attributes of convolution `layer` (stem, then depthwise and pointwise in turn)
/// with `group` groups on an input of spatial `size`, and its output size.
pub(crate) fn conv_attributes(
    config: &MobileNetV1Config,
    layer: usize,
    size: usize,
    group: usize,
) -> (Vec<AttributeProto>, usize) {
    let stride = match layer {
        0 => config.stem_stride,
        l if l % 2 == 1 => BLOCKS[l.div_ceil(2) - 1].1,
        _ => 1,
    };
    let kernel = if layer == 0 || layer % 2 == 1 { 3 } else { 1 };
    let (out, before) = config.padding.resolve(size, kernel, stride);
    // TF SAME pads the remainder after; symmetric padding is the same on both sides.
    let after = match config.padding {
        Padding::Symmetric => kernel / 2,
        Padding::Same => ((out - 1) * stride + kernel).saturating_sub(size) - before,
    };
    let (b, a) = (before as i64, after as i64);
    let attributes = vec![
        ints("kernel_shape", &[kernel as i64, kernel as i64]),
        ints("strides", &[stride as i64, stride as i64]),
        ints("pads", &[b, b, a, a]),
        ints("dilations", &[1, 1]),
        int("group", group as i64),
    ];
    (attributes, out)
}

/// Pool, flatten and the classifier (plus a softmax when asked): the graph output's name.
fn classifier_head(graph: &mut GraphWriter, x: &str, softmax: bool) -> &'static str {
    let pooled = graph.node("GlobalAveragePool", "pool", &[x], vec![]);
    let flat = graph.node("Flatten", "flatten", &[&pooled], vec![int("axis", 1)]);
    let weight = graph.param("classifier.weight");
    let bias = graph.param("classifier.bias");
    graph.node_named(
        "Gemm",
        "classifier",
        &[&flat, &weight, &bias],
        "logits",
        vec![int("transB", 1)],
    );
    if !softmax {
        return "logits";
    }
    graph.node_named(
        "Softmax",
        "softmax",
        &["logits"],
        "probabilities",
        vec![int("axis", 1)],
    );
    "probabilities"
}

/// Every parameter the network needs, with its shape, reported all at once.
fn check_params(weights: &Pretrained) -> Result<(), OnnxError> {
    let config = &weights.config;
    let model = config
        .build(1)
        .map_err(|e| OnnxError::Config(e.to_string()))?;
    let mut problems = Vec::new();
    for info in model.graph.params() {
        match weights.params.shape(&info.name) {
            None => problems.push(format!(
                "{}: missing (expected shape {:?})",
                info.name, info.shape
            )),
            Some(shape) if shape != info.shape.as_slice() => problems.push(format!(
                "{}: shape {shape:?}, expected {:?}",
                info.name, info.shape
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(OnnxError::Params {
            alpha: config.alpha,
            classes: config.classes,
            in_channels: config.in_channels,
            problems,
        })
    }
}

/// The preset a configuration matches, or "custom".
fn preset_name(config: &MobileNetV1Config) -> String {
    [Preset::Paper, Preset::Timm, Preset::Keras]
        .into_iter()
        .find(|&p| {
            let preset = MobileNetV1Config::preset(p);
            (preset.activation, preset.padding, preset.bn_eps)
                == (config.activation, config.padding, config.bn_eps)
        })
        .map_or_else(|| "custom".to_string(), |p| p.to_string())
}

/// The model's `metadata_props`: what a user needs to feed the network and read its output.
fn metadata(weights: &Pretrained, options: &OnnxOptions) -> BTreeMap<String, String> {
    let mut entries = common_metadata(
        &weights.config,
        &weights.preprocess,
        &weights.class_names,
        options,
    );
    let kept = if options.keep_bn { "kept" } else { "folded" };
    entries.insert("batchnorm".into(), kept.into());
    entries.insert("source_naming".into(), weights.naming.to_string());
    entries
}

/// The metadata every exported model carries, float or int8: the network, its input and
/// its output.
pub(crate) fn common_metadata(
    config: &MobileNetV1Config,
    preprocess: &Preprocess,
    class_names: &[String],
    options: &OnnxOptions,
) -> BTreeMap<String, String> {
    let json = |v: serde_json::Value| v.to_string();
    let normalize = &preprocess.normalize;
    let output = if options.softmax {
        "probabilities"
    } else {
        "logits"
    };
    let entries = [
        ("class_names", json(serde_json::json!(class_names))),
        (
            "normalization",
            json(serde_json::json!({ "mean": normalize.mean, "std": normalize.std })),
        ),
        ("resolution", config.resolution.to_string()),
        ("crop_pct", preprocess.crop_pct.to_string()),
        ("input_layout", options.input_layout.to_string()),
        ("in_channels", config.in_channels.to_string()),
        ("classes", config.classes.to_string()),
        ("alpha", config.alpha.to_string()),
        ("preset", preset_name(config)),
        ("activation", config.activation.to_string()),
        ("padding", config.padding.to_string()),
        ("stem_stride", config.stem_stride.to_string()),
        ("bn_eps", config.bn_eps.to_string()),
        ("output", output.to_string()),
        (
            "mobilenet_wgpu_config",
            serde_json::to_string(config).unwrap_or_default(),
        ),
    ];
    entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Collects nodes and initializers; value names are the node names.
pub(crate) struct GraphWriter<'a> {
    params: &'a crate::graph::ParamStore,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    names: std::collections::HashSet<String>,
    /// Weight values stored in the initializers, for the summary.
    pub parameters: usize,
}

impl<'a> GraphWriter<'a> {
    /// A writer whose `param` reads `params` (the int8 exporter, which has none, passes an
    /// empty store and writes its tensors with `typed_initializer`).
    pub(crate) fn new(params: &'a crate::graph::ParamStore) -> Self {
        GraphWriter {
            params,
            nodes: Vec::new(),
            initializers: Vec::new(),
            names: Default::default(),
            parameters: 0,
        }
    }

    /// A node whose single output is named after the node; returns that name.
    pub(crate) fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        self.node_named(op, name, inputs, name, attribute);
        name.to_string()
    }

    pub(crate) fn node_named(
        &mut self,
        op: &str,
        name: &str,
        inputs: &[&str],
        output: &str,
        attribute: Vec<AttributeProto>,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: name.to_string(),
            op_type: op.to_string(),
            attribute,
        });
    }

    /// One of our parameters as an initializer in ONNX's layout (convolutions OIHW, the
    /// classifier `[out, in]` for `transB = 1`); returns its name. `check_params` has made
    /// sure it exists.
    fn param(&mut self, name: &str) -> String {
        let (Some(shape), Some(values)) = (self.params.shape(name), self.params.get(name)) else {
            unreachable!("check_params verified {name}");
        };
        let (onnx_shape, values) = onnx_layout(name, shape, values);
        self.parameters += values.len();
        self.initializer(name, &onnx_shape, &values);
        name.to_string()
    }

    /// A scalar constant shared by every node that reads it.
    pub(crate) fn scalar(&mut self, name: &str, value: f32) {
        if !self.names.contains(name) {
            self.initializer(name, &[], &[value]);
        }
    }

    pub(crate) fn initializer(&mut self, name: &str, shape: &[usize], values: &[f32]) {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.typed_initializer(name, shape, FLOAT, bytes);
    }

    /// An initializer of any TensorProto.DataType (`INT8`, `INT32`, ...), its values
    /// little-endian in `raw_data`.
    pub(crate) fn typed_initializer(
        &mut self,
        name: &str,
        shape: &[usize],
        data_type: i32,
        raw_data: Vec<u8>,
    ) {
        self.names.insert(name.to_string());
        self.initializers.push(TensorProto {
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type,
            name: name.to_string(),
            raw_data,
        });
    }
}

/// Parameter `name` of our `shape` in ONNX's layout (convolutions OIHW, the classifier
/// `[out, in]` for `transB = 1`, vectors as they are): the shape and the values moved.
pub(crate) fn onnx_layout(name: &str, shape: &[usize], values: &[f32]) -> (Vec<usize>, Vec<f32>) {
    let kind = kind_of(name, shape);
    let onnx_shape = foreign_shape(Naming::Timm, kind, shape);
    let values = match kind {
        Kind::Vector => values.to_vec(),
        _ => torch_transpose(values, &onnx_shape, true),
    };
    (onnx_shape, values)
}

/// A float tensor's type with its dimensions; 0 is the dynamic `batch` dimension.
fn value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|&d| Dimension {
            value: Some(if d == 0 {
                DimensionValue::DimParam("batch".into())
            } else {
                DimensionValue::DimValue(d)
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            value: Some(TypeValue::TensorType(TypeTensor {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
    }
}

fn attribute(name: &str, kind: AttributeType) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: kind as i32,
        ..Default::default()
    }
}

pub(crate) fn int(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        i: Some(value),
        ..attribute(name, AttributeType::Int)
    }
}

fn float(name: &str, value: f32) -> AttributeProto {
    AttributeProto {
        f: Some(value),
        ..attribute(name, AttributeType::Float)
    }
}

fn ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        ints: values.to_vec(),
        ..attribute(name, AttributeType::Ints)
    }
}

// The messages of onnx.proto this exporter writes (field numbers as published there).

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(string, tag = "3")]
    producer_version: String,
    #[prost(int64, tag = "5")]
    model_version: i64,
    #[prost(string, tag = "6")]
    doc_string: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    /// Empty: the default `ai.onnx` domain.
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(string, tag = "10")]
    doc_string: String,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

/// AttributeProto.AttributeType (the values this exporter uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AttributeType {
    Float = 1,
    Int = 2,
    Ints = 7,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    /// An `AttributeType`.
    #[prost(int32, tag = "20")]
    r#type: i32,
    #[prost(float, optional, tag = "2")]
    f: Option<f32>,
    #[prost(int64, optional, tag = "3")]
    i: Option<i64>,
    #[prost(int64, repeated, packed = "false", tag = "8")]
    ints: Vec<i64>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, packed = "false", tag = "1")]
    dims: Vec<i64>,
    /// A TensorProto.DataType; 1 is FLOAT.
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(string, tag = "8")]
    name: String,
    /// Little-endian values, row-major.
    #[prost(bytes = "vec", tag = "9")]
    raw_data: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(oneof = "TypeValue", tags = "1")]
    value: Option<TypeValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum TypeValue {
    #[prost(message, tag = "1")]
    TensorType(TypeTensor),
}

/// TypeProto.Tensor.
#[derive(Clone, PartialEq, Message)]
struct TypeTensor {
    /// A TensorProto.DataType.
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

/// TensorShapeProto.Dimension.
#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(oneof = "DimensionValue", tags = "1, 2")]
    value: Option<DimensionValue>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum DimensionValue {
    #[prost(int64, tag = "1")]
    DimValue(i64),
    #[prost(string, tag = "2")]
    DimParam(String),
}
