//! `dataset.json`, written beside the shards by `write_shards`: the class names and every
//! shard's sample count, so that opening a set need not scan the tar headers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::spec::file_name_of;
use crate::data::error::DataError;

pub(super) const MANIFEST: &str = "dataset.json";
const FORMAT: &str = "webdataset";
const MANIFEST_HELP: &str = "Rewrite the shards with write_shards, \
    or delete dataset.json so that the shards are scanned instead.";

pub(super) enum Manifest {
    Absent,
    /// A `dataset.json` that `write_shards` did not write: left alone.
    Foreign,
    Ours {
        path: PathBuf,
        classes: Vec<String>,
        /// (shard file name, samples), in file order.
        shards: Vec<(String, usize)>,
    },
}

pub(super) fn read_manifest(dir: &Path) -> Result<Manifest, DataError> {
    let path = dir.join(MANIFEST);
    if !path.is_file() {
        return Ok(Manifest::Absent);
    }
    let text = std::fs::read_to_string(&path).map_err(|source| DataError::io(&path, source))?;
    let value: Value = serde_json::from_str(&text).map_err(|error| {
        DataError::invalid(&path, format!("is not valid JSON ({error})"), MANIFEST_HELP)
    })?;
    if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Ok(Manifest::Foreign);
    }
    let (classes, shards) = parse_manifest(&path, &value)?;
    Ok(Manifest::Ours {
        path,
        classes,
        shards,
    })
}

type ManifestContents = (Vec<String>, Vec<(String, usize)>);

fn parse_manifest(path: &Path, value: &Value) -> Result<ManifestContents, DataError> {
    let bad = |problem: &str| DataError::invalid(path, problem, MANIFEST_HELP);
    let classes = value
        .get("classes")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("has no \"classes\" list"))?
        .iter()
        .map(|name| name.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("has a class name that is not a string"))?;
    if classes.is_empty() {
        return Err(bad("lists no classes"));
    }
    let shards = value
        .get("shards")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("has no \"shards\" list"))?
        .iter()
        .map(parse_manifest_shard)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("has a shard entry without a \"file\" name and whole \"samples\""))?;
    Ok((classes, shards))
}

fn parse_manifest_shard(entry: &Value) -> Option<(String, usize)> {
    let file = entry.get("file")?.as_str()?.to_string();
    let samples = usize::try_from(entry.get("samples")?.as_u64()?).ok()?;
    Some((file, samples))
}

pub(super) fn counts_from_manifest(
    manifest: &Path,
    listed: &[(String, usize)],
    shards: &[PathBuf],
) -> Result<Vec<usize>, DataError> {
    let known: HashMap<&str, usize> = listed
        .iter()
        .map(|(file, samples)| (file.as_str(), *samples))
        .collect();
    shards
        .iter()
        .map(|shard| {
            let name = file_name_of(shard);
            known.get(name.as_str()).copied().ok_or_else(|| {
                DataError::invalid(
                    manifest,
                    format!("does not list shard {name}, so it is out of date"),
                    MANIFEST_HELP,
                )
            })
        })
        .collect()
}

/// The `dataset.json` contents listing `shards` (file name, samples) in name order.
pub(super) fn manifest_json(class_names: &[String], mut shards: Vec<(String, usize)>) -> Value {
    shards.sort();
    let listed: Vec<Value> = shards
        .iter()
        .map(|(file, samples)| json!({ "file": file, "samples": samples }))
        .collect();
    json!({ "format": FORMAT, "classes": class_names, "shards": listed })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shards::testing::{dataset, names, open};
    use crate::data::shards::{write_shards, ShardSet};

    #[test]
    fn a_shard_missing_from_the_manifest_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let (_, out) = dataset(root.path(), 10, 5);
        std::fs::copy(out.join("train-000000.tar"), out.join("train-000009.tar")).unwrap();
        let error = ShardSet::open(out.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("dataset.json"), "{error}");
        assert!(
            error.contains("does not list shard train-000009.tar"),
            "{error}"
        );
    }

    #[test]
    fn a_foreign_manifest_is_left_alone_and_a_broken_one_reported() {
        let root = tempfile::tempdir().unwrap();
        let (samples, out) = dataset(root.path(), 9, 5);
        let manifest = out.join(MANIFEST);
        std::fs::write(&manifest, r#"{"name": "someone else's"}"#).unwrap();
        let set = open(&out);
        assert_eq!(
            (set.counts, set.class_names),
            (vec![5, 4], vec!["0".into(), "1".into(), "2".into()])
        );
        let error = write_shards(&samples, &names(3), &out, "val", 5, 0, false).unwrap_err();
        assert!(
            error.to_string().contains("not written by write_shards"),
            "{error}"
        );
        std::fs::write(&manifest, "{ cut off").unwrap();
        let error = ShardSet::open(out.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("dataset.json: is not valid JSON"), "{error}");
        let bad = r#"{"format": "webdataset", "classes": ["a"], "shards": [{"file": 3}]}"#;
        std::fs::write(&manifest, bad).unwrap();
        let error = ShardSet::open(out.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("shard entry without"), "{error}");
    }
}
