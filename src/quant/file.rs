//! The int8 file (INT8.md, "File"): safetensors whose tensors are `<layer>.weight_q` (I8,
//! our float layout), `<layer>.weight_scale` (F32, per output channel), `<layer>.bias_q`
//! (I32), `<tensor>.act_scale` (F32 [1]) and `<tensor>.act_zero_point` (I32 [1]), and
//! whose metadata holds the format, the scheme, the model configuration and the
//! calibration, plus the preprocessing and class names a float checkpoint carries.
//! Written atomically, like every file; read back with every name, dtype, shape and value
//! range checked against the configuration.

use super::error::QuantError;
use super::model::{CalibrationInfo, QuantizedLayer, QuantizedModel};
use super::scheme::{QuantParams, ACT_Q_MAX, ACT_Q_MIN, WEIGHT_Q_MAX};
use super::tensors::{
    act_scale_name, act_zero_point_name, activation_tensors, bias_q_name, weight_layers,
    weight_q_name, weight_scale_name,
};
use crate::data::{Normalize, Preprocess};
use crate::model::MobileNetV1Config;
use crate::weights::{
    load_safetensors_raw, parse_metadata, save_safetensors_raw, RawTensor, INT8_FORMAT,
};
use safetensors::Dtype;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The arithmetic the file's numbers mean (INT8.md); bumped if it ever changes.
pub const SCHEME: &str = "int8-v1";

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn raw(name: String, dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) -> RawTensor {
    RawTensor {
        name,
        dtype,
        shape,
        bytes,
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn i32_bytes(values: &[i32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

impl QuantizedModel {
    /// Writes the int8 file (atomically: the old file or the new one, never a mix).
    pub fn save(&self, path: &Path) -> Result<(), QuantError> {
        let mut tensors = Vec::new();
        for layer in &self.layers {
            let channels = vec![layer.weight_scale.len()];
            let bytes = layer.weight_q.iter().map(|&q| q as u8).collect();
            tensors.push(raw(
                weight_q_name(&layer.name),
                Dtype::I8,
                layer.shape.clone(),
                bytes,
            ));
            let scales = f32_bytes(&layer.weight_scale);
            tensors.push(raw(
                weight_scale_name(&layer.name),
                Dtype::F32,
                channels.clone(),
                scales,
            ));
            let bias = i32_bytes(&layer.bias_q);
            tensors.push(raw(bias_q_name(&layer.name), Dtype::I32, channels, bias));
        }
        for (name, params) in &self.activations {
            let scale = f32_bytes(&[params.scale]);
            tensors.push(raw(act_scale_name(name), Dtype::F32, vec![1], scale));
            let zero = i32_bytes(&[params.zero_point]);
            tensors.push(raw(act_zero_point_name(name), Dtype::I32, vec![1], zero));
        }
        let metadata: BTreeMap<String, String> = [
            ("format", INT8_FORMAT.to_string()),
            ("scheme", SCHEME.to_string()),
            ("config", json(&self.config)),
            ("calibration", json(&self.calibration)),
            ("normalize_mean", json(&self.preprocess.normalize.mean)),
            ("normalize_std", json(&self.preprocess.normalize.std)),
            ("crop_pct", json(&self.preprocess.crop_pct)),
            ("class_names", json(&self.class_names)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        save_safetensors_raw(path, &tensors, &metadata)?;
        Ok(())
    }

    /// Reads an int8 file, refusing float files and any file whose tensors do not match
    /// its configuration (every problem named in one error).
    pub fn load(path: &Path) -> Result<QuantizedModel, QuantError> {
        let file = load_safetensors_raw(path)?;
        check_format(path, &file.metadata)?;
        let header = Header::parse(&file.metadata).map_err(|problem| QuantError::Invalid {
            path: path.to_path_buf(),
            problems: vec![problem],
        })?;
        let mut tensors = Tensors {
            by_name: file
                .tensors
                .into_iter()
                .map(|t| (t.name.clone(), t))
                .collect(),
            problems: Vec::new(),
        };
        let model = header.read_model(&mut tensors)?;
        let mut problems = tensors.problems;
        let mut unexpected: Vec<&String> = tensors.by_name.keys().collect();
        unexpected.sort();
        problems.extend(
            unexpected
                .iter()
                .map(|n| format!("`{n}`: not a tensor of this model")),
        );
        if problems.is_empty() {
            Ok(model)
        } else {
            Err(QuantError::Invalid {
                path: path.to_path_buf(),
                problems,
            })
        }
    }
}

/// Refuses files of another format, with what to do with a float file.
fn check_format(path: &Path, metadata: &BTreeMap<String, String>) -> Result<(), QuantError> {
    let not_int8 = |reason: String| QuantError::NotInt8 {
        path: path.to_path_buf(),
        reason,
    };
    let make_one = format!(
        "make one from it with `mobilenet quantize --weights {} --data DIR --out Q.safetensors`",
        path.display()
    );
    match metadata.get("format").map(String::as_str) {
        Some(INT8_FORMAT) => {}
        Some(crate::weights::checkpoint::FORMAT) => {
            return Err(not_int8(format!("it is a float checkpoint; {make_one}")))
        }
        Some(other) => return Err(not_int8(format!("its format is {other:?}"))),
        None => {
            return Err(not_int8(format!(
                "its metadata names no format, as float weights files (timm, Keras) do; {make_one}"
            )))
        }
    }
    match metadata.get("scheme").map(String::as_str) {
        Some(SCHEME) => Ok(()),
        other => Err(not_int8(format!(
            "its scheme is {other:?}, this build reads {SCHEME:?}; quantize the float weights \
             again with this build"
        ))),
    }
}

/// The metadata of an int8 file, parsed.
struct Header {
    config: MobileNetV1Config,
    calibration: CalibrationInfo,
    preprocess: Preprocess,
    class_names: Vec<String>,
}

impl Header {
    fn parse(meta: &BTreeMap<String, String>) -> Result<Header, String> {
        let config: MobileNetV1Config = parse_metadata(meta, "config")?;
        config
            .validate()
            .map_err(|e| format!("metadata `config`: {e}"))?;
        let preprocess = Preprocess {
            resolution: config.resolution,
            crop_pct: parse_metadata(meta, "crop_pct")?,
            normalize: Normalize {
                mean: parse_metadata(meta, "normalize_mean")?,
                std: parse_metadata(meta, "normalize_std")?,
            },
        };
        Ok(Header {
            calibration: parse_metadata(meta, "calibration")?,
            class_names: parse_metadata(meta, "class_names")?,
            config,
            preprocess,
        })
    }

    /// The model the configuration describes, its tensors taken from `tensors` (problems
    /// are collected there).
    fn read_model(self, tensors: &mut Tensors) -> Result<QuantizedModel, QuantError> {
        let graph = self.config.build_folded(1)?.graph;
        let layers = weight_layers(&graph)?
            .into_iter()
            .map(|layer| tensors.layer(&layer.name, &layer.weight_shape, layer.channels))
            .collect();
        let activations = activation_tensors(&graph)?
            .into_iter()
            .map(|t| {
                let params = tensors.activation(&t.name);
                (t.name, params)
            })
            .collect();
        Ok(QuantizedModel {
            config: self.config,
            layers,
            activations,
            calibration: self.calibration,
            preprocess: self.preprocess,
            class_names: self.class_names,
        })
    }
}

/// The file's tensors not yet taken, and what was wrong with those taken.
struct Tensors {
    by_name: HashMap<String, RawTensor>,
    problems: Vec<String>,
}

impl Tensors {
    /// The bytes of `name`, which must be `dtype` of `shape`; empty (and a problem noted)
    /// otherwise.
    fn take(&mut self, name: &str, dtype: Dtype, shape: &[usize]) -> Vec<u8> {
        let Some(tensor) = self.by_name.remove(name) else {
            self.problems
                .push(format!("`{name}` ({dtype} {shape:?}) is missing"));
            return Vec::new();
        };
        if tensor.dtype != dtype || tensor.shape != shape {
            self.problems.push(format!(
                "`{name}` is {} {:?}, expected {dtype} {shape:?}",
                tensor.dtype, tensor.shape
            ));
            return Vec::new();
        }
        tensor.bytes
    }

    fn layer(&mut self, name: &str, shape: &[usize], channels: usize) -> QuantizedLayer {
        let weight_q: Vec<i8> = self
            .take(&weight_q_name(name), Dtype::I8, shape)
            .into_iter()
            .map(|b| b as i8)
            .collect();
        if weight_q.iter().any(|&q| (q as i32) < -WEIGHT_Q_MAX) {
            self.problems.push(format!(
                "`{}` holds -128; weights are symmetric in [-127, 127]",
                weight_q_name(name)
            ));
        }
        let scale_name = weight_scale_name(name);
        let weight_scale = f32s(&self.take(&scale_name, Dtype::F32, &[channels]));
        self.check_scales(&scale_name, &weight_scale);
        let bias_q = i32s(&self.take(&bias_q_name(name), Dtype::I32, &[channels]));
        QuantizedLayer {
            name: name.to_string(),
            shape: shape.to_vec(),
            weight_q,
            weight_scale,
            bias_q,
        }
    }

    fn activation(&mut self, tensor: &str) -> QuantParams {
        let scale_name = act_scale_name(tensor);
        let scale = f32s(&self.take(&scale_name, Dtype::F32, &[1]));
        self.check_scales(&scale_name, &scale);
        let zero_name = act_zero_point_name(tensor);
        let zero_point = i32s(&self.take(&zero_name, Dtype::I32, &[1]));
        let zero_point = zero_point.first().copied().unwrap_or(0);
        if !(ACT_Q_MIN..=ACT_Q_MAX).contains(&zero_point) {
            self.problems.push(format!(
                "`{zero_name}` is {zero_point}, outside the int8 range [-128, 127]"
            ));
        }
        QuantParams {
            scale: scale.first().copied().unwrap_or(1.0),
            zero_point,
        }
    }

    fn check_scales(&mut self, name: &str, scales: &[f32]) {
        if let Some(bad) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            self.problems.push(format!(
                "`{name}` holds {bad}; scales are positive and finite"
            ));
        }
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn i32s(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
