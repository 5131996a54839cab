//! Where a loader's samples come from: decoded images in memory, image files indexed once and
//! decoded per batch, or tar shards read sequentially.

use std::path::PathBuf;
use std::sync::Arc;

use super::decode::{decode_image, Pixels};
use super::error::{BadSample, DataError};
use super::image_set::ImageSet;
use super::shards::ShardSet;
use super::split::split_indices;

/// Image files and their labels; pixels are read only when a batch needs them, so memory does
/// not grow with the number of files.
#[derive(Clone, Debug, PartialEq)]
pub struct FileIndex {
    pub files: Vec<PathBuf>,
    /// One label per file, each an index into `class_names`.
    pub labels: Vec<u32>,
    pub class_names: Vec<String>,
}

impl FileIndex {
    /// (file, label) pairs, as [`write_shards`](super::write_shards) takes them.
    pub fn samples(&self) -> Vec<(PathBuf, u32)> {
        self.files
            .iter()
            .cloned()
            .zip(self.labels.iter().copied())
            .collect()
    }

    fn subset(&self, indices: &[usize]) -> FileIndex {
        FileIndex {
            files: indices.iter().map(|&i| self.files[i].clone()).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
        }
    }
}

/// A data set as the loader sees it.
#[derive(Clone, Debug)]
pub enum DataSource {
    /// Decoded images held in memory (Fashion-MNIST, CIFAR-10).
    Memory(Arc<ImageSet>),
    /// Image files, decoded per batch (`--dataset folder`).
    Files(Arc<FileIndex>),
    /// Tar shards in the WebDataset layout, read sequentially (`--dataset shards`).
    Shards(Arc<ShardSet>),
}

impl From<ImageSet> for DataSource {
    fn from(set: ImageSet) -> Self {
        DataSource::Memory(Arc::new(set))
    }
}

impl From<FileIndex> for DataSource {
    fn from(index: FileIndex) -> Self {
        DataSource::Files(Arc::new(index))
    }
}

impl From<ShardSet> for DataSource {
    fn from(set: ShardSet) -> Self {
        DataSource::Shards(Arc::new(set))
    }
}

impl DataSource {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            DataSource::Memory(set) => set.len(),
            DataSource::Files(index) => index.files.len(),
            DataSource::Shards(set) => set.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn class_names(&self) -> &[String] {
        match self {
            DataSource::Memory(set) => &set.class_names,
            DataSource::Files(index) => &index.class_names,
            DataSource::Shards(set) => &set.class_names,
        }
    }

    /// Labels of the random-access sources (shards do not know theirs without reading them).
    pub fn labels(&self) -> Option<&[u32]> {
        match self {
            DataSource::Memory(set) => Some(&set.labels),
            DataSource::Files(index) => Some(&index.labels),
            DataSource::Shards(_) => None,
        }
    }

    /// Splits off `round(len * fraction)` samples for validation, chosen by a permutation
    /// seeded with `seed`; both parts keep the original order. Shards cannot be split without
    /// reading them: they take a validation set of their own.
    pub fn split_validation(
        &self,
        fraction: f32,
        seed: u64,
    ) -> Result<(DataSource, DataSource), DataError> {
        let (train, validation) = split_indices(self.len(), fraction, seed);
        Ok(match self {
            DataSource::Memory(set) => (set.subset(&train).into(), set.subset(&validation).into()),
            DataSource::Files(index) => (
                index.subset(&train).into(),
                index.subset(&validation).into(),
            ),
            DataSource::Shards(_) => {
                return Err(DataError::Argument(
                    "shards cannot be split for validation without reading them; pass \
                     --val-data with validation shards or a folder, or --val-fraction 0"
                        .to_string(),
                ))
            }
        })
    }

    /// At most `n` samples: the first `n` of an in-memory set, `n` files spread evenly over
    /// a folder's index (so every class keeps some), or the first `n` of each epoch's stream
    /// of shards.
    pub fn limit(&self, n: usize) -> Result<DataSource, DataError> {
        Ok(match self {
            DataSource::Memory(set) => set.take(n).into(),
            DataSource::Files(index) => {
                let len = index.files.len();
                let keep = n.min(len);
                let picked: Vec<usize> = (0..keep).map(|i| i * len / keep.max(1)).collect();
                index.subset(&picked).into()
            }
            DataSource::Shards(set) => {
                let limit = set.limit.map_or(n, |limit| limit.min(n));
                ShardSet {
                    limit: Some(limit),
                    ..(**set).clone()
                }
                .into()
            }
        })
    }

    /// Checks that the in-memory pixels are consistent with the declared geometry.
    pub(crate) fn validate(&self) -> Result<(), DataError> {
        let DataSource::Memory(set) = self else {
            return Ok(());
        };
        let problem = if ![1, 3].contains(&set.channels) {
            format!(
                "the image set has {} channels; only 1 or 3 are supported",
                set.channels
            )
        } else if !set.is_empty() && (set.height == 0 || set.width == 0) {
            format!("the image set's images are {}x{}", set.height, set.width)
        } else if set.pixels.len() != set.len() * set.image_size() {
            format!(
                "the image set holds {} bytes of pixels for {} images of {} bytes",
                set.pixels.len(),
                set.len(),
                set.image_size()
            )
        } else {
            return Ok(());
        };
        Err(DataError::Argument(problem))
    }

    /// Where sample `index` comes from, for messages and predictions.
    pub(crate) fn origin(&self, index: usize) -> String {
        match self {
            DataSource::Files(files) => files.files[index].display().to_string(),
            _ => format!("#{index}"),
        }
    }

    /// Sample `index` decoded (random-access sources).
    pub(crate) fn fetch(&self, index: usize) -> Result<(Pixels, u32), BadSample> {
        match self {
            DataSource::Memory(set) => Ok((
                Pixels {
                    width: set.width,
                    height: set.height,
                    channels: set.channels,
                    data: set.image(index).to_vec(),
                },
                set.labels[index],
            )),
            DataSource::Files(files) => {
                let path = &files.files[index];
                let bad = |reason: String| BadSample {
                    origin: path.display().to_string(),
                    reason,
                };
                let bytes = std::fs::read(path).map_err(|error| bad(error.to_string()))?;
                let pixels = decode_image(&bytes).map_err(bad)?;
                Ok((pixels, files.labels[index]))
            }
            DataSource::Shards(_) => unreachable!("shards are streamed, never fetched by index"),
        }
    }
}
