//! Pretrained MobileNet V1 weights in three namings: ours (mobilenet-wgpu checkpoints),
//! timm's (`conv_stem`, `bn1`, `blocks.s.b.conv_dw/bn1/conv_pw/bn2`, `classifier`; PyTorch
//! layouts) and Keras' (`conv1`, `conv_dw_i`, `conv_pw_i`, `..._bn`, `conv_preds`; HWIO).
//! The naming and the architecture (width, input channels, classes) are read from the keys
//! and shapes, and foreign layouts are converted once, here, to the layouts the shaders read.

use super::{load_safetensors, save_safetensors, LoadedFile, WeightsError};
use crate::data::{Normalize, Preprocess};
use crate::graph::{GraphBuilder, ParamStore};
use crate::model::{MobileNetV1Config, Preset, BLOCKS, STEM_CHANNELS};
use crate::weights::checkpoint::{Checkpoint, CheckpointError, FORMAT};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// ImageNet-1k class names in class-index order (see assets/README.md for their source).
const IMAGENET_CLASSES: &str = include_str!("../../assets/imagenet_classes.txt");

/// Metadata key under which exported files keep our configuration (timm ignores it).
const CONFIG_KEY: &str = "mobilenet_wgpu_config";
/// timm's stage sizes: blocks 1, 2-3, 4-5, 6-11, 12-13 are `blocks.0` .. `blocks.4`.
const TIMM_STAGES: [usize; 5] = [1, 2, 2, 6, 2];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// mobilenet-wgpu's own checkpoints (`stem.conv.weight`, ...), config in the metadata.
    Ours,
    Timm,
    Keras,
}

impl fmt::Display for Naming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Naming::Ours => "mobilenet-wgpu",
            Naming::Timm => "timm",
            Naming::Keras => "Keras",
        })
    }
}

/// Weights ready for a plan, with what is needed to feed and read the network.
#[derive(Clone, Debug)]
pub struct Pretrained {
    pub naming: Naming,
    pub config: MobileNetV1Config,
    /// In our naming and layouts, unfolded.
    pub params: ParamStore,
    pub preprocess: Preprocess,
    pub class_names: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    #[error(transparent)]
    File(#[from] WeightsError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(
        "`{}` is not a MobileNet V1 checkpoint this build knows: expected timm names \
         (conv_stem.weight, blocks.0.0.conv_dw.weight, ...), Keras names (conv1/kernel, \
         conv_dw_1/depthwise_kernel, ...) or a mobilenet-wgpu checkpoint; its first tensors are: {}",
        path.display(),
        sample.join(", ")
    )]
    UnknownNaming { path: PathBuf, sample: Vec<String> },
    #[error(
        "`{}` ({naming} naming, read as MobileNet V1 alpha {alpha} with {classes} classes) does not \
         match that architecture:\n  {}",
        path.display(),
        problems.join("\n  ")
    )]
    Mismatch {
        path: PathBuf,
        naming: Naming,
        alpha: f32,
        classes: usize,
        problems: Vec<String>,
    },
    #[error("cannot export to timm naming: {0}")]
    Export(String),
}

/// What a parameter is, which decides its layout in each naming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Conv,
    Depthwise,
    Pointwise,
    Dense,
    Vector,
}

pub(super) fn kind_of(name: &str, shape: &[usize]) -> Kind {
    match (shape.len(), name) {
        (1, _) => Kind::Vector,
        (_, n) if n.starts_with("stem.") => Kind::Conv,
        (_, n) if n.ends_with(".dw.weight") => Kind::Depthwise,
        (_, n) if n.ends_with(".pw.weight") => Kind::Pointwise,
        _ => Kind::Dense,
    }
}

