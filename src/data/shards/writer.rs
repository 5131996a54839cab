//! Writing shards: samples shuffled into `{prefix}-NNNNNN.tar` files, each written under a
//! temporary name and renamed, then listed in `dataset.json`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::manifest::{manifest_json, read_manifest, Manifest, MANIFEST};
use super::reader::IMAGE_EXTENSIONS;
use super::spec::file_name_of;
use crate::data::error::DataError;

pub(super) const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];
pub(super) const PNG_MAGIC: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Writes `samples` (image file, label) as shards `{prefix}-{index:06}.tar` of `shard_size`
/// samples in `out_dir`, after shuffling them with `seed` so that every shard mixes classes
/// (shard-level shuffling relies on it), and records them in `out_dir/dataset.json`. Each file
/// is written under a temporary name and renamed, so a crash never leaves a partial shard under
/// a final name. Existing `{prefix}-*.tar` shards are replaced only when `overwrite`. Returns
/// the written shard paths.
pub fn write_shards(
    samples: &[(PathBuf, u32)],
    class_names: &[String],
    out_dir: &Path,
    prefix: &str,
    shard_size: usize,
    seed: u64,
    overwrite: bool,
) -> Result<Vec<PathBuf>, DataError> {
    check_write_args(samples, class_names, prefix, shard_size)?;
    std::fs::create_dir_all(out_dir).map_err(|source| write_error(out_dir, source))?;
    let existing = existing_shards(out_dir, prefix)?;
    if let (Some(first), false) = (existing.first(), overwrite) {
        return Err(DataError::invalid(
            first,
            format!(
                "already exists, with {} more {prefix}-*.tar shards beside it",
                existing.len() - 1
            ),
            "Pass overwrite to replace them, or choose another prefix or output directory.",
        ));
    }
    // Checked before the long write, so a conflict cannot waste hours of work.
    let mut listed = other_manifest_shards(out_dir, prefix, class_names, overwrite)?;
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let mut written = Vec::new();
    for (index, chunk) in order.chunks(shard_size).enumerate() {
        let name = format!("{prefix}-{index:06}.tar");
        written.push(write_shard(
            samples,
            chunk,
            index * shard_size,
            &out_dir.join(&name),
        )?);
        listed.push((name, chunk.len()));
    }
    for stale in existing.iter().filter(|path| !written.contains(path)) {
        std::fs::remove_file(stale).map_err(|source| write_error(stale, source))?;
    }
    write_manifest(out_dir, class_names, listed)?;
    Ok(written)
}

fn check_write_args(
    samples: &[(PathBuf, u32)],
    class_names: &[String],
    prefix: &str,
    shard_size: usize,
) -> Result<(), DataError> {
    let argument = |problem: &str| Err(DataError::Argument(problem.to_string()));
    if samples.is_empty() {
        return argument("there are no samples to write into shards");
    }
    if class_names.is_empty() {
        return argument("the class name list is empty; pass the names the labels index into");
    }
    if shard_size == 0 {
        return argument("shard_size must be at least 1 (about 1000 to 10000 suits ImageNet)");
    }
    if prefix.is_empty() || prefix.starts_with('.') || prefix.contains(['/', '\\', '{', '}']) {
        return Err(DataError::Argument(format!(
            "the shard prefix {prefix:?} is not a plain file name start; use one such as \
             \"train\""
        )));
    }
    match samples
        .iter()
        .find(|(_, label)| *label as usize >= class_names.len())
    {
        Some((path, label)) => Err(DataError::invalid(
            path,
            format!(
                "has label {label}, out of range for {} class names",
                class_names.len()
            ),
            "Pass the class name list that the labels index into.",
        )),
        None => Ok(()),
    }
}

/// `{prefix}-NNNNNN.tar` files already in `dir`, sorted.
fn existing_shards(dir: &Path, prefix: &str) -> Result<Vec<PathBuf>, DataError> {
    let mut shards = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|source| DataError::io(dir, source))? {
        let path = entry.map_err(|source| DataError::io(dir, source))?.path();
        if is_prefixed_shard(&file_name_of(&path), prefix) {
            shards.push(path);
        }
    }
    shards.sort();
    Ok(shards)
}

fn is_prefixed_shard(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .and_then(|rest| rest.strip_suffix(".tar"))
        .is_some_and(|index| index.len() >= 6 && index.bytes().all(|b| b.is_ascii_digit()))
}

