//! Streaming image data: folders and shards decoded per batch on worker threads, the
//! ImageNet transforms, messy and truncated files, and the evaluation transform against
//! timm's on the same JPEG files. Every folder and shard here is written by the test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{ImageBuffer, Rgb};
use mobilenet_wgpu::data::*;
use mobilenet_wgpu::train::checkpoint::Checkpoint;
use mobilenet_wgpu::train::trainer::{BEST, LAST};
use mobilenet_wgpu::train::{
    train, DataOptions, DatasetKind, OptimizerConfig, OptimizerKind, Schedule, TrainOptions,
};
use mobilenet_wgpu::{MobileNetV1Config, Preset};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// A photo-like RGB image: smooth gradients and a disc, different for every `seed`.
fn photo(width: u32, height: u32, seed: u32) -> ImageBuffer<Rgb<u8>, Vec<u8>> {
    ImageBuffer::from_fn(width, height, |x, y| {
        let (cx, cy) = ((seed * 37 % width) as i64, (seed * 53 % height) as i64);
        let inside = (x as i64 - cx).pow(2) + (y as i64 - cy).pow(2) < (width as i64 / 4).pow(2);
        let base = [
            (x * 255 / width) as u8,
            (y * 255 / height) as u8,
            ((x + y + seed * 17) % 256) as u8,
        ];
        Rgb(if inside {
            [255 - base[0], base[2], 90]
        } else {
            base
        })
    })
}

fn jpeg_bytes(image: &ImageBuffer<Rgb<u8>, Vec<u8>>) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode_image(image)
        .expect("encode JPEG");
    bytes
}

/// `classes` class folders of `per_class` JPEGs of assorted sizes.
fn write_jpeg_folder(dir: &Path, classes: usize, per_class: usize) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for class in 0..classes {
        let class_dir = dir.join(format!("class_{class}"));
        std::fs::create_dir_all(&class_dir).expect("class folder");
        for i in 0..per_class {
            let seed = (class * per_class + i) as u32;
            let (w, h) = [(96, 72), (72, 96), (80, 80), (120, 64)][i % 4];
            let path = class_dir.join(format!("img_{i:03}.JPEG"));
            std::fs::write(&path, jpeg_bytes(&photo(w, h, seed))).expect("write JPEG");
            files.push(path);
        }
    }
    files
}

/// The ImageNet training view: RandomResizedCrop, flip and colour jitter, shuffled.
fn train_view(batch_size: usize, resolution: usize) -> LoaderOptions {
    LoaderOptions {
        augment: Augment {
            hflip: true,
            random_resized_crop: Some(RandomResizedCrop::default()),
            color_jitter: 0.4,
            ..Augment::default()
        },
        shuffle: true,
        drop_last: true,
        seed: 7,
        ..LoaderOptions::new(batch_size, resolution, 3, Normalize::symmetric(3))
    }
}

fn collect(source: &DataSource, options: &LoaderOptions, epoch: usize) -> Vec<Batch> {
    BatchLoader::new(source.clone(), options.clone(), epoch)
        .expect("valid options")
        .map(|batch| batch.expect("batch"))
        .collect()
}

#[test]
fn jpeg_folder_batches_are_identical_for_one_and_three_workers() {
    let dir = tempfile::tempdir().unwrap();
    write_jpeg_folder(dir.path(), 3, 10);
    let source: DataSource = index_image_folder(dir.path()).unwrap().into();
    let one = collect(
        &source,
        &LoaderOptions {
            workers: 1,
            ..train_view(4, 32)
        },
        1,
    );
    let three = collect(
        &source,
        &LoaderOptions {
            workers: 3,
            ..train_view(4, 32)
        },
        1,
    );
    assert_eq!(one.len(), 7);
    assert_eq!(one, three, "batches depend only on (seed, epoch, sample)");
    let next_epoch = collect(
        &source,
        &LoaderOptions {
            workers: 3,
            ..train_view(4, 32)
        },
        2,
    );
    assert_ne!(
        one[0].images, next_epoch[0].images,
        "another epoch, other crops"
    );
}

