//! Tests of the data module: dataset parsers on small files written to a temporary directory,
//! their error messages on corrupt input, and the batch loader's determinism and transforms.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use flate2::write::GzEncoder;
use flate2::Compression;
use image::{ImageBuffer, Luma, Rgb, Rgba};
use mobilenet_wgpu::data::*;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("create a temporary directory")
}

fn idx_file(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    for dim in dims {
        bytes.extend(dim.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    bytes
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("finish gzip")
}

/// A small IDX split: `count` images of `rows x cols` with distinct pixel values.
struct IdxSplit {
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
    labels: Vec<u8>,
}

impl IdxSplit {
    fn new(count: usize, rows: usize, cols: usize, salt: usize) -> Self {
        IdxSplit {
            rows,
            cols,
            pixels: (0..count * rows * cols)
                .map(|i| ((i * 7 + salt) % 256) as u8)
                .collect(),
            labels: (0..count).map(|i| ((i + salt) % 10) as u8).collect(),
        }
    }

    fn images_file(&self) -> Vec<u8> {
        let dims = [self.labels.len(), self.rows, self.cols].map(|d| d as u32);
        idx_file(0x803, &dims, &self.pixels)
    }

    fn labels_file(&self) -> Vec<u8> {
        idx_file(0x801, &[self.labels.len() as u32], &self.labels)
    }
}

/// Writes a Fashion-MNIST directory (gzipped or plain) and returns the splits written.
fn write_fashion_mnist(dir: &Path, gzipped: bool) -> (IdxSplit, IdxSplit) {
    let train = IdxSplit::new(5, 28, 28, 0);
    let test = IdxSplit::new(3, 28, 28, 3);
    for (prefix, split) in [("train", &train), ("t10k", &test)] {
        write_idx(
            dir,
            &format!("{prefix}-images-idx3-ubyte"),
            &split.images_file(),
            gzipped,
        );
        write_idx(
            dir,
            &format!("{prefix}-labels-idx1-ubyte"),
            &split.labels_file(),
            gzipped,
        );
    }
    (train, test)
}

fn write_idx(dir: &Path, name: &str, bytes: &[u8], gzipped: bool) {
    if gzipped {
        std::fs::write(dir.join(format!("{name}.gz")), gzip(bytes)).expect("write idx.gz");
    } else {
        std::fs::write(dir.join(name), bytes).expect("write idx");
    }
}

fn assert_split(set: &ImageSet, split: &IdxSplit) {
    assert_eq!((set.height, set.width, set.channels), (28, 28, 1));
    assert_eq!(set.pixels, split.pixels);
    let labels: Vec<u32> = split.labels.iter().map(|&l| u32::from(l)).collect();
    assert_eq!(set.labels, labels);
    assert_eq!(
        set.class_names,
        FASHION_MNIST_CLASSES.map(String::from).to_vec()
    );
}

/// Asserts the error message names `path` and contains every fragment.
fn assert_error(error: DataError, path: &Path, fragments: &[&str]) {
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()),
        "message does not name {}: {message}",
        path.display()
    );
    for fragment in fragments {
        assert!(
            message.contains(fragment),
            "message lacks {fragment:?}: {message}"
        );
    }
}

/// Loads a Fashion-MNIST directory that is expected to fail.
fn fashion_error(dir: &Path) -> DataError {
    load_fashion_mnist(dir).expect_err("corrupt Fashion-MNIST must not load")
}

// ---------------------------------------------------------------------------------------------
// Fashion-MNIST (IDX)
// ---------------------------------------------------------------------------------------------

#[test]
fn fashion_mnist_plain_files_round_trip_exactly() {
    let dir = temp_dir();
    let (train_split, test_split) = write_fashion_mnist(dir.path(), false);
    let (train, test) = load_fashion_mnist(dir.path()).expect("load plain IDX");
    assert_split(&train, &train_split);
    assert_split(&test, &test_split);
}

#[test]
fn fashion_mnist_gzipped_files_round_trip_exactly() {
    let dir = temp_dir();
    let (train_split, test_split) = write_fashion_mnist(dir.path(), true);
    let (train, test) = load_fashion_mnist(dir.path()).expect("load gzipped IDX");
    assert_split(&train, &train_split);
    assert_split(&test, &test_split);
}

