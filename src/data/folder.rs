use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::DynamicImage;

use super::error::DataError;
use super::files::{decode_image_file, require_dir};
use super::image_set::ImageSet;
use super::transform::convert_channels;

/// File extensions decoded as images (compared case-insensitively); other files are ignored.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

const LAYOUT_HELP: &str = "Arrange the dataset as one subfolder per class, e.g. \
    DIR/cat/001.jpg and DIR/dog/002.png; the sorted subfolder names become the class names";

/// Loads a folder of class subfolders holding PNG/JPEG images (grey, RGB, RGBA, 8 or 16 bit).
///
/// Class names are the sorted subfolder names and labels index them. Each image is converted to
/// RGB (alpha is dropped), scaled so its shorter side is `resolution`, centre-cropped to
/// `resolution x resolution`, then reduced to luminance if `channels` is 1. Files and folders
/// whose names start with `.` and files without a .png/.jpg/.jpeg extension are ignored.
/// Images are decoded on all CPU cores.
pub fn load_image_folder(
    dir: &Path,
    resolution: usize,
    channels: usize,
) -> Result<ImageSet, DataError> {
    let side = u32::try_from(resolution)
        .ok()
        .filter(|&side| side > 0)
        .ok_or_else(|| {
            DataError::Argument(format!(
                "resolution {resolution} must be between 1 and {}",
                u32::MAX
            ))
        })?;
    if channels != 1 && channels != 3 {
        return Err(DataError::Argument(format!(
            "{channels} channels requested; image folders load as 1 (grey) or 3 (RGB)"
        )));
    }
    require_dir(dir, LAYOUT_HELP)?;
    let class_dirs: Vec<PathBuf> = visible_entries(dir)?
        .into_iter()
        .filter(|path| path.is_dir())
        .collect();
    if class_dirs.is_empty() {
        return Err(DataError::invalid(
            dir,
            "has no class subfolders",
            LAYOUT_HELP,
        ));
    }
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (label, class_dir) in (0u32..).zip(&class_dirs) {
        let images: Vec<PathBuf> = visible_entries(class_dir)?
            .into_iter()
            .filter(|path| path.is_file() && has_image_extension(path))
            .collect();
        if images.is_empty() {
            return Err(DataError::invalid(
                class_dir,
                "class folder holds no .png/.jpg/.jpeg images",
                "Add images to it or remove the folder",
            ));
        }
        labels.extend(std::iter::repeat_n(label, images.len()));
        files.extend(images);
    }
    let pixels = decode_all(&files, side, channels)?;
    Ok(ImageSet {
        height: resolution,
        width: resolution,
        channels,
        pixels,
        labels,
        class_names: class_dirs
            .iter()
            .map(|path| {
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
    })
}

/// Entries of `dir` in sorted order, without hidden ones (`.git`, macOS `._x.png` resource forks).
fn visible_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::io(dir, source))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| DataError::io(dir, source))?.path();
        let hidden = path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with('.'));
        if !hidden {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn has_image_extension(path: &Path) -> bool {
    path.extension().is_some_and(|extension| {
        IMAGE_EXTENSIONS
            .iter()
            .any(|known| extension.eq_ignore_ascii_case(known))
    })
}

/// Decodes `files` in order on all cores, each thread filling its own contiguous part of the
/// output; on failure returns the error of the first failing file, so the result never depends
/// on thread timing.
fn decode_all(files: &[PathBuf], side: u32, channels: usize) -> Result<Vec<u8>, DataError> {
    let image_size = (side as usize).pow(2) * channels;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let files_per_thread = files.len().div_ceil(threads).max(1);
    let mut pixels = vec![0u8; files.len() * image_size];
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(files_per_thread)
            .zip(pixels.chunks_mut(files_per_thread * image_size))
            .map(|(chunk, out)| {
                scope.spawn(move || {
                    for (path, out_image) in chunk.iter().zip(out.chunks_exact_mut(image_size)) {
                        out_image.copy_from_slice(&decode_image(path, side, channels)?);
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|worker| {
            worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    })?;
    Ok(pixels)
}

/// Decodes one image into `side x side x channels` bytes (shorter side scaled, centre-cropped).
fn decode_image(path: &Path, side: u32, channels: usize) -> Result<Vec<u8>, DataError> {
    let decoded = decode_image_file(path)?;
    let square = DynamicImage::ImageRgb8(decoded.to_rgb8())
        .resize_to_fill(side, side, FilterType::Triangle)
        .into_rgb8()
        .into_raw();
    Ok(convert_channels(&square, 3, channels))
}