#[test]
fn random_resized_crop_views_differ_and_stay_in_range() {
    let dir = tempfile::tempdir().unwrap();
    write_jpeg_folder(dir.path(), 1, 1);
    // The same image 16 times: every view is a different crop of it.
    let index = index_image_folder(dir.path()).unwrap();
    let repeated = FileIndex {
        files: vec![index.files[0].clone(); 16],
        labels: vec![0; 16],
        class_names: index.class_names,
    };
    let batches = collect(&repeated.into(), &train_view(16, 24), 0);
    let image_len = 24 * 24 * 3;
    let views: Vec<&[f32]> = batches[0].images.chunks(image_len).collect();
    let distinct = views
        .iter()
        .enumerate()
        .filter(|(i, view)| !views[..*i].contains(view))
        .count();
    assert!(distinct >= 15, "{distinct} distinct views of 16");
    assert!(batches[0].images.iter().all(|v| (-1.0..=1.0).contains(v)));
}

/// A CMYK JPEG of a flat colour, from ink amounts (0 = none): the encoder writes Adobe's
/// inverted form, as Photoshop and PIL do, which decoders must undo.
fn cmyk_jpeg(rgb: [u8; 3], side: u16) -> Vec<u8> {
    let brightest = rgb.iter().copied().max().unwrap_or(0).max(1);
    let ink = |v: u8| 255 - (u16::from(v) * 255 / u16::from(brightest)) as u8;
    let pixel = [ink(rgb[0]), ink(rgb[1]), ink(rgb[2]), 255 - brightest];
    let data = pixel.repeat(usize::from(side) * usize::from(side));
    let mut bytes = Vec::new();
    jpeg_encoder::Encoder::new(&mut bytes, 95)
        .encode(&data, side, side, jpeg_encoder::ColorType::Cmyk)
        .expect("encode CMYK");
    bytes
}

/// A folder like ImageNet's train set at its worst: CMYK and greyscale JPEGs, a PNG named
/// .JPEG, one JPEG cut at half its length and one file that is no image at all.
fn write_messy_folder(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let files = write_jpeg_folder(dir, 2, 8);
    let class = dir.join("class_0");
    std::fs::write(class.join("cmyk.JPEG"), cmyk_jpeg([200, 40, 40], 64)).unwrap();
    image::GrayImage::from_fn(70, 50, |x, y| image::Luma([(x * 3 + y) as u8]))
        .save_with_format(class.join("grey.JPEG"), image::ImageFormat::Jpeg)
        .unwrap();
    photo(64, 64, 99)
        .save_with_format(class.join("png_inside.JPEG"), image::ImageFormat::Png)
        .unwrap();
    let whole = std::fs::read(&files[0]).unwrap();
    let truncated = dir.join("class_1/truncated.JPEG");
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let garbage = dir.join("class_1/not_an_image.jpg");
    std::fs::write(&garbage, b"<html>404 not found</html>").unwrap();
    let good = [
        class.join("cmyk.JPEG"),
        class.join("grey.JPEG"),
        class.join("png_inside.JPEG"),
    ];
    (good.to_vec(), vec![truncated, garbage])
}