#[test]
fn fashion_mnist_bad_magic_names_the_file() {
    let dir = temp_dir();
    write_fashion_mnist(dir.path(), false);
    let path = dir.path().join("train-images-idx3-ubyte");
    let mut bytes = std::fs::read(&path).expect("read back");
    bytes[3] = 0x01; // now claims to be a labels file
    std::fs::write(&path, bytes).expect("rewrite");
    assert_error(
        fashion_error(dir.path()),
        &path,
        &["magic", "0x00000801", "0x00000803"],
    );
}

#[test]
fn fashion_mnist_truncated_image_file_names_the_file() {
    let dir = temp_dir();
    write_fashion_mnist(dir.path(), false);
    let path = dir.path().join("t10k-images-idx3-ubyte");
    let bytes = std::fs::read(&path).expect("read back");
    std::fs::write(&path, &bytes[..bytes.len() - 100]).expect("truncate");
    assert_error(fashion_error(dir.path()), &path, &["truncated", "3x28x28"]);
}

#[test]
fn fashion_mnist_truncated_header_names_the_file() {
    let dir = temp_dir();
    write_fashion_mnist(dir.path(), false);
    let path = dir.path().join("train-labels-idx1-ubyte");
    std::fs::write(&path, [0, 0, 8]).expect("truncate");
    assert_error(fashion_error(dir.path()), &path, &["truncated", "header"]);
}

#[test]
fn fashion_mnist_truncated_gzip_names_the_file() {
    let dir = temp_dir();
    write_fashion_mnist(dir.path(), true);
    let path = dir.path().join("train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&path).expect("read back");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    assert_error(fashion_error(dir.path()), &path, &["gzip", "truncated"]);
}

#[test]
fn fashion_mnist_gz_name_without_gzip_data_names_the_file() {
    let dir = temp_dir();
    write_fashion_mnist(dir.path(), true);
    let path = dir.path().join("t10k-labels-idx1-ubyte.gz");
    std::fs::write(&path, b"not gzip at all").expect("overwrite");
    assert_error(fashion_error(dir.path()), &path, &["gzip magic"]);
}

#[test]
fn fashion_mnist_count_mismatch_names_both_files() {
    let dir = temp_dir();
    write_fashion_mnist(dir.path(), false);
    let path = dir.path().join("train-labels-idx1-ubyte");
    std::fs::write(&path, IdxSplit::new(4, 28, 28, 0).labels_file()).expect("rewrite");
    let images_path = dir.path().join("train-images-idx3-ubyte");
    assert_error(
        fashion_error(dir.path()),
        &path,
        &["4 labels", "5 images", &images_path.display().to_string()],
    );
}

#[test]
fn fashion_mnist_label_out_of_range_names_the_file() {
    let dir = temp_dir();
    write_fashion_mnist(dir.path(), false);
    let path = dir.path().join("t10k-labels-idx1-ubyte");
    std::fs::write(&path, idx_file(0x801, &[3], &[1, 10, 2])).expect("rewrite");
    assert_error(
        fashion_error(dir.path()),
        &path,
        &["label 10", "sample 1", "out of range"],
    );
}

#[test]
fn fashion_mnist_missing_directory_gives_the_apt_hint() {
    let dir = temp_dir();
    let missing = dir.path().join("nowhere");
    assert_error(
        fashion_error(&missing),
        &missing,
        &[
            "apt-get install dataset-fashion-mnist",
            "train-images-idx3-ubyte",
        ],
    );
}

#[test]
fn fashion_mnist_missing_file_gives_the_apt_hint_and_layout() {
    let dir = temp_dir();
    write_fashion_mnist(dir.path(), true);
    std::fs::remove_file(dir.path().join("t10k-labels-idx1-ubyte.gz")).expect("remove");
    assert_error(
        fashion_error(dir.path()),
        &dir.path().join("t10k-labels-idx1-ubyte.gz"),
        &["not found", "apt-get install dataset-fashion-mnist"],
    );
}

/// The Debian package must be installed where the binary looks for it by default.
/// Fails (rather than skipping) with the install hint when it is absent.
#[test]
fn fashion_mnist_debian_package_loads() {
    let (train, test) =
        load_fashion_mnist(Path::new(FASHION_MNIST_DIR)).unwrap_or_else(|error| panic!("{error}"));
    for (set, expected_len) in [(&train, 60_000), (&test, 10_000)] {
        assert_eq!(set.len(), expected_len);
        assert_eq!((set.height, set.width, set.channels), (28, 28, 1));
        assert_eq!(set.pixels.len(), expected_len * 28 * 28);
        assert!(set.labels.iter().all(|&label| label < 10));
        // Every class is present and the images are not blank.
        for class in 0..10 {
            assert!(set.labels.contains(&class), "class {class} missing");
        }
        assert!(set.pixels.iter().any(|&p| p > 200));
    }
}

// ---------------------------------------------------------------------------------------------
// CIFAR-10
// ---------------------------------------------------------------------------------------------

/// A CIFAR-10 record whose red/green/blue planes encode (plane, y, x) so positions can be checked.
fn cifar_record(label: u8, salt: u8) -> Vec<u8> {
    let mut record = vec![label];
    for plane in 0..3u8 {
        for y in 0..32u8 {
            for x in 0..32u8 {
                record.push(cifar_value(plane, y, x, salt));
            }
        }
    }
    record
}

fn cifar_value(plane: u8, y: u8, x: u8, salt: u8) -> u8 {
    plane.wrapping_mul(80).wrapping_add(y.wrapping_mul(3)) ^ x ^ salt
}

/// Writes the six batch files with two records each; record r of file f has salt 10*f + r.
fn write_cifar(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create cifar dir");
    let names = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ];
    for (file, name) in names.iter().enumerate() {
        let mut bytes = Vec::new();
        for record in 0..2u8 {
            let salt = 10 * file as u8 + record;
            bytes.extend(cifar_record(salt % 10, salt));
        }
        std::fs::write(dir.join(name), bytes).expect("write batch");
    }
}

