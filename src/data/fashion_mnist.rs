use std::path::{Path, PathBuf};

use super::error::{check_labels, DataError};
use super::files::{read_maybe_gzip, require_dir};
use super::image_set::ImageSet;

/// Where the Debian package `dataset-fashion-mnist` installs the dataset.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

const MISSING_HELP: &str = "Install Fashion-MNIST with `apt-get install dataset-fashion-mnist` \
    (it fills /usr/share/datasets/fashion-mnist), or point to a directory holding \
    train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and \
    t10k-labels-idx1-ubyte, each plain or gzipped with a .gz suffix";

const CORRUPT_HELP: &str = "The file is damaged: reinstall it with \
    `apt-get install --reinstall dataset-fashion-mnist` or download it again";

/// IDX magic numbers are `00 00 08 N`: unsigned-byte data with N dimensions.
const IDX_UNSIGNED_BYTE: u32 = 0x0000_0800;

/// Loads Fashion-MNIST (or any IDX dataset with the same file names, such as MNIST) from `dir`.
///
/// Reads `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
/// `t10k-labels-idx1-ubyte`, each plain or gzipped (`.gz`). Returns (train, test) with one
/// channel; for Fashion-MNIST that is 60000 and 10000 images of 28x28.
pub fn load_fashion_mnist(dir: &Path) -> Result<(ImageSet, ImageSet), DataError> {
    require_dir(dir, MISSING_HELP)?;
    let train = load_split(dir, "train")?;
    let test = load_split(dir, "t10k")?;
    if (test.height, test.width) != (train.height, train.width) {
        return Err(DataError::invalid(
            &find_idx_file(dir, "t10k-images-idx3-ubyte")?,
            format!(
                "images are {}x{} but the training images are {}x{}",
                test.height, test.width, train.height, train.width
            ),
            CORRUPT_HELP,
        ));
    }
    Ok((train, test))
}

/// Loads one split; `prefix` is `train` or `t10k`.
fn load_split(dir: &Path, prefix: &str) -> Result<ImageSet, DataError> {
    let images_path = find_idx_file(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let labels_path = find_idx_file(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let ([count, height, width], pixels) = read_idx::<3>(&images_path)?;
    let ([label_count], labels) = read_idx::<1>(&labels_path)?;
    if count == 0 || height == 0 || width == 0 {
        return Err(DataError::invalid(
            &images_path,
            format!("holds no pixels ({count} images of {height}x{width})"),
            CORRUPT_HELP,
        ));
    }
    if label_count != count {
        return Err(DataError::invalid(
            &labels_path,
            format!(
                "holds {label_count} labels but {} holds {count} images",
                images_path.display()
            ),
            "Both files must come from the same download; reinstall or download them again",
        ));
    }
    let labels: Vec<u32> = labels.into_iter().map(u32::from).collect();
    check_labels(
        &labels_path,
        &labels,
        FASHION_MNIST_CLASSES.len(),
        CORRUPT_HELP,
    )?;
    Ok(ImageSet {
        height,
        width,
        channels: 1,
        pixels,
        labels,
        class_names: FASHION_MNIST_CLASSES.map(String::from).to_vec(),
    })
}

/// `dir/name`, or `dir/name.gz` if only the compressed file exists (the Debian layout).
fn find_idx_file(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let plain = dir.join(name);
    let gzipped = dir.join(format!("{name}.gz"));
    if plain.is_file() {
        Ok(plain)
    } else if gzipped.is_file() {
        Ok(gzipped)
    } else {
        Err(DataError::Missing {
            path: gzipped,
            help: MISSING_HELP.to_string(),
        })
    }
}

/// Reads an IDX file of unsigned bytes with `N` dimensions: returns the dimensions and the data,
/// after checking the magic number and that the data length is exactly the product of the dimensions.
fn read_idx<const N: usize>(path: &Path) -> Result<([usize; N], Vec<u8>), DataError> {
    let mut bytes = read_maybe_gzip(path, CORRUPT_HELP)?;
    let header_len = 4 + 4 * N;
    if bytes.len() < header_len {
        return Err(DataError::invalid(
            path,
            format!(
                "truncated: {} bytes is shorter than the {header_len}-byte IDX header",
                bytes.len()
            ),
            CORRUPT_HELP,
        ));
    }
    let big_endian_u32 =
        |offset: usize| u32::from_be_bytes([0, 1, 2, 3].map(|i| bytes[offset + i]));
    let expected_magic = IDX_UNSIGNED_BYTE | N as u32;
    let magic = big_endian_u32(0);
    if magic != expected_magic {
        return Err(DataError::invalid(
            path,
            format!(
                "bad magic number 0x{magic:08x}, expected 0x{expected_magic:08x} \
                 (an IDX file of bytes with {N} dimension(s)); is this the right file?"
            ),
            CORRUPT_HELP,
        ));
    }
    let dims: [usize; N] = std::array::from_fn(|i| big_endian_u32(4 + 4 * i) as usize);
    let data_len = bytes.len() - header_len;
    let expected_len = dims
        .iter()
        .try_fold(1usize, |product, &dim| product.checked_mul(dim));
    if expected_len != Some(data_len) {
        let dims_text: Vec<String> = dims.iter().map(usize::to_string).collect();
        return Err(DataError::invalid(
            path,
            format!(
                "{}: the header announces dimensions {} but the file holds {data_len} data bytes",
                if expected_len.is_some_and(|expected| data_len < expected) {
                    "truncated"
                } else {
                    "wrong length"
                },
                dims_text.join("x"),
            ),
            CORRUPT_HELP,
        ));
    }
    bytes.drain(..header_len);
    Ok((dims, bytes))
}