#[test]
fn messy_files_decode_by_content_and_bad_ones_are_skipped_counted_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let (odd_but_good, bad) = write_messy_folder(dir.path());
    let source: DataSource = index_image_folder(dir.path()).unwrap().into();
    assert_eq!(source.len(), 21);
    let eval = LoaderOptions {
        max_bad_fraction: 0.2,
        ..LoaderOptions::new(5, 32, 3, Normalize::none(3))
    };
    let batches = collect(&source, &eval, 0);
    let seen: Vec<&String> = batches.iter().flat_map(|b| &b.origins).collect();
    let skipped: Vec<String> = batches
        .iter()
        .flat_map(|b| &b.bad)
        .map(|b| b.origin.clone())
        .collect();
    assert_eq!(seen.len(), 19, "every good file once");
    for path in &odd_but_good {
        assert!(
            seen.contains(&&path.display().to_string()),
            "{} decodes",
            path.display()
        );
    }
    // In the folder's sorted order: class_1/not_an_image.jpg, then class_1/truncated.JPEG.
    let bad_names: Vec<String> = bad.iter().rev().map(|p| p.display().to_string()).collect();
    assert_eq!(skipped, bad_names, "bad files reported by path, in order");
    let reasons: Vec<&str> = batches
        .iter()
        .flat_map(|b| &b.bad)
        .map(|b| b.reason.as_str())
        .collect();
    assert!(reasons[1].contains("truncated"), "{reasons:?}");
    assert!(
        reasons[0].contains("neither a JPEG nor a PNG"),
        "{reasons:?}"
    );

    // The CMYK file is red once decoded, not its inverted or raw ink values.
    let cmyk_slot = batches
        .iter()
        .flat_map(|b| {
            b.origins
                .iter()
                .enumerate()
                .map(move |(slot, o)| (b, slot, o))
        })
        .find(|(_, _, origin)| origin.ends_with("cmyk.JPEG"))
        .expect("cmyk sample");
    let (batch, slot, _) = cmyk_slot;
    let pixel = &batch.images[slot * 32 * 32 * 3..][..3];
    let bytes: Vec<f32> = pixel.iter().map(|v| v * 255.0).collect();
    assert!(
        (bytes[0] - 200.0).abs() < 8.0 && bytes[1] < 60.0 && bytes[2] < 60.0,
        "{bytes:?}"
    );

    // Training keeps its batches full: bad slots take another view of a good image.
    let train = LoaderOptions {
        max_bad_fraction: 0.2,
        ..train_view(7, 32)
    };
    let batches = collect(&source, &train, 0);
    assert_eq!(batches.len(), 3);
    assert!(batches.iter().all(|b| b.count == 7 && b.origins.len() == 7));
    assert_eq!(batches.iter().map(|b| b.bad.len()).sum::<usize>(), 2);
}

#[test]
fn too_many_bad_files_stop_the_loader_with_an_error_naming_one() {
    let dir = tempfile::tempdir().unwrap();
    write_messy_folder(dir.path());
    let source: DataSource = index_image_folder(dir.path()).unwrap().into();
    // The default tolerance, 0.1%, is far below 2 of 21.
    let options = LoaderOptions::new(4, 32, 3, Normalize::none(3));
    let results: Vec<Result<Batch, DataError>> =
        BatchLoader::new(source, options, 0).unwrap().collect();
    let error = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("the loader must fail past the threshold");
    let message = error.to_string();
    assert!(message.contains("could not be decoded"), "{message}");
    assert!(message.contains("--max-bad-fraction"), "{message}");
    assert!(message.contains("not_an_image.jpg"), "{message}");
    assert!(results.last().unwrap().is_err(), "nothing after the error");
}

/// Shards of `folder`'s images, `size` per shard, in `shard_dir`: the index and the shards.
fn shard_folder(folder: &Path, shard_dir: &Path, size: usize) -> (FileIndex, Vec<PathBuf>) {
    let index = index_image_folder(folder).unwrap();
    let written = write_shards(
        &index.samples(),
        &index.class_names,
        shard_dir,
        "train",
        size,
        0,
        false,
    )
    .unwrap();
    (index, written)
}