fn assert_cifar(train: &ImageSet, test: &ImageSet) {
    assert_eq!((train.len(), test.len()), (10, 2));
    for set in [train, test] {
        assert_eq!((set.height, set.width, set.channels), (32, 32, 3));
        assert_eq!(set.class_names, CIFAR10_CLASSES.map(String::from).to_vec());
    }
    // Training image 3 is record 1 of data_batch_2: salt 11.
    assert_eq!(train.labels[3], 1);
    for (y, x) in [(0u8, 0u8), (5, 17), (31, 31)] {
        let offset = (usize::from(y) * 32 + usize::from(x)) * 3;
        let pixel = &train.image(3)[offset..offset + 3];
        let expected = [0, 1, 2].map(|plane| cifar_value(plane, y, x, 11));
        assert_eq!(pixel, expected, "pixel at y={y} x={x}");
    }
    assert_eq!(test.labels, vec![0, 1]); // salts 50, 51
    assert_eq!(
        &test.image(1)[..3],
        &[0, 1, 2].map(|p| cifar_value(p, 0, 0, 51))
    );
}

#[test]
fn cifar10_planes_become_hwc() {
    let dir = temp_dir();
    write_cifar(dir.path());
    let (train, test) = load_cifar10(dir.path()).expect("load cifar");
    assert_cifar(&train, &test);
}

#[test]
fn cifar10_accepts_the_extracted_archive_folder() {
    let dir = temp_dir();
    write_cifar(&dir.path().join("cifar-10-batches-bin"));
    let (train, test) = load_cifar10(dir.path()).expect("load cifar from parent dir");
    assert_cifar(&train, &test);
}

#[test]
fn cifar10_partial_record_names_the_file() {
    let dir = temp_dir();
    write_cifar(dir.path());
    let path = dir.path().join("data_batch_4.bin");
    let bytes = std::fs::read(&path).expect("read back");
    std::fs::write(&path, &bytes[..bytes.len() - 1]).expect("truncate");
    let error = load_cifar10(dir.path()).expect_err("partial record");
    assert_error(
        error,
        &path,
        &["6145 bytes", "3073-byte records", "partial"],
    );
}

#[test]
fn cifar10_label_out_of_range_names_the_file() {
    let dir = temp_dir();
    write_cifar(dir.path());
    let path = dir.path().join("test_batch.bin");
    std::fs::write(&path, cifar_record(200, 0)).expect("rewrite");
    let error = load_cifar10(dir.path()).expect_err("bad label");
    assert_error(error, &path, &["label 200", "out of range"]);
}

#[test]
fn cifar10_missing_files_say_what_and_where_from() {
    let dir = temp_dir();
    let error = load_cifar10(dir.path()).expect_err("empty dir");
    assert_error(
        error,
        &dir.path().join("data_batch_1.bin"),
        &["not found", "test_batch.bin", "cifar-10-binary.tar.gz"],
    );
    let missing = dir.path().join("absent");
    let error = load_cifar10(&missing).expect_err("missing dir");
    assert_error(error, &missing, &["not found", "cifar-10-binary.tar.gz"]);
}

// ---------------------------------------------------------------------------------------------
// Image folders
// ---------------------------------------------------------------------------------------------

