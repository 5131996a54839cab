//! Finding the shard files: a directory, one file, or a pattern with `{a..b}` ranges and
//! `{x,y}` lists, expanded like a shell would.

use std::path::{Path, PathBuf};

use crate::data::error::DataError;

/// Guards against a typo such as `{0..999999999}` allocating gigabytes of names.
const MAX_PATTERN_NAMES: usize = 1_000_000;

const SPEC_HELP: &str = "Give a directory of .tar shards, one .tar file, \
    or a pattern such as DIR/train-{000000..000146}.tar.";
const PATTERN_HELP: &str =
    "Write ranges as {000000..000146} and lists as {a,b}; braces cannot be nested.";

pub(super) fn resolve_spec(spec: &str) -> Result<Vec<PathBuf>, DataError> {
    if spec.trim().is_empty() {
        return Err(DataError::Argument(format!(
            "the shard spec is empty. {SPEC_HELP}"
        )));
    }
    if spec.contains(['{', '}']) {
        return resolve_pattern(spec);
    }
    let path = Path::new(spec);
    if path.is_dir() {
        return list_tar_files(path);
    }
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    Err(DataError::Missing {
        path: path.to_path_buf(),
        help: SPEC_HELP.to_string(),
    })
}

fn resolve_pattern(spec: &str) -> Result<Vec<PathBuf>, DataError> {
    let names = expand_braces(spec).map_err(|problem| {
        DataError::invalid(
            Path::new(spec),
            format!("malformed shard pattern: {problem}"),
            PATTERN_HELP,
        )
    })?;
    let paths: Vec<PathBuf> = names.into_iter().map(PathBuf::from).collect();
    let missing: Vec<&PathBuf> = paths.iter().filter(|path| !path.is_file()).collect();
    match missing.first() {
        None => Ok(paths),
        Some(first) => Err(DataError::Missing {
            path: first.to_path_buf(),
            help: format!(
                "The pattern {spec} names {} shards and {} of them do not exist, this one \
                 first. Check the pattern against the files on disk.",
                paths.len(),
                missing.len()
            ),
        }),
    }
}

/// All `*.tar` files directly in `dir`, sorted by name.
fn list_tar_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut shards = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|source| DataError::io(dir, source))? {
        let path = entry.map_err(|source| DataError::io(dir, source))?.path();
        let is_tar = path
            .extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("tar"));
        if is_tar && path.is_file() {
            shards.push(path);
        }
    }
    if shards.is_empty() {
        return Err(DataError::invalid(
            dir,
            "holds no .tar shard files",
            "Point at the directory that holds the shards, or write them with write_shards.",
        ));
    }
    shards.sort();
    Ok(shards)
}

/// Expands `{a..b}` ranges and `{x,y}` lists left to right, like a shell. Range bounds written
/// with leading zeros keep that width: `{008..010}` gives 008, 009, 010.
fn expand_braces(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err("'}' without an opening '{'".to_string());
        }
        return Ok(vec![pattern.to_string()]);
    };
    let (head, tail) = pattern.split_at(open);
    if head.contains('}') {
        return Err("'}' without an opening '{'".to_string());
    }
    let close = tail
        .find('}')
        .ok_or_else(|| format!("the '{{' at character {} is never closed", open + 1))?;
    let body = &tail[1..close];
    if body.contains('{') {
        return Err(format!("nested braces in {}", &tail[..=close]));
    }
    let choices = expand_group(body)?;
    let rests = expand_braces(&tail[close + 1..])?;
    if choices.len().saturating_mul(rests.len()) > MAX_PATTERN_NAMES {
        return Err(format!("it names more than {MAX_PATTERN_NAMES} files"));
    }
    let mut names = Vec::with_capacity(choices.len() * rests.len());
    for choice in &choices {
        for rest in &rests {
            names.push(format!("{head}{choice}{rest}"));
        }
    }
    Ok(names)
}

/// The alternatives of one brace group, given its text between the braces.
fn expand_group(body: &str) -> Result<Vec<String>, String> {
    if let Some((start, end)) = body.split_once("..") {
        return expand_range(start, end);
    }
    if body.contains(',') {
        return Ok(body.split(',').map(str::to_string).collect());
    }
    Err(format!(
        "{{{body}}} is neither a range such as {{000..146}} nor a list such as {{a,b}}"
    ))
}