#[test]
fn shards_hold_the_same_samples_as_their_folder() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder");
    write_jpeg_folder(&folder, 3, 7);
    let shard_dir = dir.path().join("shards");
    let (index, written) = shard_folder(&folder, &shard_dir, 5);
    assert_eq!(written.len(), 5);
    let pattern = format!("{}/train-{{000000..000004}}.tar", shard_dir.display());
    let shards = ShardSet::open(&pattern).unwrap();
    assert_eq!(shards.class_names, index.class_names);
    let eval = LoaderOptions::new(4, 24, 3, Normalize::none(3));
    let views = |source: DataSource| {
        let mut all: Vec<(u32, Vec<u32>)> = collect(&source, &eval, 0)
            .iter()
            .flat_map(|batch| {
                let len = batch.images.len() / batch.labels.len();
                (0..batch.count).map(move |slot| {
                    let pixels = batch.images[slot * len..][..len]
                        .iter()
                        .map(|v| (v * 255.0).round() as u32)
                        .collect();
                    (batch.labels[slot], pixels)
                })
            })
            .collect();
        all.sort();
        all
    };
    let from_folder = views(index.into());
    assert_eq!(from_folder.len(), 21);
    assert_eq!(views(shards.clone().into()), from_folder);
    // Shuffled and split over two ranks, shards still cover every sample once.
    let mut parts = Vec::new();
    for part in 0..2 {
        let options = LoaderOptions {
            shuffle: true,
            part: (part, 2),
            ..eval.clone()
        };
        parts.extend(
            collect(&shards.clone().into(), &options, 3)
                .into_iter()
                .flat_map(|b| b.origins),
        );
    }
    parts.sort();
    parts.dedup();
    assert_eq!(parts.len(), 21);
}

#[test]
fn a_truncated_shard_reaches_the_loop_as_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder");
    write_jpeg_folder(&folder, 2, 6);
    let shard_dir = dir.path().join("shards");
    let (_, written) = shard_folder(&folder, &shard_dir, 6);
    let shards = ShardSet::open(&shard_dir.to_string_lossy()).unwrap();
    let bytes = std::fs::read(&written[1]).unwrap();
    std::fs::write(&written[1], &bytes[..bytes.len() / 3]).unwrap();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let results: Vec<bool> = BatchLoader::new(
            shards.into(),
            LoaderOptions::new(4, 16, 3, Normalize::none(3)),
            0,
        )
        .unwrap()
        .map(|r| r.is_ok())
        .collect();
        sender.send(results).ok();
    });
    let results = receiver
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("a corrupt shard must not stall the loader");
    assert_eq!(results.last(), Some(&false), "{results:?}");
}

/// Training options for a short run on an image folder at 32x32.
fn folder_run(data: &Path, out: &Path, epochs: usize, workers: usize) -> TrainOptions {
    TrainOptions {
        dataset: DatasetKind::Folder,
        data_dir: Some(data.to_path_buf()),
        val_dir: None,
        data: DataOptions {
            workers,
            crop_pct: 0.875,
            ..DataOptions::default()
        },
        model: MobileNetV1Config {
            alpha: 0.25,
            resolution: 32,
            in_channels: 3,
            stem_stride: 2,
            // Replaced by the data set's class count.
            classes: 1,
            ..MobileNetV1Config::preset(Preset::Paper)
        },
        epochs,
        batch_size: 8,
        optimizer: OptimizerConfig::new(OptimizerKind::Rmsprop),
        schedule: Schedule::paper(),
        bn_momentum: 0.1,
        seed: 5,
        limit: None,
        test_limit: None,
        val_fraction: 0.2,
        augment: train_view(8, 32).augment,
        out_dir: out.to_path_buf(),
        resume: false,
        progress: false,
        progress_bar: false,
        log_every: mobilenet_wgpu::train::DEFAULT_LOG_EVERY,
        finetune: None,
        parallel: Default::default(),
    }
}

#[test]
fn resume_on_a_folder_reproduces_the_uninterrupted_run_whatever_the_workers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_jpeg_folder(&data, 3, 10);
    let straight = dir.path().join("straight");
    train(common::gpu(), &folder_run(&data, &straight, 2, 1)).expect("uninterrupted");
    let halves = dir.path().join("halves");
    train(common::gpu(), &folder_run(&data, &halves, 1, 3)).expect("first epoch");
    let mut rest = folder_run(&data, &halves, 2, 2);
    rest.resume = true;
    train(common::gpu(), &rest).expect("resumed");
    let a = Checkpoint::load(&straight.join(LAST)).unwrap();
    let b = Checkpoint::load(&halves.join(LAST)).unwrap();
    common::assert_same_checkpoint(&a, &b);
    assert_eq!(
        a.crop_pct, 0.875,
        "the evaluation view travels with the weights"
    );
}