/// Grey 4x4 image whose pixel (x, y) is 10 * (4y + x).
fn grey_image() -> ImageBuffer<Luma<u8>, Vec<u8>> {
    ImageBuffer::from_fn(4, 4, |x, y| Luma([(10 * (4 * y + x)) as u8]))
}

fn rgba_image() -> ImageBuffer<Rgba<u8>, Vec<u8>> {
    ImageBuffer::from_fn(4, 4, |x, y| Rgba([x as u8 * 60, y as u8 * 60, 200, 17]))
}

/// 16-bit grey whose values are multiples of 257, so they map exactly to 8 bits.
fn grey16_image() -> ImageBuffer<Luma<u16>, Vec<u16>> {
    ImageBuffer::from_fn(4, 4, |x, y| Luma([257 * (x + 5 * y) as u16]))
}

fn write_folder(dir: &Path) {
    for class in ["bag", "coat", "dress"] {
        std::fs::create_dir_all(dir.join(class)).expect("class dir");
    }
    grey_image()
        .save(dir.join("bag/grey.png"))
        .expect("save grey png");
    rgba_image()
        .save(dir.join("coat/rgba.png"))
        .expect("save rgba png");
    grey16_image()
        .save(dir.join("dress/a16.png"))
        .expect("save 16-bit png");
    ImageBuffer::from_pixel(8, 8, Rgb([200u8, 100, 50]))
        .save(dir.join("dress/b.jpg"))
        .expect("save jpeg");
    std::fs::write(dir.join("dress/notes.txt"), "not an image").expect("write txt");
    std::fs::write(dir.join("README.txt"), "top-level files are not classes").expect("write");
}

/// The folder's images through the evaluation view (crop_pct 1: shorter side to
/// `resolution`, centre crop), back as bytes, with the index.
fn folder_images(dir: &Path, resolution: usize, channels: usize) -> (FileIndex, Vec<Vec<u8>>) {
    let index = index_image_folder(dir).expect("index folder");
    let opts = options(1, resolution, channels);
    let images = BatchLoader::new(index.clone().into(), opts, 0)
        .expect("valid options")
        .map(|batch| {
            let batch = batch.expect("batch");
            assert!(batch.bad.is_empty(), "{:?}", batch.bad);
            batch
                .images
                .iter()
                .map(|&v| (v * 255.0).round() as u8)
                .collect()
        })
        .collect();
    (index, images)
}

#[test]
fn image_folder_loads_png_jpeg_and_ignores_other_files() {
    let dir = temp_dir();
    write_folder(dir.path());
    let (index, images) = folder_images(dir.path(), 4, 3);
    assert_eq!(index.class_names, ["bag", "coat", "dress"]);
    assert_eq!(index.labels, [0, 1, 2, 2]);
    assert_eq!(images.len(), 4);
    // Grey replicates into RGB.
    assert_eq!(&images[0][..6], &[0, 0, 0, 10, 10, 10]);
    // RGBA drops alpha: pixel (x=1, y=2).
    let offset = (2 * 4 + 1) * 3;
    assert_eq!(&images[1][offset..offset + 3], &[60, 120, 200]);
    // 16-bit scales to 8 bits: pixel (x=3, y=1) = 257 * 8.
    let offset = (4 + 3) * 3;
    assert_eq!(&images[2][offset..offset + 3], &[8, 8, 8]);
    // JPEG is lossy and downscaled 8 -> 4 here: a flat colour stays close.
    for (channel, &value) in images[3].iter().enumerate() {
        let expected = [200, 100, 50][channel % 3];
        assert!(
            value.abs_diff(expected) <= 4,
            "jpeg channel {channel}: {value}"
        );
    }
}

#[test]
fn image_folder_single_channel_is_luminance() {
    let dir = temp_dir();
    write_folder(dir.path());
    let (_, images) = folder_images(dir.path(), 4, 1);
    let grey: Vec<u8> = grey_image().into_raw();
    assert_eq!(images[0], grey);
    // ITU-R 601 luma of (60, 120, 200), as PIL: 0.299*60 + 0.587*120 + 0.114*200 = 111.18.
    assert_eq!(images[1][2 * 4 + 1], 111);
}