/// The shards of other prefixes that `dataset.json` in `dir` already lists, to keep them
/// listed beside the new ones (train and val shards often share a directory).
fn other_manifest_shards(
    dir: &Path,
    prefix: &str,
    class_names: &[String],
    overwrite: bool,
) -> Result<Vec<(String, usize)>, DataError> {
    let (path, classes, shards) = match read_manifest(dir) {
        Ok(Manifest::Ours {
            path,
            classes,
            shards,
        }) => (path, classes, shards),
        Ok(Manifest::Absent) => return Ok(Vec::new()),
        Ok(Manifest::Foreign) | Err(_) if overwrite => return Ok(Vec::new()),
        Ok(Manifest::Foreign) => {
            return Err(DataError::invalid(
                &dir.join(MANIFEST),
                "exists but was not written by write_shards",
                "Write the shards to another directory, or pass overwrite to replace it.",
            ))
        }
        Err(error) => return Err(error),
    };
    let others: Vec<(String, usize)> = shards
        .into_iter()
        .filter(|(file, _)| !is_prefixed_shard(file, prefix))
        .collect();
    if let (Some((other, _)), false) = (others.first(), classes == class_names) {
        return Err(DataError::invalid(
            &path,
            format!("lists shard {other} with other class names than these"),
            "Write these shards to a separate directory, or remove the other shards and \
             dataset.json.",
        ));
    }
    Ok(others)
}

fn write_manifest(
    dir: &Path,
    class_names: &[String],
    shards: Vec<(String, usize)>,
) -> Result<(), DataError> {
    let manifest = manifest_json(class_names, shards);
    write_atomically(&dir.join(MANIFEST), |writer, temp| {
        writeln!(writer, "{manifest:#}").map_err(|source| write_error(temp, source))
    })
}

/// Writes the samples at `chunk` as shard `path`, keys counting up from `first_key`.
fn write_shard(
    samples: &[(PathBuf, u32)],
    chunk: &[usize],
    first_key: usize,
    path: &Path,
) -> Result<PathBuf, DataError> {
    write_atomically(path, |writer, temp| {
        write_members(writer, temp, samples, chunk, first_key)
    })?;
    Ok(path.to_path_buf())
}

/// Members `{key}.{jpg|png|...}` and `{key}.cls` for each sample of the chunk.
fn write_members(
    writer: &mut BufWriter<File>,
    temp: &Path,
    samples: &[(PathBuf, u32)],
    chunk: &[usize],
    first_key: usize,
) -> Result<(), DataError> {
    let mut builder = tar::Builder::new(writer);
    for (offset, &index) in chunk.iter().enumerate() {
        let (source, label) = &samples[index];
        let bytes = std::fs::read(source).map_err(|error| DataError::io(source, error))?;
        let key = format!("{:08}", first_key + offset);
        let image = format!("{key}.{}", image_extension(source, &bytes)?);
        append_member(&mut builder, &image, &bytes)
            .and_then(|()| {
                append_member(
                    &mut builder,
                    &format!("{key}.cls"),
                    label.to_string().as_bytes(),
                )
            })
            .map_err(|error| write_error(temp, error))?;
    }
    builder.finish().map_err(|error| write_error(temp, error))
}

pub(super) fn append_member<W: Write>(
    builder: &mut tar::Builder<W>,
    name: &str,
    data: &[u8],
) -> io::Result<()> {
    let mut header = tar::Header::new_ustar();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    // A fixed time keeps shards byte-identical for the same inputs and seed.
    header.set_mtime(0);
    builder.append_data(&mut header, name, data)
}

/// "jpg" or "png" by content; otherwise the file's own extension if the reader accepts it
/// (the image is then reported when decoded). Anything else would make a shard the reader
/// rejects, so it is refused here.
fn image_extension(source: &Path, bytes: &[u8]) -> Result<String, DataError> {
    if bytes.starts_with(&JPEG_MAGIC) {
        return Ok("jpg".to_string());
    }
    if bytes.starts_with(&PNG_MAGIC) {
        return Ok("png".to_string());
    }
    let extension = source
        .extension()
        .map(|extension| extension.to_string_lossy().to_ascii_lowercase());
    match extension {
        Some(extension) if IMAGE_EXTENSIONS.contains(&extension.as_str()) => Ok(extension),
        _ => Err(DataError::invalid(
            source,
            "is neither JPEG nor PNG, by its content or by its name",
            "Convert it to JPEG or PNG, or leave it out of the dataset.",
        )),
    }
}

/// Writes `path` through a temporary file in the same directory and renames it into place
/// (`atomic_file`): an interrupted run never leaves a shard or manifest half written.
fn write_atomically(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>, &Path) -> Result<(), DataError>,
) -> Result<(), DataError> {
    crate::atomic_file::write_atomic_with(path, body)
}