/// Our shape of a parameter in the foreign naming's layout.
pub(super) fn foreign_shape(naming: Naming, kind: Kind, ours: &[usize]) -> Vec<usize> {
    match (naming, kind) {
        (_, Kind::Vector) | (Naming::Ours, _) | (Naming::Keras, Kind::Conv) => ours.to_vec(),
        // PyTorch: [out, in, kh, kw]; ours [kh, kw, in, out].
        (Naming::Timm, Kind::Conv) => vec![ours[3], ours[2], ours[0], ours[1]],
        (Naming::Timm, Kind::Depthwise) => vec![ours[2], 1, ours[0], ours[1]],
        (Naming::Timm, Kind::Pointwise) => vec![ours[1], ours[0], 1, 1],
        (Naming::Timm, Kind::Dense) => vec![ours[1], ours[0]],
        (Naming::Keras, Kind::Depthwise) => vec![ours[0], ours[1], ours[2], 1],
        (Naming::Keras, Kind::Pointwise | Kind::Dense) => vec![1, 1, ours[0], ours[1]],
    }
}

/// PyTorch's [out, in, (kh, kw)] order to ours [(kh, kw), in, out], or back (`to_torch`).
/// Keras and our layouts share their memory order, so only timm's tensors move.
pub(super) fn torch_transpose(values: &[f32], torch_shape: &[usize], to_torch: bool) -> Vec<f32> {
    let (out, inp) = (torch_shape[0], torch_shape.get(1).copied().unwrap_or(1));
    let taps: usize = torch_shape.iter().skip(2).product();
    let mut moved = vec![0.0; values.len()];
    for o in 0..out {
        for i in 0..inp {
            for t in 0..taps {
                let torch = (o * inp + i) * taps + t;
                let ours = (t * inp + i) * out + o;
                if to_torch {
                    moved[torch] = values[ours];
                } else {
                    moved[ours] = values[torch];
                }
            }
        }
    }
    moved
}

/// timm's (stage, index) of block 1..=13.
fn timm_block(block: usize) -> (usize, usize) {
    let mut first = 1;
    for (stage, &count) in TIMM_STAGES.iter().enumerate() {
        if block < first + count {
            return (stage, block - first);
        }
        first += count;
    }
    unreachable!("MobileNet V1 has 13 blocks")
}

/// The foreign name of one of our parameters.
fn foreign_name(naming: Naming, ours: &str) -> String {
    let (layer, suffix) = ours.rsplit_once('.').unwrap_or((ours, ""));
    match naming {
        Naming::Ours => ours.to_string(),
        Naming::Timm => timm_name(layer, suffix),
        Naming::Keras => keras_name(layer, suffix),
    }
}

/// A batch norm parameter's suffix in timm's (`weight`, `bias`) or Keras' spelling
/// (`moving_mean`, `moving_variance`); the others are spelled as ours.
fn bn_suffix(suffix: &str, timm: bool) -> &str {
    match (suffix, timm) {
        ("gamma", true) => "weight",
        ("beta", true) => "bias",
        ("running_mean", false) => "moving_mean",
        ("running_var", false) => "moving_variance",
        (s, _) => s,
    }
}

/// timm's name of our `layer`'s parameter `suffix`: `blocks.{stage}.{index}.conv_dw.weight`.
fn timm_name(layer: &str, suffix: &str) -> String {
    let local = match layer {
        "stem.conv" => "conv_stem".to_string(),
        "stem.bn" => "bn1".to_string(),
        "classifier" => "classifier".to_string(),
        _ => {
            let mut parts = layer.split('.').skip(1);
            let block: usize = parts.next().and_then(|b| b.parse().ok()).unwrap_or(0);
            let (stage, index) = timm_block(block);
            let part = match parts.next() {
                Some("dw") => "conv_dw",
                Some("dw_bn") => "bn1",
                Some("pw") => "conv_pw",
                _ => "bn2",
            };
            format!("blocks.{stage}.{index}.{part}")
        }
    };
    let suffix = if local.starts_with("conv_") || local.contains(".conv_") {
        suffix
    } else {
        bn_suffix(suffix, true)
    };
    format!("{local}.{suffix}")
}