#[test]
fn image_folder_scales_the_shorter_side_and_crops_the_centre() {
    let dir = temp_dir();
    std::fs::create_dir(dir.path().join("only")).expect("class dir");
    // 8 wide, 4 high: at resolution 4 no scaling is needed and columns 2..6 remain.
    ImageBuffer::from_fn(8, 4, |x, y| Luma([(x * 20 + y) as u8]))
        .save(dir.path().join("only/wide.png"))
        .expect("save");
    let (_, images) = folder_images(dir.path(), 4, 1);
    let expected: Vec<u8> = (0..4)
        .flat_map(|y| (2..6).map(move |x| (x * 20 + y) as u8))
        .collect();
    assert_eq!(images[0], expected);
    // Halving: 8x4 -> 4x2 is then cropped to 2x2 from the centre.
    let (_, images) = folder_images(dir.path(), 2, 1);
    assert_eq!(images[0].len(), 4);
    assert!(
        images[0][0] < images[0][1],
        "left column stays left of right column"
    );
}

#[test]
fn image_folder_undecodable_png_is_skipped_and_named() {
    let dir = temp_dir();
    write_folder(dir.path());
    let path = dir.path().join("coat/broken.png");
    std::fs::write(&path, b"\x89PNG\r\n\x1a\nthis is not really a png").expect("write");
    let index = index_image_folder(dir.path()).expect("indexing does not decode");
    assert_eq!(index.files.len(), 5);
    let opts = LoaderOptions {
        max_bad_fraction: 0.5,
        ..options(8, 4, 3)
    };
    let batches: Vec<Batch> = BatchLoader::new(index.into(), opts, 0)
        .expect("valid options")
        .map(|batch| batch.expect("one bad file of five is tolerated at 0.5"))
        .collect();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].count, 4, "the bad file is left out");
    assert_eq!(batches[0].bad.len(), 1);
    assert_eq!(batches[0].bad[0].origin, path.display().to_string());
    assert!(!batches[0].origins.contains(&path.display().to_string()));
}

#[test]
fn image_folder_empty_class_folder_names_it() {
    let dir = temp_dir();
    write_folder(dir.path());
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("create");
    std::fs::write(empty.join("labels.csv"), "1,2").expect("write");
    let error = index_image_folder(dir.path()).expect_err("empty class");
    assert_error(error, &empty, &["no .png/.jpg/.jpeg images"]);
}

#[test]
fn image_folder_without_class_folders_is_an_error() {
    let dir = temp_dir();
    std::fs::write(dir.path().join("cat.png"), b"x").expect("write");
    let error = index_image_folder(dir.path()).expect_err("no classes");
    assert_error(
        error,
        dir.path(),
        &["no class subfolders", "one subfolder per class"],
    );
    // Predicting on such a folder takes its images as they are.
    let flat = index_images(dir.path()).expect("flat folder");
    assert_eq!(flat.files, [dir.path().join("cat.png")]);
}

#[test]
fn image_folder_missing_directory_is_an_error() {
    let dir = temp_dir();
    let missing = dir.path().join("photos");
    let error = index_image_folder(&missing).expect_err("missing");
    assert_error(error, &missing, &["not found", "one subfolder per class"]);
}

// ---------------------------------------------------------------------------------------------
// ImageSet and validation split
// ---------------------------------------------------------------------------------------------

/// `len` images of `side x side` with `channels` channels where every byte of image i is i; label i % 10.
fn numbered_set(len: usize, side: usize, channels: usize) -> ImageSet {
    let image_size = side * side * channels;
    ImageSet {
        height: side,
        width: side,
        channels,
        pixels: (0..len)
            .flat_map(|i| std::iter::repeat_n(i as u8, image_size))
            .collect(),
        labels: (0..len).map(|i| (i % 10) as u32).collect(),
        class_names: (0..10).map(|i| format!("class {i}")).collect(),
    }
}

#[test]
fn image_set_accessors() {
    let set = numbered_set(5, 2, 1);
    assert_eq!((set.len(), set.is_empty()), (5, false));
    assert_eq!(set.image(3), &[3, 3, 3, 3]);
    let subset = set.subset(&[4, 1, 1]);
    assert_eq!(subset.pixels, [4, 4, 4, 4, 1, 1, 1, 1, 1, 1, 1, 1]);
    assert_eq!(subset.labels, [4, 1, 1]);
    assert_eq!(subset.class_names, set.class_names);
    assert_eq!(set.take(2), set.subset(&[0, 1]));
    assert_eq!(set.take(99), set);
    assert!(set.take(0).is_empty());
}

