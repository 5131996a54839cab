//! The data side of a run: which data set, how it is split, and the loader options of the
//! training and evaluation views.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;

use crate::data::{
    index_image_folder, load_cifar10, load_fashion_mnist, Augment, DataSource, LoaderOptions,
    Normalize, ShardSet, DEFAULT_MAX_BAD_FRACTION, DEFAULT_SHUFFLE_BUFFER, FASHION_MNIST_DIR,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    FashionMnist,
    Cifar10,
    /// One subfolder of images per class, decoded per batch.
    Folder,
    /// Tar shards in the WebDataset layout (`KEY.jpg` + `KEY.cls`).
    Shards,
}

impl DatasetKind {
    /// Whether samples are files decoded per batch (ImageNet-style data) rather than small
    /// images held in memory at their own size.
    pub fn is_image_files(self) -> bool {
        matches!(self, DatasetKind::Folder | DatasetKind::Shards)
    }
}

impl FromStr for DatasetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fashion-mnist" | "fashion_mnist" => Ok(DatasetKind::FashionMnist),
            "cifar10" | "cifar-10" => Ok(DatasetKind::Cifar10),
            "folder" => Ok(DatasetKind::Folder),
            "shards" | "webdataset" => Ok(DatasetKind::Shards),
            other => Err(format!(
                "unknown dataset {other:?}; expected fashion-mnist, cifar10, folder or shards"
            )),
        }
    }
}

impl fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatasetKind::FashionMnist => "fashion-mnist",
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Folder => "folder",
            DatasetKind::Shards => "shards",
        })
    }
}

/// How samples are read and viewed; none of it changes which samples a run sees, except
/// `crop_pct` and the augmentation in `TrainOptions`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DataOptions {
    /// Decoding threads (0: cores - 1). Batches are identical for any number.
    #[serde(skip)]
    pub workers: usize,
    /// Evaluation view: shorter side to resolution / crop_pct, centre crop.
    pub crop_pct: f32,
    pub max_bad_fraction: f64,
    /// Shard shuffle buffer, in samples.
    pub shuffle_buffer: usize,
}

impl Default for DataOptions {
    fn default() -> Self {
        DataOptions {
            workers: 0,
            crop_pct: 1.0,
            max_bad_fraction: DEFAULT_MAX_BAD_FRACTION,
            shuffle_buffer: DEFAULT_SHUFFLE_BUFFER,
        }
    }
}

/// Opens a data set of `kind`. Fashion-MNIST and CIFAR-10 come with a test split; folders and
/// shards are one split each (point `--val-data` at another for validation; folders can
/// also hold out `--val-fraction`, shards cannot).
pub fn load_dataset(
    kind: DatasetKind,
    location: Option<&Path>,
) -> anyhow::Result<(DataSource, Option<DataSource>)> {
    Ok(match kind {
        DatasetKind::FashionMnist => {
            let dir = location.unwrap_or(Path::new(FASHION_MNIST_DIR));
            let (train, test) = load_fashion_mnist(dir)?;
            (train.into(), Some(test.into()))
        }
        DatasetKind::Cifar10 => {
            let dir = location
                .context("--data DIR is required for cifar10 (the folder of the binary version)")?;
            let (train, test) = load_cifar10(dir)?;
            (train.into(), Some(test.into()))
        }
        DatasetKind::Folder => {
            let dir = location
                .context("--data DIR is required for folder (one subfolder of images per class)")?;
            (index_image_folder(dir)?.into(), None)
        }
        DatasetKind::Shards => {
            let spec = location.context(
                "--data is required for shards: a directory of .tar files or a pattern such as \
                 'DIR/train-{000000..000146}.tar'",
            )?;
            (ShardSet::open(&spec.to_string_lossy())?.into(), None)
        }
    })
}

