//! A shard set: the shard files in order, their sample counts and the class names, taken from
//! `dataset.json` when it is ours or else from one scan of the tar headers.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::manifest::{counts_from_manifest, read_manifest, Manifest};
use super::reader::{crashed, walk_shard, Walk, OPEN_SHARDS};
use super::spec::{common_dir, resolve_spec};
use crate::data::error::DataError;

/// An ordered list of shard files plus what is known about them.
#[derive(Debug, Clone)]
pub struct ShardSet {
    pub shards: Vec<PathBuf>,
    /// Samples per shard, same order as `shards`.
    pub counts: Vec<usize>,
    /// Class names in label order.
    pub class_names: Vec<String>,
    /// Read only the first N samples of each epoch's stream (`--limit`, smoke runs); the
    /// shards are not cut, since where a sample lies is only known by reading.
    pub limit: Option<usize>,
}

impl ShardSet {
    /// Opens `spec`: a directory (all `*.tar` in it, sorted by name), a single .tar file, or a
    /// pattern with brace groups such as `DIR/train-{000000..000146}.tar` or `{train,val}`.
    /// Counts and class names come from `dataset.json` beside the shards when it was written
    /// by [`write_shards`](super::write_shards); otherwise every shard's tar headers are scanned once and the
    /// classes are named "0".."K-1" after the largest label found.
    pub fn open(spec: &str) -> Result<ShardSet, DataError> {
        let shards = resolve_spec(spec)?;
        let manifest = match common_dir(&shards) {
            Some(dir) => read_manifest(&dir)?,
            None => Manifest::Absent,
        };
        let set = match manifest {
            Manifest::Ours {
                path,
                classes,
                shards: listed,
            } => ShardSet {
                counts: counts_from_manifest(&path, &listed, &shards)?,
                class_names: classes,
                shards,
                limit: None,
            },
            Manifest::Absent | Manifest::Foreign => scan_set(shards)?,
        };
        if set.is_empty() {
            let others = match set.shards.len() - 1 {
                0 => String::new(),
                count => format!(", and neither do the other {count} shards"),
            };
            return Err(DataError::invalid(
                &set.shards[0],
                format!("holds no samples{others}"),
                "Check that the spec points at the right shards, or write them again.",
            ));
        }
        Ok(set)
    }

    /// Samples an epoch reads: all the shards hold, or `limit` if fewer.
    pub fn len(&self) -> usize {
        let total = self.counts.iter().sum();
        self.limit.map_or(total, |limit| limit.min(total))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Header scan, for shards without dataset.json.

struct Scan {
    samples: usize,
    max_label: Option<u32>,
}

fn scan_set(shards: Vec<PathBuf>) -> Result<ShardSet, DataError> {
    let scans = scan_all(&shards)?;
    let classes = scans
        .iter()
        .filter_map(|scan| scan.max_label)
        .max()
        .map_or(0, |label| label as usize + 1);
    Ok(ShardSet {
        counts: scans.iter().map(|scan| scan.samples).collect(),
        class_names: (0..classes).map(|class| class.to_string()).collect(),
        shards,
        limit: None,
    })
}

/// Scans on a few threads, because on a network file system each header is a round trip.
fn scan_all(shards: &[PathBuf]) -> Result<Vec<Scan>, DataError> {
    let chunk = shards.len().div_ceil(OPEN_SHARDS).max(1);
    std::thread::scope(|scope| {
        let mut workers = Vec::new();
        for part in shards.chunks(chunk) {
            let worker = std::thread::Builder::new()
                .name("shard-scan".to_string())
                .spawn_scoped(scope, move || {
                    part.iter().map(|shard| scan_shard(shard)).collect()
                })
                .map_err(DataError::Thread)?;
            workers.push((worker, &part[0]));
        }
        let mut scans = Vec::with_capacity(shards.len());
        for (worker, first) in workers {
            let part: Result<Vec<Scan>, DataError> =
                worker.join().map_err(|payload| crashed(first, payload))?;
            scans.extend(part?);
        }
        Ok(scans)
    })
}

fn scan_shard(shard: &Path) -> Result<Scan, DataError> {
    let mut max_label = None;
    let samples = walk_shard(shard, Walk::Headers, None, &mut |sample| {
        max_label = max_label.max(Some(sample.label));
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(Scan { samples, max_label })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shards::manifest::MANIFEST;
    use crate::data::shards::testing::{dataset, open, tar_of};

    #[test]
    fn manifest_and_header_scan_agree() {
        let root = tempfile::tempdir().unwrap();
        let (_, out) = dataset(root.path(), 17, 4);
        let listed = open(&out);
        std::fs::remove_file(out.join(MANIFEST)).unwrap();
        let scanned = open(&out);
        assert_eq!(scanned.shards, listed.shards);
        assert_eq!(scanned.counts, listed.counts);
        assert_eq!(scanned.class_names, ["0", "1", "2"]);
    }

    #[test]
    fn list_patterns_pick_shards_and_empty_shards_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let (_, out) = dataset(root.path(), 15, 5);
        let spec = format!("{}/train-00000{{0,2}}.tar", out.display());
        assert_eq!(ShardSet::open(&spec).unwrap().counts, [5, 5]);
        let empty = root.path().join("empty.tar");
        std::fs::write(&empty, tar_of(&[])).unwrap();
        let error = ShardSet::open(empty.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("holds no samples"), "{error}");
        assert!(matches!(ShardSet::open(" "), Err(DataError::Argument(_))));
    }
}