/// timm's evaluation transform, stored as bytes before normalisation, by image and size.
fn timm_fixture() -> (safetensors::tensor::Metadata, Vec<u8>) {
    let bytes = std::fs::read(Path::new(FIXTURES).join("timm_preprocess.safetensors"))
        .expect("tests/fixtures/timm_preprocess.safetensors");
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    (metadata, bytes)
}

/// (mean, largest) absolute difference in grey levels.
fn differences(ours: &[f32], theirs: &[u8]) -> (f64, f64) {
    let mut total = 0.0;
    let mut largest: f64 = 0.0;
    for (&a, &b) in ours.iter().zip(theirs) {
        let d = (f64::from(a) * 255.0 - f64::from(b)).abs();
        total += d;
        largest = largest.max(d);
    }
    (total / ours.len() as f64, largest)
}

#[test]
fn evaluation_transform_matches_timm_on_the_same_jpeg_files() {
    let (_, bytes) = timm_fixture();
    let fixture = safetensors::SafeTensors::deserialize(&bytes).expect("fixture");
    let metadata = safetensors::SafeTensors::read_metadata(&bytes).unwrap().1;
    let info = metadata.metadata().clone().expect("metadata");
    let images: Vec<String> = serde_json::from_str(&info["images"]).unwrap();
    assert!(images.len() >= 7);
    let mut report = Vec::new();
    for (resolution, crop_pct) in [(224, 0.875f32), (256, 0.95)] {
        let preprocess = Preprocess {
            resolution,
            crop_pct,
            normalize: Normalize::none(3),
        };
        for name in &images {
            let theirs = fixture.tensor(&format!("{name}@{resolution}")).unwrap();
            assert_eq!(theirs.shape(), [resolution, resolution, 3]);
            let path = Path::new(FIXTURES).join("preprocess").join(name);
            let ours = load_image(&path, &preprocess).expect("decode fixture image");
            let (mean, largest) = differences(&ours, theirs.data());
            report.push((format!("{name}@{resolution}"), mean, largest));
        }
    }
    let table: Vec<String> = report
        .iter()
        .map(|(what, mean, largest)| format!("{what}: mean {mean:.3} max {largest:.0}"))
        .collect();
    println!("{}", table.join("\n"));
    // libjpeg-turbo decodes as PIL does; the pure-Rust decoder (--no-default-features)
    // upsamples chroma differently, a few grey levels at colour edges.
    let largest_allowed = if cfg!(feature = "libjpeg-turbo") {
        4.0
    } else {
        5.0
    };
    for (what, mean, largest) in &report {
        assert!(
            *mean < 0.5 && *largest < largest_allowed,
            "{what}\n{}",
            table.join("\n")
        );
    }
}

#[test]
fn preprocess_command_writes_what_predict_feeds_the_network() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("input.safetensors");
    let images = ["landscape_500x375.jpg", "grey_300x300.jpg"];
    let status = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args(["preprocess", "--weights"])
        .arg(Path::new(FIXTURES).join("timm_mnv1_025_c10.safetensors"))
        .args(
            images
                .iter()
                .map(|name| Path::new(FIXTURES).join("preprocess").join(name)),
        )
        .arg("--out")
        .arg(&out)
        .status()
        .expect("run mobilenet preprocess");
    assert!(status.success());
    let written = std::fs::read(&out).unwrap();
    let written = safetensors::SafeTensors::deserialize(&written).unwrap();
    let input = written.tensor("input").unwrap();
    assert_eq!(input.shape(), [2, 224, 224, 3]);
    let values: Vec<f32> = input
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * 0.5 + 0.5)
        .collect();
    let (_, bytes) = timm_fixture();
    let fixture = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (i, name) in images.iter().enumerate() {
        let theirs = fixture.tensor(&format!("{name}@224")).unwrap();
        let (mean, largest) =
            differences(&values[i * 224 * 224 * 3..][..224 * 224 * 3], theirs.data());
        assert!(
            mean < 0.5 && largest <= 4.0,
            "{name}: mean {mean} max {largest}"
        );
    }
}