fn write_error(path: &Path, source: io::Error) -> DataError {
    DataError::Write {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    use crate::data::shards::testing::{dataset, names, open, sources};
    use crate::data::shards::ShardSet;

    #[test]
    fn existing_shards_are_kept_unless_overwrite() {
        let root = tempfile::tempdir().unwrap();
        let (samples, out) = dataset(root.path(), 20, 5);
        let error = write_shards(&samples, &names(3), &out, "train", 5, 7, false)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("train-000000.tar: already exists"),
            "{error}"
        );
        let written = write_shards(&samples[..8], &names(3), &out, "train", 5, 7, true).unwrap();
        assert_eq!(written.len(), 2);
        let set = open(&out);
        assert_eq!(set.shards, written, "stale shards 2 and 3 are gone");
        assert_eq!(set.counts, [5, 3]);
        let leftovers = std::fs::read_dir(&out).unwrap().count();
        assert_eq!(
            leftovers, 3,
            "two shards and dataset.json, no temporary files"
        );
    }

    #[test]
    fn train_and_val_can_share_a_directory() {
        let root = tempfile::tempdir().unwrap();
        let (samples, out) = dataset(root.path(), 12, 5);
        write_shards(&samples[..4], &names(3), &out, "val", 5, 1, false).unwrap();
        let train = ShardSet::open(&format!("{}/train-{{000000..000002}}.tar", out.display()));
        assert_eq!(train.unwrap().counts, [5, 5, 2]);
        let val = ShardSet::open(&format!("{}/val-000000.tar", out.display())).unwrap();
        assert_eq!((val.counts, val.class_names), (vec![4], names(3)));
        let renamed: Vec<String> = ["x", "y", "z"].map(String::from).to_vec();
        let other = write_shards(&samples, &renamed, &out, "test", 5, 1, false).unwrap_err();
        assert!(other.to_string().contains("other class names"), "{other}");
    }

    #[test]
    fn writing_checks_its_inputs() {
        let root = tempfile::tempdir().unwrap();
        let samples = sources(&root.path().join("src"), 4, 3);
        let out = root.path().join("out");
        let error = write_shards(&samples, &names(2), &out, "t", 2, 0, false).unwrap_err();
        assert!(
            error.to_string().contains("label 2, out of range for 2"),
            "{error}"
        );
        for (prefix, size) in [("", 2), ("a/b", 2), ("t", 0)] {
            let error = write_shards(&samples, &names(3), &out, prefix, size, 0, false);
            assert!(
                matches!(error, Err(DataError::Argument(_))),
                "{prefix:?} {size}"
            );
        }
        let webp = root.path().join("x.webp");
        std::fs::write(&webp, b"RIFF").unwrap();
        let error = write_shards(&[(webp, 0)], &names(1), &out, "t", 2, 0, false).unwrap_err();
        assert!(
            error.to_string().contains("neither JPEG nor PNG"),
            "{error}"
        );
    }

    #[test]
    fn member_extensions_follow_the_content() {
        let root = tempfile::tempdir().unwrap();
        // A broken JPEG keeps its (lower-cased) name; a PNG named .jpg becomes .png.
        let odd = [
            ("a.JPG", b"not really".to_vec()),
            ("b.jpg", PNG_MAGIC.to_vec()),
        ];
        let samples: Vec<(PathBuf, u32)> = odd
            .iter()
            .zip(0..)
            .map(|((name, bytes), label)| {
                let path = root.path().join(name);
                std::fs::write(&path, bytes).unwrap();
                (path, label)
            })
            .collect();
        let out = root.path().join("out");
        let written = write_shards(&samples, &names(2), &out, "t", 10, 0, false).unwrap();
        let mut archive = tar::Archive::new(File::open(&written[0]).unwrap());
        let members: Vec<(String, Vec<u8>)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let name = String::from_utf8(entry.path_bytes().to_vec()).unwrap();
                let mut data = Vec::new();
                entry.read_to_end(&mut data).unwrap();
                (name, data)
            })
            .collect();
        // Written as image then label, sample after sample.
        let mut label_and_image: Vec<(Vec<u8>, &str)> = members
            .chunks(2)
            .map(|pair| (pair[1].1.clone(), pair[0].0.rsplit('.').next().unwrap()))
            .collect();
        label_and_image.sort();
        assert_eq!(
            label_and_image,
            [(b"0".to_vec(), "jpg"), (b"1".to_vec(), "png")]
        );
    }

    #[test]
    fn writing_is_reproducible() {
        let root = tempfile::tempdir().unwrap();
        let samples = sources(&root.path().join("src"), 9, 3);
        let first = write_shards(
            &samples,
            &names(3),
            &root.path().join("a"),
            "s",
            4,
            5,
            false,
        );
        let second = write_shards(
            &samples,
            &names(3),
            &root.path().join("b"),
            "s",
            4,
            5,
            false,
        );
        for (a, b) in first.unwrap().iter().zip(second.unwrap()) {
            assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        }
    }
}
