//! The quantized network: int8 weights with their per-channel scales and int32 biases for
//! every layer, (scale, zero point) for every activation tensor, and what is needed to
//! feed it (configuration, preprocessing, class names); and `quantize`, which makes one
//! from float weights and a calibration.

use super::calibrate::Calibration;
use super::error::QuantError;
use super::range::Method;
use super::scheme::{quantize_bias, quantize_weights, QuantParams};
use super::tensors::{activation_tensors, weight_layers};
use crate::data::Preprocess;
use crate::graph::ParamStore;
use crate::model::{fold_batchnorm, MobileNetV1Config};
use crate::ops::{Int8Activation, Int8LayerParams, Int8Numbers};
use crate::weights::Pretrained;

/// One layer's int8 weights (in our float layout, output channels last), their scales
/// (one per output channel) and its int32 bias.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedLayer {
    /// The op's name: `stem.conv`, `blocks.<i>.dw`, `blocks.<i>.pw`, `classifier`.
    pub name: String,
    pub shape: Vec<usize>,
    pub weight_q: Vec<i8>,
    pub weight_scale: Vec<f32>,
    pub bias_q: Vec<i32>,
}

impl QuantizedLayer {
    /// The real weights the int8 ones stand for, `s[c] * q`.
    pub fn dequantized(&self) -> Vec<f32> {
        let channels = self.weight_scale.len().max(1);
        self.weight_q
            .iter()
            .enumerate()
            .map(|(i, &q)| (self.weight_scale[i % channels] as f64 * q as f64) as f32)
            .collect()
    }
}

/// How the activation ranges were chosen, as the file's metadata records it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CalibrationInfo {
    #[serde(flatten)]
    pub method: Method,
    /// Images the ranges were calibrated on.
    pub images: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedModel {
    pub config: MobileNetV1Config,
    /// Every layer with weights, in network order.
    pub layers: Vec<QuantizedLayer>,
    /// Every quantized activation tensor in network order, the input (`image`) first.
    pub activations: Vec<(String, QuantParams)>,
    pub calibration: CalibrationInfo,
    /// The float weights' preprocessing, which the int8 model expects as well.
    pub preprocess: Preprocess,
    pub class_names: Vec<String>,
}

impl QuantizedModel {
    pub fn layer(&self, name: &str) -> Option<&QuantizedLayer> {
        self.layers.iter().find(|l| l.name == name)
    }

    pub fn activation(&self, tensor: &str) -> Option<QuantParams> {
        self.activations
            .iter()
            .find(|(name, _)| name == tensor)
            .map(|&(_, params)| params)
    }
}

/// The plan and the CPU reference read the int8 file's numbers by the folded graph's names.
impl Int8Numbers for QuantizedModel {
    fn layer(&self, name: &str) -> Option<Int8LayerParams<'_>> {
        QuantizedModel::layer(self, name).map(|l| Int8LayerParams {
            weight_q: &l.weight_q,
            weight_scale: &l.weight_scale,
            bias_q: &l.bias_q,
        })
    }

    fn activation(&self, tensor: &str) -> Option<Int8Activation> {
        QuantizedModel::activation(self, tensor).map(|p| Int8Activation {
            scale: p.scale,
            zero_point: p.zero_point,
        })
    }
}

/// Quantizes `weights` (batch norm folded first, as for float inference) with activation
/// ranges chosen by `method` from `calibration`.
pub fn quantize(
    weights: &Pretrained,
    calibration: &Calibration,
    method: Method,
) -> Result<QuantizedModel, QuantError> {
    let ranges: Vec<(String, (f64, f64))> = calibration
        .tensors
        .iter()
        .map(|(name, stats)| (name.clone(), method.range(stats)))
        .collect();
    let info = CalibrationInfo {
        method,
        images: calibration.images,
    };
    quantize_with_ranges(weights, &ranges, info)
}

/// `quantize` with the activation ranges given, by tensor name (every quantized
/// activation tensor needs one).
pub fn quantize_with_ranges(
    weights: &Pretrained,
    ranges: &[(String, (f64, f64))],
    calibration: CalibrationInfo,
) -> Result<QuantizedModel, QuantError> {
    let config = &weights.config;
    let graph = config.build_folded(1)?.graph;
    let activations = activation_tensors(&graph)?
        .into_iter()
        .map(|tensor| {
            let (_, (lo, hi)) =
                ranges
                    .iter()
                    .find(|(n, _)| *n == tensor.name)
                    .ok_or_else(|| {
                        QuantError::Options(format!(
                            "no calibrated range for tensor `{}`",
                            tensor.name
                        ))
                    })?;
            Ok((tensor.name, QuantParams::from_range(*lo, *hi)))
        })
        .collect::<Result<Vec<_>, QuantError>>()?;
    let folded = fold_batchnorm(&weights.params, config.bn_eps)?;
    let layers = weight_layers(&graph)?
        .into_iter()
        .map(|layer| {
            let input_scale = activations
                .iter()
                .find(|(name, _)| *name == layer.input)
                .map(|(_, p)| p.scale)
                .ok_or_else(|| {
                    QuantError::Options(format!("`{}` reads no quantized tensor", layer.name))
                })?;
            quantize_layer(&folded, &layer.name, &layer.weight_shape, input_scale)
        })
        .collect::<Result<Vec<_>, QuantError>>()?;
    Ok(QuantizedModel {
        config: config.clone(),
        layers,
        activations,
        calibration,
        preprocess: weights.preprocess.clone(),
        class_names: weights.class_names.clone(),
    })
}

/// One layer of the folded parameters: weights per output channel, the bias at the
/// scale of input times weight.
fn quantize_layer(
    folded: &ParamStore,
    name: &str,
    shape: &[usize],
    input_scale: f32,
) -> Result<QuantizedLayer, QuantError> {
    let weight_name = format!("{name}.weight");
    let missing = |what: &str| QuantError::Options(format!("the folded weights lack `{what}`"));
    let weight = folded
        .get(&weight_name)
        .ok_or_else(|| missing(&weight_name))?;
    if folded.shape(&weight_name) != Some(shape) {
        return Err(QuantError::Options(format!(
            "`{weight_name}` has shape {:?}, the network needs {shape:?}",
            folded.shape(&weight_name)
        )));
    }
    let channels = *shape.last().unwrap_or(&1);
    let bias_name = format!("{name}.bias");
    let bias = folded.get(&bias_name).ok_or_else(|| missing(&bias_name))?;
    if bias.len() != channels {
        return Err(QuantError::Options(format!(
            "`{bias_name}` has {} values for {channels} output channels",
            bias.len()
        )));
    }
    let q = quantize_weights(weight, channels);
    Ok(QuantizedLayer {
        name: name.to_string(),
        shape: shape.to_vec(),
        bias_q: quantize_bias(bias, input_scale, &q.scales),
        weight_q: q.values,
        weight_scale: q.scales,
    })
}