#[test]
fn split_validation_is_seeded_disjoint_and_complete() {
    let set = numbered_set(50, 2, 1);
    let (train, validation) = split_validation(&set, 0.1, 7);
    assert_eq!((train.len(), validation.len()), (45, 5));
    assert_eq!(
        split_validation(&set, 0.1, 7),
        (train.clone(), validation.clone())
    );
    let mut ids: Vec<u8> = train
        .pixels
        .chunks(4)
        .chain(validation.pixels.chunks(4))
        .map(|image| image[0])
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..50).collect::<Vec<u8>>());
    let (_, other_validation) = split_validation(&set, 0.1, 8);
    assert_ne!(
        other_validation, validation,
        "another seed picks other images"
    );
    // round(len * fraction): 50 * 0.33 = 16.5 -> 17.
    assert_eq!(split_validation(&set, 0.33, 1).1.len(), 17);
    assert_eq!(split_validation(&set, 0.0, 1).0, set);
}

// ---------------------------------------------------------------------------------------------
// Batch loader
// ---------------------------------------------------------------------------------------------

fn options(batch_size: usize, resolution: usize, channels: usize) -> LoaderOptions {
    LoaderOptions {
        seed: 42,
        ..LoaderOptions::new(batch_size, resolution, channels, Normalize::none(channels))
    }
}

fn loader(set: &Arc<ImageSet>, options: &LoaderOptions, epoch: usize) -> BatchLoader {
    BatchLoader::new(DataSource::Memory(Arc::clone(set)), options.clone(), epoch)
        .expect("valid options")
}

fn epoch(set: &Arc<ImageSet>, options: &LoaderOptions, epoch: usize) -> Vec<Batch> {
    loader(set, options, epoch)
        .map(|batch| batch.expect("batch"))
        .collect()
}

/// Recovers the image numbers of the real samples of a batch from a `numbered_set`.
fn sample_ids(batch: &Batch) -> Vec<usize> {
    let image_size = batch.images.len() / batch.labels.len();
    batch.images[..batch.count * image_size]
        .chunks(image_size)
        .map(|image| (image[0] * 255.0).round() as usize)
        .collect()
}

#[test]
fn loader_is_deterministic_for_seed_and_epoch() {
    let set = Arc::new(numbered_set(40, 6, 3));
    let mut opts = options(8, 6, 3);
    opts.shuffle = true;
    opts.augment = Augment {
        pad_crop: 2,
        hflip: true,
        ..Augment::default()
    };
    let first = epoch(&set, &opts, 3);
    assert_eq!(first, epoch(&set, &opts, 3), "same seed and epoch");
    assert_ne!(first, epoch(&set, &opts, 4), "another epoch");
    let order = |batches: &[Batch]| batches.iter().flat_map(sample_ids).collect::<Vec<_>>();
    assert_ne!(
        order(&first),
        order(&epoch(&set, &opts, 4)),
        "another epoch shuffles differently"
    );
    opts.seed = 43;
    assert_ne!(
        order(&first),
        order(&epoch(&set, &opts, 3)),
        "another seed shuffles differently"
    );
}

#[test]
fn loader_batches_do_not_depend_on_the_number_of_workers() {
    let set = Arc::new(numbered_set(50, 5, 3));
    let mut opts = options(4, 7, 1);
    opts.shuffle = true;
    opts.augment = Augment {
        pad_crop: 1,
        hflip: true,
        ..Augment::default()
    };
    let with_workers = |workers| {
        let opts = LoaderOptions {
            workers,
            ..opts.clone()
        };
        epoch(&set, &opts, 2)
    };
    let single = with_workers(1);
    assert_eq!(single.len(), 13);
    for workers in [2, 3, 4, 20] {
        assert_eq!(with_workers(workers), single, "{workers} workers");
    }
    assert_eq!(epoch(&set, &opts, 2), single, "default worker count");
}

#[test]
fn loader_yields_every_sample_once_and_pads_the_last_batch() {
    let set = Arc::new(numbered_set(23, 2, 1));
    let mut opts = options(5, 2, 1);
    opts.shuffle = true;
    assert_eq!(loader(&set, &opts, 0).total(), 5);
    assert_eq!(batch_count(23, &opts), 5);
    let batches = epoch(&set, &opts, 0);
    assert_eq!(batches.len(), 5);
    let mut seen = Vec::new();
    for (index, batch) in batches.iter().enumerate() {
        assert_eq!(batch.index, index);
        assert_eq!((batch.images.len(), batch.labels.len()), (5 * 4, 5));
        let ids = sample_ids(batch);
        for (slot, &id) in ids.iter().enumerate() {
            assert_eq!(
                batch.labels[slot],
                (id % 10) as u32,
                "label follows its image"
            );
        }
        seen.extend(ids);
    }
    let last = &batches[4];
    assert_eq!(last.count, 3);
    assert!(
        last.images[3 * 4..].iter().all(|&v| v == 0.0),
        "padding is zeros"
    );
    assert_eq!(&last.labels[3..], &[0, 0]);
    seen.sort_unstable();
    assert_eq!(seen, (0..23).collect::<Vec<_>>());
}

