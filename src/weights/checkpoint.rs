//! Run checkpoints: weights, BN statistics, optimizer state, progress and the model
//! configuration in one safetensors file, written atomically.

use crate::data::Normalize;
use crate::graph::ParamStore;
use crate::model::MobileNetV1Config;
use crate::weights::{load_safetensors, parse_metadata, save_safetensors, WeightsError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Written into every checkpoint's metadata; bumped when the layout changes.
pub const FORMAT: &str = "mobilenet-wgpu/1";
/// Prefix of optimizer-state tensor names inside the file.
const OPTIM_PREFIX: &str = "optim/";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    File(#[from] WeightsError),
    #[error("`{}` is not a mobilenet-wgpu checkpoint: {problem}", path.display())]
    Metadata { path: PathBuf, problem: String },
}

/// What `train` saves and `--resume`, `eval` and `predict` load.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    pub config: MobileNetV1Config,
    pub params: ParamStore,
    /// Named `<parameter>.<state>`; empty in weights-only files.
    pub optimizer_state: ParamStore,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps completed.
    pub step: usize,
    pub best_val_acc: Option<f64>,
    /// Input normalisation the weights were trained with.
    pub normalize: Normalize,
    /// The evaluation view's centre-crop fraction (1.0 for data sets at their own size).
    pub crop_pct: f32,
    pub class_names: Vec<String>,
    /// The training options, as JSON, for checking that a resumed run matches.
    pub train_options: Option<String>,
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

impl Checkpoint {
    pub fn save(&self, path: &Path) -> Result<(), CheckpointError> {
        let optim_names: Vec<String> = self
            .optimizer_state
            .iter()
            .map(|(name, _, _)| format!("{OPTIM_PREFIX}{name}"))
            .collect();
        let mut tensors: Vec<(&str, &[usize], &[f32])> = self.params.iter().collect();
        for ((_, shape, values), name) in self.optimizer_state.iter().zip(&optim_names) {
            tensors.push((name.as_str(), shape, values));
        }
        let mut metadata = BTreeMap::new();
        metadata.insert("format".to_string(), FORMAT.to_string());
        metadata.insert("config".to_string(), json(&self.config));
        metadata.insert("epoch".to_string(), self.epoch.to_string());
        metadata.insert("step".to_string(), self.step.to_string());
        if let Some(acc) = self.best_val_acc {
            metadata.insert("best_val_acc".to_string(), acc.to_string());
        }
        metadata.insert("normalize_mean".to_string(), json(&self.normalize.mean));
        metadata.insert("normalize_std".to_string(), json(&self.normalize.std));
        metadata.insert("crop_pct".to_string(), json(&self.crop_pct));
        metadata.insert("class_names".to_string(), json(&self.class_names));
        if let Some(options) = &self.train_options {
            metadata.insert("train_options".to_string(), options.clone());
        }
        save_safetensors(path, &tensors, &metadata)?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
        let file = load_safetensors(path)?;
        let problem = |problem: String| CheckpointError::Metadata {
            path: path.to_path_buf(),
            problem,
        };
        let meta = &file.metadata;
        match meta.get("format") {
            Some(format) if format == FORMAT => {}
            Some(other) => return Err(problem(format!("format {other:?}, this build reads {FORMAT:?}"))),
            None => {
                return Err(problem(
                    "no `format` in its metadata (pretrained files from other tools are loaded by `predict`)".into(),
                ))
            }
        }
        let config: MobileNetV1Config = parse_metadata(meta, "config").map_err(problem)?;
        let epoch: usize = parse_metadata(meta, "epoch").map_err(problem)?;
        let step: usize = parse_metadata(meta, "step").map_err(problem)?;
        let best_val_acc: Option<f64> = meta.get("best_val_acc").and_then(|v| v.parse().ok());
        let normalize = Normalize {
            mean: parse_metadata(meta, "normalize_mean").map_err(problem)?,
            std: parse_metadata(meta, "normalize_std").map_err(problem)?,
        };
        let class_names: Vec<String> = parse_metadata(meta, "class_names").map_err(problem)?;
        // Written since streaming data sets; older checkpoints resized the whole image.
        let crop_pct: f32 = match meta.get("crop_pct") {
            Some(_) => parse_metadata(meta, "crop_pct").map_err(problem)?,
            None => 1.0,
        };
        let mut params = ParamStore::new();
        let mut optimizer_state = ParamStore::new();
        for tensor in file.tensors {
            match tensor.name.strip_prefix(OPTIM_PREFIX) {
                Some(name) => optimizer_state.insert(name, tensor.shape, tensor.values),
                None => params.insert(&tensor.name, tensor.shape, tensor.values),
            }
        }
        Ok(Checkpoint {
            config,
            params,
            optimizer_state,
            epoch,
            step,
            best_val_acc,
            normalize,
            crop_pct,
            class_names,
            train_options: meta.get("train_options").cloned(),
        })
    }
}