#[test]
fn a_truncated_jpeg_is_refused_by_predict() {
    let dir = tempfile::tempdir().unwrap();
    let whole = jpeg_bytes(&photo(120, 90, 3));
    let cut = dir.path().join("half.jpg");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args(["predict", "--weights"])
        .arg(Path::new(FIXTURES).join("timm_mnv1_025_c10.safetensors"))
        .arg(&cut)
        .output()
        .expect("run mobilenet predict");
    assert!(
        !output.status.success(),
        "a truncated JPEG must not be classified"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("half.jpg") && stderr.contains("truncated"),
        "{stderr}"
    );
}

#[test]
fn predict_streams_a_folder_to_jsonl_and_names_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("photos");
    let files = write_jpeg_folder(&data, 2, 5);
    std::fs::write(data.join("class_1/broken.jpg"), b"not a jpeg").unwrap();
    let out = dir.path().join("predictions.jsonl");
    let output = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args(["predict", "--weights"])
        .arg(Path::new(FIXTURES).join("timm_mnv1_025_c10.safetensors"))
        .args(["--batch", "4", "--top", "3", "--resolution", "64", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("run mobilenet predict --data");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // 1 bad file of 11 is past the default tolerance: the run says so and writes nothing.
    assert!(!output.status.success());
    assert!(stderr.contains("broken.jpg"), "{stderr}");
    assert!(!out.exists(), "no half-written predictions");

    let output = Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args(["predict", "--weights"])
        .arg(Path::new(FIXTURES).join("timm_mnv1_025_c10.safetensors"))
        .args(["--batch", "4", "--top", "3", "--resolution", "64", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args(["--max-bad-fraction", "0.5"])
        .output()
        .expect("run mobilenet predict --data");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(lines.len(), files.len());
    for (line, file) in lines.iter().zip(&files) {
        assert_eq!(line["path"], file.display().to_string());
        let top = line["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        let p: f64 = top.iter().map(|t| t["probability"].as_f64().unwrap()).sum();
        assert!(p > 0.0 && p <= 1.0 + 1e-5);
    }
}

fn mobilenet(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mobilenet"))
        .args(args)
        .output()
        .expect("run mobilenet")
}

fn succeeded(output: &std::process::Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    text
}

#[test]
fn shard_command_then_train_and_eval_on_shards() {
    let dir = tempfile::tempdir().unwrap();
    let (train_dir, val_dir, shards) = (
        dir.path().join("train"),
        dir.path().join("val"),
        dir.path().join("shards"),
    );
    write_jpeg_folder(&train_dir, 3, 8);
    write_jpeg_folder(&val_dir, 3, 3);
    let path = |p: &Path| p.display().to_string();
    for (folder, prefix) in [(&train_dir, "train"), (&val_dir, "val")] {
        let text = succeeded(&mobilenet(&[
            "shard",
            "--data",
            &path(folder),
            "--out",
            &path(&shards),
            "--shard-size",
            "5",
            "--prefix",
            prefix,
        ]));
        assert!(text.contains("shards"), "{text}");
    }
    let run = dir.path().join("run");
    let train_shards = format!("{}/train-{{000000..000004}}.tar", path(&shards));
    let val_shards = format!("{}/val-{{000000..000001}}.tar", path(&shards));
    let text = succeeded(&mobilenet(&[
        "train",
        "--dataset",
        "shards",
        "--data",
        &train_shards,
        "--val-data",
        &val_shards,
        "--resolution",
        "32",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--workers",
        "2",
        "--crop-scale",
        "0.25,1",
        "--flip",
        "--no-progress",
        "--out",
        &path(&run),
    ]));
    assert!(
        text.contains("epoch 1/1") && text.contains("val loss"),
        "{text}"
    );
    let weights = run.join(LAST);
    let result = eval_json(&weights, "shards", &val_shards);
    assert_eq!(result["count"], 9);
    // The same images as a folder give the same figures (sorted into one class per folder).
    let from_folder = eval_json(&weights, "folder", &path(&val_dir));
    assert_eq!(from_folder["count"], 9);
    let loss = |v: &serde_json::Value| v["loss"].as_f64().unwrap();
    assert!(
        (loss(&result) - loss(&from_folder)).abs() < 1e-4,
        "{result} vs {from_folder}"
    );
}

/// `mobilenet eval --json` of `weights` on `data` read as `dataset`, in batches of 4.
fn eval_json(weights: &Path, dataset: &str, data: &str) -> serde_json::Value {
    let text = succeeded(&mobilenet(&[
        "eval",
        "--weights",
        &weights.display().to_string(),
        "--dataset",
        dataset,
        "--data",
        data,
        "--batch-size",
        "4",
        "--json",
    ]));
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

/// The final "done in ...; FILES in DIR" line names only files that exist.
fn assert_done_names_only_written_files(text: &str, run: &Path) {
    let line = text
        .lines()
        .find(|line| line.starts_with("done in "))
        .unwrap_or_else(|| panic!("no done line: {text}"));
    let files = line
        .split("; ")
        .nth(1)
        .and_then(|rest| rest.rsplit_once(" in "))
        .map(|(files, _)| files)
        .unwrap_or_else(|| panic!("unexpected done line {line:?}"));
    for file in files.split(", ") {
        assert!(
            run.join(file).is_file(),
            "{line:?} names {file}, which is not there"
        );
    }
}

/// `classes` x `per_class` JPEGs in `dir/folder`, as shards of 5 in `dir/shards`.
fn small_shards(dir: &Path, classes: usize, per_class: usize) -> PathBuf {
    let folder = dir.join("folder");
    write_jpeg_folder(&folder, classes, per_class);
    let shards = dir.join("shards");
    shard_folder(&folder, &shards, 5);
    shards
}

/// `mobilenet train FLAGS`, then each `--FLAG PATH` pair; its output, which must be a success.
fn train_cli(flags: &str, paths: &[(&str, &Path)]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mobilenet"));
    command.arg("train").args(flags.split_whitespace());
    for (flag, path) in paths {
        command.arg(flag).arg(path);
    }
    succeeded(&command.output().expect("run mobilenet train"))
}

/// The line printed after epoch `epoch` of `epochs`.
fn epoch_line(text: &str, epoch: usize, epochs: usize) -> &str {
    text.lines()
        .find(|line| line.starts_with(&format!("epoch {epoch}/{epochs} ")))
        .unwrap_or_else(|| panic!("no line for epoch {epoch}: {text}"))
}

#[test]
fn shards_without_val_data_train_without_a_validation_split_and_say_so_once() {
    let dir = tempfile::tempdir().unwrap();
    let shards = small_shards(dir.path(), 3, 8);
    let run = dir.path().join("run");
    let text = train_cli(
        "--dataset shards --resolution 32 --batch-size 8 --epochs 2 --workers 2 --no-progress",
        &[("--data", &shards), ("--out", &run)],
    );
    let note = "training without a validation split";
    assert_eq!(text.matches(note).count(), 1, "{text}");
    assert!(text.contains("best.safetensors is not written"), "{text}");
    for epoch in 1..=2 {
        let line = epoch_line(&text, epoch, 2);
        assert!(!line.contains("val loss"), "{line}");
    }
    assert!(run.join(LAST).is_file());
    assert!(
        !run.join(BEST).exists(),
        "best.safetensors without validation"
    );
    assert_done_names_only_written_files(&text, &run);
}

#[test]
fn limit_takes_the_first_samples_of_each_epoch_of_shards() {
    let dir = tempfile::tempdir().unwrap();
    let shards = small_shards(dir.path(), 3, 8);
    let set = ShardSet::open(&shards.display().to_string()).unwrap();
    let limited = DataSource::from(set).limit(10).expect("--limit on shards");
    assert_eq!(limited.len(), 10);
    for epoch in 0..2 {
        let batches = collect(&limited, &train_view(5, 16), epoch);
        assert_eq!(batches.len(), 2, "epoch {epoch}");
        assert_eq!(batches.iter().map(|b| b.count).sum::<usize>(), 10);
    }
    let run = dir.path().join("run");
    let text = train_cli(
        "--dataset shards --limit 16 --resolution 32 --batch-size 8 --epochs 1 --workers 2 \
         --no-progress",
        &[
            ("--data", &shards),
            ("--val-data", &shards),
            ("--out", &run),
        ],
    );
    assert!(epoch_line(&text, 1, 1).contains("val loss"), "{text}");
    let last = Checkpoint::load(&run.join(LAST)).unwrap();
    assert_eq!(
        (last.epoch, last.step),
        (1, 2),
        "16 samples in batches of 8"
    );
}

#[test]
fn bad_files_are_named_once_per_run_and_counted_every_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let messy = dir.path().join("messy");
    let (_, bad) = write_messy_folder(&messy);
    let run = dir.path().join("run");
    // Training and validation both read the folder, so each bad file is met four times.
    let text = train_cli(
        "--dataset folder --max-bad-fraction 0.2 --resolution 32 --batch-size 7 --epochs 2 \
         --workers 2 --no-progress",
        &[("--data", &messy), ("--val-data", &messy), ("--out", &run)],
    );
    for file in &bad {
        let name = file.display().to_string();
        let named = text
            .lines()
            .filter(|line| line.starts_with("warning: skipped") && line.contains(&name))
            .count();
        assert_eq!(named, 1, "{name} named {named} times: {text}");
    }
    for epoch in 1..=2 {
        let line = epoch_line(&text, epoch, 2);
        assert!(line.contains("2 bad files skipped"), "{line}");
    }
}
/// `bench --mode data` over a folder of `count` small JPEGs: its report.
fn data_bench(dir: &Path, count: usize) -> serde_json::Value {
    let bytes: Vec<Vec<u8>> = (0..4).map(|i| jpeg_bytes(&photo(64, 48, i))).collect();
    for (class, jpeg) in bytes.iter().enumerate() {
        let class_dir = dir.join(format!("c{class}"));
        std::fs::create_dir_all(&class_dir).unwrap();
        for i in 0..count / 4 {
            std::fs::write(class_dir.join(format!("{i:06}.jpg")), jpeg).unwrap();
        }
    }
    let text = succeeded(&mobilenet(&[
        "bench",
        "--mode",
        "data",
        "--data",
        &dir.display().to_string(),
        "--resolution",
        "64",
        "--batch",
        "64",
        "--workers",
        "1",
        "--warmup",
        "1",
        "--iters",
        "0",
        "--json",
    ]));
    serde_json::from_str(text.lines().next().unwrap()).unwrap()
}

#[test]
fn loader_memory_stays_flat_when_the_folder_grows_tenfold() {
    let dir = tempfile::tempdir().unwrap();
    let small = data_bench(&dir.path().join("small"), 2_000);
    let large = data_bench(&dir.path().join("large"), 20_000);
    assert_eq!(small["images"].as_u64(), Some((2_000 / 64 - 1) * 64));
    let (a, b) = (
        small["peak_rss_mb"].as_f64().expect("peak RSS on Linux"),
        large["peak_rss_mb"].as_f64().expect("peak RSS on Linux"),
    );
    println!("peak RSS: {a:.1} MiB at 2,000 images, {b:.1} MiB at 20,000");
    // Held decoded, 18,000 more 64x64 RGB images would add 211 MiB; the index adds ~2 MiB.
    assert!(b < a + 16.0, "peak RSS grew from {a:.1} to {b:.1} MiB");
}