#[test]
fn loader_drop_last_skips_the_partial_batch() {
    let set = Arc::new(numbered_set(23, 2, 1));
    let mut opts = options(5, 2, 1);
    opts.drop_last = true;
    assert_eq!(batch_count(23, &opts), 4);
    let batches = epoch(&set, &opts, 0);
    assert_eq!(batches.len(), 4);
    assert!(batches.iter().all(|batch| batch.count == 5));
    let ids: Vec<usize> = batches.iter().flat_map(sample_ids).collect();
    assert_eq!(ids, (0..20).collect::<Vec<_>>(), "unshuffled order");
}

#[test]
fn loader_without_augmentation_gives_plain_normalised_pixels() {
    let set = ImageSet {
        height: 2,
        width: 2,
        channels: 3,
        pixels: (0..24).map(|i| (i * 11) as u8).collect(),
        labels: vec![3, 7],
        class_names: vec![],
    };
    let batches = epoch(&Arc::new(set.clone()), &options(2, 2, 3), 0);
    assert_eq!(batches.len(), 1);
    let expected: Vec<f32> = set.pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    assert_eq!(batches[0].images, expected);
    assert_eq!(batches[0].labels, [3, 7]);
}

/// One 1x1 image whose channels are `pixel`.
fn single_pixel_set(pixel: &[u8]) -> ImageSet {
    ImageSet {
        height: 1,
        width: 1,
        channels: pixel.len(),
        pixels: pixel.to_vec(),
        labels: vec![0],
        class_names: vec![],
    }
}

#[test]
fn loader_normalisation_values_are_exact() {
    let set = Arc::new(single_pixel_set(&[0, 255, 51]));
    let mut opts = options(1, 1, 3);
    opts.normalize = Normalize::symmetric(3);
    assert_eq!(
        epoch(&set, &opts, 0)[0].images,
        [-1.0, 1.0, 51.0 / 127.5 - 1.0]
    );
    opts.normalize = Normalize {
        mean: vec![0.25, 0.5, 0.75],
        std: vec![0.5, 2.0, 0.25],
    };
    let expected = [(0.0 - 0.25) / 0.5, (1.0 - 0.5) / 2.0, (0.2 - 0.75) / 0.25];
    assert_eq!(epoch(&set, &opts, 0)[0].images, expected);
}

/// 3x3 grey images, all the same asymmetric pattern.
fn pattern_set(len: usize) -> ImageSet {
    let pattern: [u8; 9] = [10, 20, 30, 40, 50, 60, 70, 80, 90];
    ImageSet {
        height: 3,
        width: 3,
        channels: 1,
        pixels: pattern.repeat(len),
        labels: vec![0; len],
        class_names: vec![],
    }
}

/// Options for augmentation tests: symmetric normalisation, so black padding (-1) differs from
/// the zero-initialised output.
fn augment_options(batch_size: usize, augment: Augment) -> LoaderOptions {
    LoaderOptions {
        augment,
        normalize: Normalize::symmetric(1),
        ..options(batch_size, 3, 1)
    }
}

/// Undoes symmetric normalisation.
fn bytes_of(image: &[f32]) -> Vec<u8> {
    image
        .iter()
        .map(|&v| ((v + 1.0) * 127.5).round() as u8)
        .collect()
}

#[test]
fn loader_hflip_mirrors_rows() {
    let set = Arc::new(pattern_set(32));
    // One image per batch: each batch draws its own decisions.
    let opts = augment_options(
        1,
        Augment {
            hflip: true,
            ..Augment::default()
        },
    );
    let original = vec![10, 20, 30, 40, 50, 60, 70, 80, 90];
    let mirrored = vec![30, 20, 10, 60, 50, 40, 90, 80, 70];
    let images: Vec<Vec<u8>> = epoch(&set, &opts, 0)
        .iter()
        .map(|batch| bytes_of(&batch.images))
        .collect();
    assert!(images
        .iter()
        .all(|image| *image == original || *image == mirrored));
    assert!(
        images.contains(&original) && images.contains(&mirrored),
        "both outcomes occur"
    );
}

