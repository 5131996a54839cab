//! Dataset loading and batching for training.
//!
//! Small datasets are read whole into an [`ImageSet`] (u8, HWC, images back to back);
//! image files are indexed and decoded per batch:
//! - [`load_fashion_mnist`]: IDX files, plain or gzipped (Debian package `dataset-fashion-mnist`);
//! - [`load_cifar10`]: the CIFAR-10 binary version;
//! - [`index_image_folder`]: one subfolder of PNG/JPEG files per class, indexed, decoded
//!   by the loader's workers;
//! - [`ShardSet`]: tar shards (WebDataset layout), read sequentially.
//!
//! [`BatchLoader`] turns a [`DataSource`] into NHWC `f32` batches (decode, resize, channel
//! conversion, augmentation, normalisation) on worker threads, deterministically for a given
//! seed and epoch.
//!
//! Every problem with the files on disk is reported as a [`DataError`] that names the file.

mod cifar10;
mod decode;
mod error;
mod fashion_mnist;
mod files;
mod folder;
mod image_set;
mod loader;
mod preprocess;
mod shards;
mod source;
mod split;
mod transform;

pub use cifar10::{load_cifar10, CIFAR10_CLASSES};
pub use decode::{decode_image, Pixels};
pub use error::{BadSample, DataError};
pub use fashion_mnist::{load_fashion_mnist, FASHION_MNIST_CLASSES, FASHION_MNIST_DIR};
pub use folder::{index_image_folder, index_images};
pub use image_set::{split_validation, ImageSet};
pub use loader::{
    batch_count, Batch, BatchLoader, LoaderOptions, DEFAULT_MAX_BAD_FRACTION,
    DEFAULT_SHUFFLE_BUFFER,
};
pub use preprocess::{load_image, Preprocess};
pub use shards::{write_shards, EncodedSample, ShardSet, ShardStream};
pub use source::{DataSource, FileIndex};
pub use transform::{Augment, Normalize, RandomResizedCrop};