/// Keras' name of our `layer`'s parameter `suffix`: `conv_dw_1/kernel`.
fn keras_name(layer: &str, suffix: &str) -> String {
    let (local, suffix) = match layer {
        "stem.conv" => ("conv1".to_string(), "kernel"),
        "stem.bn" => ("conv1_bn".to_string(), bn_suffix(suffix, false)),
        "classifier" if suffix == "weight" => ("conv_preds".to_string(), "kernel"),
        "classifier" => ("conv_preds".to_string(), suffix),
        _ => {
            let mut parts = layer.split('.').skip(1);
            let block = parts.next().unwrap_or("0");
            match parts.next() {
                Some("dw") => (format!("conv_dw_{block}"), "kernel"),
                Some("pw") => (format!("conv_pw_{block}"), "kernel"),
                Some(bn) => (
                    format!("conv_{}_{block}_bn", &bn[..2]),
                    bn_suffix(suffix, false),
                ),
                None => (layer.to_string(), suffix),
            }
        }
    };
    format!("{local}/{suffix}")
}

/// Keras files spell names `conv1/kernel:0` (Keras 2), `conv1/kernel` (Keras 3) or
/// `conv1.kernel`; Keras 2 calls depthwise filters `depthwise_kernel`, Keras 3 `kernel`.
fn keras_key(name: &str) -> String {
    name.trim_end_matches(":0")
        .replace('.', "/")
        .replace("/depthwise_kernel", "/kernel")
}

fn detect_naming(file: &LoadedFile) -> Option<Naming> {
    let has = |name: &str| file.tensors.iter().any(|t| t.name == name);
    if file.metadata.get("format").map(String::as_str) == Some(FORMAT) {
        Some(Naming::Ours)
    } else if has("conv_stem.weight") {
        Some(Naming::Timm)
    } else if file
        .tensors
        .iter()
        .any(|t| keras_key(&t.name) == "conv1/kernel")
    {
        Some(Naming::Keras)
    } else {
        None
    }
}

/// ImageNet's names for 1000 classes, numbered names otherwise.
pub fn default_class_names(classes: usize) -> Vec<String> {
    let imagenet: Vec<&str> = IMAGENET_CLASSES.lines().collect();
    if classes == imagenet.len() {
        imagenet.into_iter().map(String::from).collect()
    } else {
        (0..classes).map(|i| format!("class {i}")).collect()
    }
}

/// Loads any supported MobileNet V1 safetensors file: the naming and architecture come from
/// its keys and shapes; our own checkpoints carry their configuration. Every missing,
/// unexpected or mis-shaped tensor is reported in one error.
pub fn load_pretrained(path: &Path) -> Result<Pretrained, PretrainedError> {
    let file = load_safetensors(path)?;
    let naming = detect_naming(&file).ok_or_else(|| PretrainedError::UnknownNaming {
        path: path.to_path_buf(),
        sample: file
            .tensors
            .iter()
            .take(5)
            .map(|t| t.name.clone())
            .collect(),
    })?;
    if naming == Naming::Ours {
        return own_checkpoint(path, naming);
    }
    let config = foreign_config(naming, &file);
    let mismatch = |problems: Vec<String>| PretrainedError::Mismatch {
        path: path.to_path_buf(),
        naming,
        alpha: config.alpha,
        classes: config.classes,
        problems,
    };
    let model = config.build(1).map_err(|e| mismatch(vec![e.to_string()]))?;
    let params = ForeignTensors::index(naming, &file)
        .map_onto(&model.graph)
        .map_err(mismatch)?;
    let preprocess = Preprocess {
        resolution: config.resolution,
        // timm evaluates with a 0.875 centre crop; Keras' examples resize the whole image.
        crop_pct: if naming == Naming::Timm { 0.875 } else { 1.0 },
        normalize: Normalize::symmetric(config.in_channels),
    };
    Ok(Pretrained {
        naming,
        class_names: default_class_names(config.classes),
        config,
        params,
        preprocess,
    })
}

/// One of our own checkpoints: its configuration and preprocessing travel in the file.
fn own_checkpoint(path: &Path, naming: Naming) -> Result<Pretrained, PretrainedError> {
    let checkpoint = Checkpoint::load(path)?;
    let preprocess = Preprocess {
        resolution: checkpoint.config.resolution,
        crop_pct: checkpoint.crop_pct,
        normalize: checkpoint.normalize.clone(),
    };
    Ok(Pretrained {
        naming,
        config: checkpoint.config,
        params: checkpoint.params,
        preprocess,
        class_names: checkpoint.class_names,
    })
}

