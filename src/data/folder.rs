use std::path::{Path, PathBuf};

use super::error::DataError;
use super::files::require_dir;
use super::source::FileIndex;

/// File extensions decoded as images (compared case-insensitively); other files are ignored.
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

const LAYOUT_HELP: &str = "Arrange the dataset as one subfolder per class, e.g. \
    DIR/cat/001.jpg and DIR/dog/002.png; the sorted subfolder names become the class names";

/// Indexes a folder of class subfolders holding PNG/JPEG images: class names are the sorted
/// subfolder names (the label order of torchvision's and timm's `ImageFolder`) and labels
/// index them. Nothing is decoded here; files are decoded by content when a batch needs them.
/// Files and folders whose names start with `.` and files without a .png/.jpg/.jpeg
/// extension are ignored.
pub fn index_image_folder(dir: &Path) -> Result<FileIndex, DataError> {
    require_dir(dir, LAYOUT_HELP)?;
    let class_dirs: Vec<PathBuf> = visible_entries(dir)?
        .into_iter()
        .filter_map(|(path, is_dir)| is_dir.then_some(path))
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
            .filter_map(|(path, is_dir)| (!is_dir && has_image_extension(&path)).then_some(path))
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
    Ok(FileIndex {
        files,
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

/// Images to classify: a folder of class subfolders as [`index_image_folder`] reads it, or
/// the images directly in `dir` (one class, named after the folder).
pub fn index_images(dir: &Path) -> Result<FileIndex, DataError> {
    require_dir(dir, "Point --data at a folder of images")?;
    let entries = visible_entries(dir)?;
    if entries.iter().any(|(_, is_dir)| *is_dir) {
        return index_image_folder(dir);
    }
    let files: Vec<PathBuf> = entries
        .into_iter()
        .filter_map(|(path, _)| has_image_extension(&path).then_some(path))
        .collect();
    if files.is_empty() {
        return Err(DataError::invalid(
            dir,
            "holds no .png/.jpg/.jpeg images",
            "Point --data at a folder of images",
        ));
    }
    Ok(FileIndex {
        labels: vec![0; files.len()],
        files,
        class_names: vec![dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()],
    })
}

/// Entries of `dir` in sorted order with whether each is a directory, without hidden ones
/// (`.git`, macOS `._x.png` resource forks). The type comes from the directory listing itself
/// (one `stat` per symlink only), which matters with a million files.
fn visible_entries(dir: &Path) -> Result<Vec<(PathBuf, bool)>, DataError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DataError::io(dir, source))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| DataError::io(dir, source))?;
        let path = entry.path();
        let hidden = path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        let is_dir = match entry.file_type() {
            Ok(kind) if !kind.is_symlink() => kind.is_dir(),
            _ => path.is_dir(),
        };
        paths.push((path, is_dir));
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