fn expand_range(start: &str, end: &str) -> Result<Vec<String>, String> {
    let first = parse_bound(start)?;
    let last = parse_bound(end)?;
    if first > last {
        return Err(format!(
            "the range {{{start}..{end}}} counts down; write {{{end}..{start}}}"
        ));
    }
    if last - first >= MAX_PATTERN_NAMES as u64 {
        return Err(format!(
            "the range {{{start}..{end}}} names more than {MAX_PATTERN_NAMES} files"
        ));
    }
    let padded = [start, end]
        .iter()
        .any(|bound| bound.len() > 1 && bound.starts_with('0'));
    let width = if padded {
        start.len().max(end.len())
    } else {
        0
    };
    Ok((first..=last).map(|n| format!("{n:0width$}")).collect())
}

fn parse_bound(bound: &str) -> Result<u64, String> {
    if bound.is_empty() || !bound.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(format!("the range bound {bound:?} is not a whole number"));
    }
    bound
        .parse()
        .map_err(|_| format!("the range bound {bound} is too large"))
}

/// The one directory holding every shard, where `dataset.json` would be.
pub(super) fn common_dir(shards: &[PathBuf]) -> Option<PathBuf> {
    let dir_of = |shard: &PathBuf| shard.parent().map(Path::to_path_buf).unwrap_or_default();
    let first = dir_of(shards.first()?);
    shards
        .iter()
        .all(|shard| dir_of(shard) == first)
        .then_some(first)
}

pub(super) fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shards::testing::dataset;
    use crate::data::shards::ShardSet;

    #[test]
    fn ranges_keep_their_zero_padding() {
        let names = expand_braces("d/s-{000..003}.tar").unwrap();
        assert_eq!(
            names,
            ["d/s-000.tar", "d/s-001.tar", "d/s-002.tar", "d/s-003.tar"]
        );
        assert_eq!(expand_braces("{8..11}").unwrap(), ["8", "9", "10", "11"]);
        assert_eq!(expand_braces("{08..10}").unwrap(), ["08", "09", "10"]);
        assert_eq!(expand_braces("{000000..000146}").unwrap().len(), 147);
        assert_eq!(expand_braces("{5..5}").unwrap(), ["5"]);
    }

    #[test]
    fn lists_and_several_groups_expand_in_order() {
        let names = expand_braces("{a,b}-{0..1}.tar").unwrap();
        assert_eq!(names, ["a-0.tar", "a-1.tar", "b-0.tar", "b-1.tar"]);
        assert_eq!(expand_braces("x{,y}").unwrap(), ["x", "xy"]);
        assert_eq!(expand_braces("plain.tar").unwrap(), ["plain.tar"]);
    }

    #[test]
    fn malformed_patterns_are_rejected() {
        for bad in [
            "s-{0..3.tar",
            "s-0..3}.tar",
            "s-}{0..3}",
            "s-{}.tar",
            "s-{a}.tar",
            "s-{1..x}.tar",
            "s-{..3}.tar",
            "s-{3..1}.tar",
            "s-{a,{b,c}}.tar",
            "s-{0..99999999999}.tar",
        ] {
            assert!(expand_braces(bad).is_err(), "{bad} should be rejected");
        }
        let error = ShardSet::open("nowhere/s-{0..3.tar")
            .unwrap_err()
            .to_string();
        assert!(error.contains("malformed shard pattern"), "{error}");
        assert!(error.contains("never closed"), "{error}");
    }

    #[test]
    fn directory_lists_only_tar_files_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.tar", "a.tar", "C.TAR", "notes.txt"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.tar")).unwrap();
        let listed: Vec<String> = list_tar_files(dir.path())
            .unwrap()
            .iter()
            .map(|path| file_name_of(path))
            .collect();
        assert_eq!(listed, ["C.TAR", "a.tar", "b.tar"]);
        let empty = tempfile::tempdir().unwrap();
        let error = list_tar_files(empty.path()).unwrap_err().to_string();
        assert!(error.contains("holds no .tar shard files"), "{error}");
    }

    #[test]
    fn missing_shards_are_named() {
        let root = tempfile::tempdir().unwrap();
        let (_, out) = dataset(root.path(), 12, 5);
        let error = ShardSet::open("/no/such/shards").unwrap_err();
        assert!(matches!(error, DataError::Missing { .. }), "{error}");
        let pattern = format!("{}/train-{{000000..000004}}.tar", out.display());
        let error = ShardSet::open(&pattern).unwrap_err().to_string();
        assert!(error.contains("train-000003.tar: not found"), "{error}");
        assert!(error.contains("2 of them do not exist"), "{error}");
        let set = ShardSet::open(&format!("{}/train-{{000000..000002}}.tar", out.display()));
        assert_eq!(set.unwrap().len(), 12);
    }
}