/// A foreign file's tensors by their names in our terms (Keras' keys normalised).
struct ForeignTensors<'a> {
    naming: Naming,
    file: &'a LoadedFile,
    by_name: BTreeMap<String, usize>,
    /// Integer tensors the file holds, with their dtype.
    skipped: BTreeMap<String, &'a str>,
}

impl<'a> ForeignTensors<'a> {
    fn index(naming: Naming, file: &'a LoadedFile) -> Self {
        let by_name = file
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (key_in(naming, &t.name), i))
            .collect();
        let skipped = file
            .skipped
            .iter()
            .map(|(n, d)| (key_in(naming, n), d.as_str()))
            .collect();
        ForeignTensors {
            naming,
            file,
            by_name,
            skipped,
        }
    }

    /// The graph's parameters taken from the file, converted to our layouts; or every
    /// missing, mis-shaped and unexpected tensor.
    fn map_onto(&self, graph: &GraphBuilder) -> Result<ParamStore, Vec<String>> {
        let mut problems = Vec::new();
        let mut used = HashSet::new();
        let mut params = ParamStore::new();
        for info in graph.params() {
            match self.tensor_for(&info.name, &info.shape) {
                Ok((source, values)) => {
                    used.insert(source);
                    params.insert(&info.name, info.shape.clone(), values);
                }
                Err((source, problem)) => {
                    used.extend(source);
                    problems.push(problem);
                }
            }
        }
        problems.extend(self.unexpected(graph, &used));
        if problems.is_empty() {
            Ok(params)
        } else {
            Err(problems)
        }
    }

    /// The values of our parameter `name`, from the file; Err names the file's tensor
    /// (when it was there, so it is not reported as unexpected too) and the problem.
    fn tensor_for(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<(String, Vec<f32>), (Option<String>, String)> {
        let naming = self.naming;
        let kind = kind_of(name, shape);
        let source = foreign_name(naming, name);
        let expected = foreign_shape(naming, kind, shape);
        let Some(&index) = self.by_name.get(&source) else {
            let problem = match self.skipped.get(&source) {
                Some(dtype) => {
                    format!("{source}: stored as {dtype}, expected a float tensor {expected:?}")
                }
                None => format!("{source}: missing (expected shape {expected:?})"),
            };
            return Err((None, problem));
        };
        let tensor = &self.file.tensors[index];
        if tensor.shape != expected {
            let problem = format!("{source}: shape {:?}, expected {expected:?}", tensor.shape);
            return Err((Some(source), problem));
        }
        let values = match (naming, kind) {
            (Naming::Timm, Kind::Conv | Kind::Depthwise | Kind::Pointwise | Kind::Dense) => {
                torch_transpose(&tensor.values, &tensor.shape, false)
            }
            _ => tensor.values.clone(),
        };
        Ok((source, values))
    }

    /// Tensors of the file that are no parameter of the network.
    fn unexpected(&self, graph: &GraphBuilder, used: &HashSet<String>) -> Vec<String> {
        let mut problems = Vec::new();
        for name in self.by_name.keys() {
            if !used.contains(name) {
                problems.push(format!(
                    "{name}: unexpected tensor (not part of MobileNet V1)"
                ));
            }
        }
        for (name, dtype) in &self.skipped {
            if !name.ends_with("num_batches_tracked")
                && !used.contains(name)
                && !self.by_name.contains_key(name)
            {
                let known = graph
                    .params()
                    .iter()
                    .any(|p| foreign_name(self.naming, &p.name) == *name);
                if !known {
                    problems.push(format!("{name}: unexpected {dtype} tensor"));
                }
            }
        }
        problems
    }
}

fn key_in(naming: Naming, name: &str) -> String {
    match naming {
        Naming::Keras => keras_key(name),
        _ => name.to_string(),
    }
}