#[test]
fn loader_pad_crop_shifts_within_the_padding_and_fills_black() {
    let set = Arc::new(pattern_set(64));
    let opts = augment_options(
        64,
        Augment {
            pad_crop: 1,
            ..Augment::default()
        },
    );
    let batch = &epoch(&set, &opts, 0)[0];
    let pattern = &set.pixels[..9];
    let shifted = |dy: isize, dx: isize| -> Vec<u8> {
        (0..3isize)
            .flat_map(|y| (0..3isize).map(move |x| (y + dy, x + dx)))
            .map(|(y, x)| {
                let inside = (0..3).contains(&y) && (0..3).contains(&x);
                if inside {
                    pattern[(y * 3 + x) as usize]
                } else {
                    0
                }
            })
            .collect()
    };
    let candidates: Vec<Vec<u8>> = (-1..=1)
        .flat_map(|dy| (-1..=1).map(move |dx| (dy, dx)))
        .map(|(dy, dx)| shifted(dy, dx))
        .collect();
    let mut used = std::collections::HashSet::new();
    for image in batch.images.chunks(9).map(bytes_of) {
        let position = candidates.iter().position(|c| *c == image);
        used.insert(position.expect("every output is a shift by at most 1 pixel"));
    }
    assert!(used.len() >= 5, "crops vary: {used:?}");
}

#[test]
fn loader_converts_channels() {
    let grey = Arc::new(single_pixel_set(&[255]));
    assert_eq!(
        epoch(&grey, &options(1, 1, 3), 0)[0].images,
        [1.0, 1.0, 1.0]
    );
    let yellow = Arc::new(single_pixel_set(&[255, 255, 0]));
    // ITU-R 601 luma as PIL computes it, rounded: (0.299 + 0.587) * 255 = 225.93 -> 226.
    assert_eq!(
        epoch(&yellow, &options(1, 1, 1), 0)[0].images,
        [226.0 / 255.0]
    );
}

#[test]
fn loader_resizes_to_the_requested_resolution() {
    let set = Arc::new(ImageSet {
        height: 2,
        width: 2,
        channels: 1,
        pixels: vec![100; 4],
        labels: vec![0],
        class_names: vec![],
    });
    let batch = &epoch(&set, &options(1, 5, 3), 0)[0];
    assert_eq!(batch.images.len(), 5 * 5 * 3);
    assert!(
        batch.images.iter().all(|&v| v == 100.0 / 255.0),
        "flat stays flat"
    );
}

#[test]
fn loader_dropped_mid_epoch_stops_its_threads() {
    let set = Arc::new(numbered_set(200, 16, 3));
    let (done_sender, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut indices = Vec::new();
        for workers in [1, 3] {
            let opts = LoaderOptions {
                workers,
                ..options(1, 32, 3)
            };
            let mut loader = loader(&set, &opts, 0);
            indices.extend(
                loader
                    .by_ref()
                    .take(2)
                    .map(|batch| batch.expect("batch").index),
            );
            std::thread::sleep(Duration::from_millis(50)); // let the workers fill their channels
            drop(loader);
        }
        done_sender.send(indices).ok();
    });
    let indices = done
        .recv_timeout(Duration::from_secs(30))
        .expect("dropping the loader must not hang");
    assert_eq!(indices, [0, 1, 0, 1]);
}

#[test]
fn loader_rejects_options_that_cannot_work() {
    let set = Arc::new(numbered_set(4, 2, 3));
    let reject = |opts: LoaderOptions| {
        let result = BatchLoader::new(DataSource::Memory(Arc::clone(&set)), opts, 0);
        assert!(matches!(result, Err(DataError::Argument(_))));
    };
    reject(options(0, 2, 3));
    reject(options(2, 0, 3));
    reject(options(2, 2, 2));
    let mut opts = options(2, 2, 3);
    opts.normalize = Normalize::none(1);
    reject(opts.clone());
    opts.normalize = Normalize {
        mean: vec![0.0; 3],
        std: vec![1.0, 0.0, 1.0],
    };
    reject(opts.clone());
    opts.normalize = Normalize::none(3);
    reject(LoaderOptions {
        part: (2, 2),
        ..opts.clone()
    });
    reject(LoaderOptions {
        crop_pct: 0.0,
        ..opts.clone()
    });
    reject(LoaderOptions {
        augment: Augment {
            random_resized_crop: Some(RandomResizedCrop {
                scale: (0.5, 0.2),
                ratio: (0.75, 1.33),
            }),
            ..Augment::default()
        },
        ..opts
    });
}
