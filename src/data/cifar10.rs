use std::path::{Path, PathBuf};

use super::error::{check_labels, DataError};
use super::files::{read_file, require_dir};
use super::image_set::ImageSet;

pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

const SIDE: usize = 32;
const PLANE: usize = SIDE * SIDE;
/// One label byte, then the red, green and blue planes.
const RECORD: usize = 1 + 3 * PLANE;

const TRAIN_FILES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
const TEST_FILE: &str = "test_batch.bin";
/// The folder that `cifar-10-binary.tar.gz` extracts to.
const ARCHIVE_FOLDER: &str = "cifar-10-batches-bin";

const MISSING_HELP: &str = "Expected data_batch_1.bin .. data_batch_5.bin and test_batch.bin \
    (the CIFAR-10 binary version) in this directory or in its cifar-10-batches-bin subfolder. \
    Download cifar-10-binary.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html and \
    extract it with `tar xzf cifar-10-binary.tar.gz`";

const CORRUPT_HELP: &str = "The file is damaged or is not the CIFAR-10 binary version: \
    download cifar-10-binary.tar.gz again and re-extract it";

/// Loads the CIFAR-10 binary version from `dir` or `dir/cifar-10-batches-bin`.
/// Returns (train, test): 50000 and 10000 images of 32x32x3 for the real dataset.
pub fn load_cifar10(dir: &Path) -> Result<(ImageSet, ImageSet), DataError> {
    require_dir(dir, MISSING_HELP)?;
    let dir = batches_dir(dir);
    let train_paths: Vec<PathBuf> = TRAIN_FILES.iter().map(|name| dir.join(name)).collect();
    let train = read_batches(&train_paths)?;
    let test = read_batches(&[dir.join(TEST_FILE)])?;
    Ok((train, test))
}

/// Accepts both the extraction directory and the folder the archive creates inside it.
fn batches_dir(dir: &Path) -> PathBuf {
    let nested = dir.join(ARCHIVE_FOLDER);
    if !dir.join(TEST_FILE).is_file() && nested.join(TEST_FILE).is_file() {
        nested
    } else {
        dir.to_path_buf()
    }
}

/// Reads batch files into one set, converting each record from planar RGB to HWC.
fn read_batches(paths: &[PathBuf]) -> Result<ImageSet, DataError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for path in paths {
        if !path.is_file() {
            return Err(DataError::Missing {
                path: path.clone(),
                help: MISSING_HELP.to_string(),
            });
        }
        let bytes = read_file(path)?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(DataError::invalid(
                path,
                format!(
                    "{} bytes is not a whole number of {RECORD}-byte records \
                     (the last record is partial or the file is empty)",
                    bytes.len()
                ),
                CORRUPT_HELP,
            ));
        }
        let file_labels: Vec<u32> = bytes
            .chunks_exact(RECORD)
            .map(|r| u32::from(r[0]))
            .collect();
        check_labels(path, &file_labels, CIFAR10_CLASSES.len(), CORRUPT_HELP)?;
        labels.extend(file_labels);
        pixels.reserve(bytes.len() / RECORD * 3 * PLANE);
        for record in bytes.chunks_exact(RECORD) {
            let (red, rest) = record[1..].split_at(PLANE);
            let (green, blue) = rest.split_at(PLANE);
            for ((&r, &g), &b) in red.iter().zip(green).zip(blue) {
                pixels.extend_from_slice(&[r, g, b]);
            }
        }
    }
    Ok(ImageSet {
        height: SIDE,
        width: SIDE,
        channels: 3,
        pixels,
        labels,
        class_names: CIFAR10_CLASSES.map(String::from).to_vec(),
    })
}
