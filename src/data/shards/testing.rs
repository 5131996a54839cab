//! Helpers shared by the shard modules' tests: fake images, small written data sets and
//! hand-made tar shards.

use std::path::{Path, PathBuf};

use super::writer::{append_member, JPEG_MAGIC, PNG_MAGIC};
use super::{write_shards, EncodedSample, ShardSet, ShardStream};

/// A fake JPEG: the magic bytes are all `write_shards` looks at.
pub(super) fn jpeg(index: usize) -> Vec<u8> {
    let mut bytes = JPEG_MAGIC.to_vec();
    bytes.extend(format!("sample {index} ").repeat(1 + index % 7).bytes());
    bytes
}

/// `count` source images with labels `index % classes`; every tenth is a PNG.
pub(super) fn sources(dir: &Path, count: usize, classes: u32) -> Vec<(PathBuf, u32)> {
    std::fs::create_dir_all(dir).unwrap();
    (0..count)
        .map(|index| {
            let (name, bytes) = if index % 10 == 3 {
                let mut bytes = PNG_MAGIC.to_vec();
                bytes.extend(format!("png {index}").bytes());
                (format!("img{index}.png"), bytes)
            } else {
                (format!("img{index}.jpg"), jpeg(index))
            };
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            (path, index as u32 % classes)
        })
        .collect()
}

pub(super) fn names(classes: u32) -> Vec<String> {
    (0..classes).map(|class| format!("class{class}")).collect()
}

/// Writes `count` samples of 3 classes in shards of `shard_size` under `root/shards`.
pub(super) fn dataset(
    root: &Path,
    count: usize,
    shard_size: usize,
) -> (Vec<(PathBuf, u32)>, PathBuf) {
    let samples = sources(&root.join("src"), count, 3);
    let out = root.join("shards");
    write_shards(&samples, &names(3), &out, "train", shard_size, 7, false).unwrap();
    (samples, out)
}

pub(super) fn open(dir: &Path) -> ShardSet {
    ShardSet::open(dir.to_str().unwrap()).unwrap()
}

pub(super) fn read_all(stream: ShardStream) -> Vec<EncodedSample> {
    stream.map(|item| item.unwrap()).collect()
}

pub(super) fn origins(set: &ShardSet, seed: u64, epoch: usize, buffer: usize) -> Vec<String> {
    let stream = ShardStream::new(set, seed, epoch, true, buffer, (0, 1)).unwrap();
    read_all(stream).into_iter().map(|s| s.origin).collect()
}

pub(super) fn last_error(stream: ShardStream) -> String {
    match stream.last() {
        Some(Err(error)) => error.to_string(),
        other => panic!("expected the stream to end in an error, got {other:?}"),
    }
}

/// (name, data) of a tar member.
pub(super) type Member<'a> = (&'a str, &'a [u8]);

/// A tar holding `members` in order, with its end marker.
pub(super) fn tar_of(members: &[Member]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in members {
        append_member(&mut builder, name, data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// A one-shard set over hand-made tar bytes, as `open` would list it.
pub(super) fn hand_set(dir: &Path, bytes: &[u8], expected: usize, classes: usize) -> ShardSet {
    let shard = dir.join("hand-000000.tar");
    std::fs::write(&shard, bytes).unwrap();
    ShardSet {
        shards: vec![shard],
        counts: vec![expected],
        class_names: (0..classes).map(|c| c.to_string()).collect(),
        limit: None,
    }
}