/// The architecture a foreign file describes: width from the stem, input channels and
/// classes from the first and last layers, activation, padding and epsilon from the
/// naming's preset, unless the file was exported by us with its configuration.
fn foreign_config(naming: Naming, file: &LoadedFile) -> MobileNetV1Config {
    if let Some(config) = file
        .metadata
        .get(CONFIG_KEY)
        .and_then(|text| serde_json::from_str::<MobileNetV1Config>(text).ok())
    {
        return config;
    }
    let shape_of = |ours: &str| {
        let source = foreign_name(naming, ours);
        file.tensors
            .iter()
            .find(|t| key_in(naming, &t.name) == source)
            .map(|t| t.shape.clone())
            .unwrap_or_default()
    };
    let stem = shape_of("stem.conv.weight");
    let (stem_out, in_channels) = match (naming, stem.as_slice()) {
        (Naming::Timm, [out, inp, ..]) => (*out, *inp),
        (_, [_, _, inp, out]) => (*out, *inp),
        _ => (STEM_CHANNELS, 3),
    };
    let classes = shape_of("classifier.bias").first().copied().unwrap_or(1000);
    let preset = match naming {
        Naming::Keras => Preset::Keras,
        _ => Preset::Timm,
    };
    MobileNetV1Config {
        alpha: stem_out as f32 / STEM_CHANNELS as f32,
        in_channels,
        classes,
        ..MobileNetV1Config::preset(preset)
    }
}

/// Writes unfolded weights in timm's naming and PyTorch layouts, so that
/// `model.load_state_dict(safetensors.torch.load_file(path))` works on a timm MobileNet V1
/// of the same width, input channels and classes. Our configuration travels in the
/// metadata for our own loader; timm ignores it.
pub fn export_timm(
    config: &MobileNetV1Config,
    params: &ParamStore,
    path: &Path,
) -> Result<(), PretrainedError> {
    if let Some(why) = timm_mismatch(config) {
        return Err(PretrainedError::Export(why));
    }
    let tensors = timm_tensors(params);
    let views: Vec<(&str, &[usize], &[f32])> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
        .collect();
    let mut metadata = BTreeMap::new();
    metadata.insert("format".to_string(), "pt".to_string());
    metadata.insert(
        CONFIG_KEY.to_string(),
        serde_json::to_string(config).unwrap_or_default(),
    );
    save_safetensors(path, &views, &metadata)?;
    Ok(())
}

/// Why timm's MobileNet V1 cannot hold `config`'s network, if it cannot.
fn timm_mismatch(config: &MobileNetV1Config) -> Option<String> {
    if config.stem_stride != 2 {
        return Some("timm's stem has stride 2; this model uses stride 1".into());
    }
    if config.padding != crate::ops::Padding::Symmetric {
        return Some("timm pads symmetrically; this model uses TF SAME padding".into());
    }
    // timm rounds widths to multiples of 8; both must agree for every layer.
    let timm_width = |c: usize| {
        let scaled = c as f32 * config.alpha;
        let rounded = ((scaled + 4.0) as usize / 8 * 8).max(8);
        if (rounded as f32) < 0.9 * scaled {
            rounded + 8
        } else {
            rounded
        }
    };
    std::iter::once(STEM_CHANNELS)
        .chain(BLOCKS.iter().map(|b| b.0))
        .find(|&c| timm_width(c) != config.width(c))
        .map(|c| {
            format!(
                "alpha {} gives {} channels where timm's rounding gives {}",
                config.alpha,
                config.width(c),
                timm_width(c)
            )
        })
}

/// Our parameters under timm's names, in PyTorch's layouts.
fn timm_tensors(params: &ParamStore) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    params
        .iter()
        .map(|(name, shape, values)| {
            let kind = kind_of(name, shape);
            let torch_shape = foreign_shape(Naming::Timm, kind, shape);
            let values = match kind {
                Kind::Vector => values.to_vec(),
                _ => torch_transpose(values, &torch_shape, true),
            };
            (foreign_name(Naming::Timm, name), torch_shape, values)
        })
        .collect()
}