/// Shards when `location` names .tar files (a pattern, a file, or a folder holding them),
/// an image folder otherwise.
pub fn default_source_kind(location: &Path) -> DatasetKind {
    let named_tar = location.to_string_lossy().contains(".tar");
    let holds_tar = location.is_dir()
        && std::fs::read_dir(location).is_ok_and(|mut entries| {
            entries.any(|entry| {
                entry.is_ok_and(|entry| entry.path().extension().is_some_and(|e| e == "tar"))
            })
        });
    if named_tar || holds_tar {
        DatasetKind::Shards
    } else {
        DatasetKind::Folder
    }
}

/// A run's data: training samples, optional validation and test samples, class names.
pub struct TrainData {
    pub train: DataSource,
    pub val: Option<DataSource>,
    pub test: Option<DataSource>,
    pub class_names: Vec<String>,
}

/// The splits a run trains and evaluates on.
pub struct Splits<'a> {
    pub kind: DatasetKind,
    pub data: Option<&'a Path>,
    /// A separate validation set of the same kind (ImageNet's val/), instead of a held-out
    /// fraction of the training set.
    pub val_data: Option<&'a PathBuf>,
    pub val_fraction: f32,
    pub limit: Option<usize>,
    pub test_limit: Option<usize>,
    pub seed: u64,
}

impl TrainData {
    pub fn load(splits: &Splits) -> anyhow::Result<TrainData> {
        let (train, test) = load_dataset(splits.kind, splits.data)?;
        let train = match splits.limit {
            Some(n) => train.limit(n)?,
            None => train,
        };
        let test = match (test, splits.test_limit) {
            (Some(test), Some(n)) => Some(test.limit(n)?),
            (test, _) => test,
        };
        let class_names = train.class_names().to_vec();
        let (train, val) = match splits.val_data {
            Some(dir) => {
                let (val, _) = load_dataset(splits.kind, Some(dir))?;
                anyhow::ensure!(
                    val.class_names() == class_names.as_slice(),
                    "the validation data {} has classes ({}) other than the training data's ({}); \
                     both need the same class folders",
                    dir.display(),
                    val.class_names().join(", "),
                    class_names.join(", ")
                );
                (train, Some(val))
            }
            // Shards cannot be split without reading them twice: they train without a
            // validation split (the run says so; see `Run::announce`).
            None if splits.val_fraction > 0.0 && !matches!(train, DataSource::Shards(_)) => {
                let (train, val) = train.split_validation(splits.val_fraction, splits.seed)?;
                (train, (!val.is_empty()).then_some(val))
            }
            None => (train, None),
        };
        Ok(TrainData {
            train,
            val,
            test,
            class_names,
        })
    }
}

/// Input normalisation used for training: x/127.5 - 1 (mean = std = 0.5), as timm's and
/// Keras' MobileNets expect.
pub fn default_normalize(channels: usize) -> Normalize {
    Normalize::symmetric(channels)
}

/// Loader options of the training view: shuffled, augmented, full batches.
pub fn train_loader_options(
    batch_size: usize,
    (resolution, channels): (usize, usize),
    augment: &Augment,
    normalize: &Normalize,
    data: &DataOptions,
    seed: u64,
) -> LoaderOptions {
    LoaderOptions {
        augment: augment.clone(),
        shuffle: true,
        seed,
        drop_last: true,
        ..eval_loader_options(batch_size, (resolution, channels), normalize, data)
    }
}

/// Loader options of the evaluation view: every sample once, in order.
pub fn eval_loader_options(
    batch_size: usize,
    (resolution, channels): (usize, usize),
    normalize: &Normalize,
    data: &DataOptions,
) -> LoaderOptions {
    LoaderOptions {
        crop_pct: data.crop_pct,
        workers: data.workers,
        max_bad_fraction: data.max_bad_fraction,
        shuffle_buffer: data.shuffle_buffer,
        ..LoaderOptions::new(batch_size, resolution, channels, normalize.clone())
    }
}
