//! Tar shards in the WebDataset convention, so that ImageNet-scale image data is read as a few
//! large sequential files instead of millions of small ones (slow on network file systems).
//!
//! A shard is a plain tar file. Each sample is a run of adjacent members sharing one key (the
//! member name up to the first dot of its file name): `KEY.jpg` (or `.jpeg`, `.png`) holds the
//! encoded image and `KEY.cls` the class index as decimal text. Other members are ignored.
//! `dataset.json` beside the shards records the class names and every shard's sample count.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::error::{panic_message, DataError};

/// Shards read at the same time. A constant rather than a worker count, so the interleaved
/// sample order (and so training) is the same on every machine.
pub const OPEN_SHARDS: usize = 4;
/// Samples each reader thread may read ahead of the consumer.
const CHANNEL_DEPTH: usize = 16;
/// Large reads keep a network file system streaming.
const READ_BUFFER: usize = 1 << 20;
const MANIFEST: &str = "dataset.json";
const FORMAT: &str = "webdataset";
const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];
const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];
const PNG_MAGIC: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
/// Refuses absurd member sizes (a corrupt header) before allocating for them.
const MAX_IMAGE_BYTES: u64 = 256 << 20;
const MAX_LABEL_BYTES: u64 = 64;
/// Guards against a typo such as `{0..999999999}` allocating gigabytes of names.
const MAX_PATTERN_NAMES: usize = 1_000_000;
const TAR_BLOCK: u64 = 512;
/// Seed purposes, so shard order and sample order use independent generators.
const SHARD_ORDER: u64 = 1;
const SAMPLE_ORDER: u64 = 2;

const SPEC_HELP: &str = "Give a directory of .tar shards, one .tar file, \
    or a pattern such as DIR/train-{000000..000146}.tar.";
const PATTERN_HELP: &str =
    "Write ranges as {000000..000146} and lists as {a,b}; braces cannot be nested.";
const SHARD_HELP: &str = "Copy the shard again, or rewrite the shards with write_shards.";
const SAMPLE_HELP: &str = "Every sample needs KEY.jpg, KEY.jpeg or KEY.png and KEY.cls next \
    to each other in the tar (GNU tar: --sort=name); rewrite the shard with write_shards.";
const MANIFEST_HELP: &str = "Rewrite the shards with write_shards, \
    or delete dataset.json so that the shards are scanned instead.";
const BUG_HELP: &str =
    "This is a bug in the shard reader, not a problem with the file; please report it.";

/// One sample before decoding.
#[derive(Debug, Clone)]
pub struct EncodedSample {
    /// Where it came from, for messages: "SHARD_PATH:KEY".
    pub origin: String,
    /// The image member's bytes (JPEG or PNG; decoded later by content).
    pub bytes: Vec<u8>,
    /// From `KEY.cls`.
    pub label: u32,
}

/// An ordered list of shard files plus what is known about them.
#[derive(Debug, Clone)]
pub struct ShardSet {
    pub shards: Vec<PathBuf>,
    /// Samples per shard, same order as `shards`.
    pub counts: Vec<usize>,
    /// Class names in label order.
    pub class_names: Vec<String>,
}

impl ShardSet {
    /// Opens `spec`: a directory (all `*.tar` in it, sorted by name), a single .tar file, or a
    /// pattern with brace groups such as `DIR/train-{000000..000146}.tar` or `{train,val}`.
    /// Counts and class names come from `dataset.json` beside the shards when it was written
    /// by [`write_shards`]; otherwise every shard's tar headers are scanned once and the
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

    /// Total samples in all shards.
    pub fn len(&self) -> usize {
        self.counts.iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// ---------------------------------------------------------------------------------------------
// Finding the shard files.

fn resolve_spec(spec: &str) -> Result<Vec<PathBuf>, DataError> {
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
fn common_dir(shards: &[PathBuf]) -> Option<PathBuf> {
    let dir_of = |shard: &PathBuf| shard.parent().map(Path::to_path_buf).unwrap_or_default();
    let first = dir_of(shards.first()?);
    shards
        .iter()
        .all(|shard| dir_of(shard) == first)
        .then_some(first)
}

fn file_name_of(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// dataset.json

enum Manifest {
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

fn read_manifest(dir: &Path) -> Result<Manifest, DataError> {
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

fn counts_from_manifest(
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

// ---------------------------------------------------------------------------------------------
// Walking the members of one shard.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// Seek past image data: counting and labels only.
    Headers,
    /// Read everything sequentially.
    Everything,
}

struct RawSample {
    key: String,
    /// Empty when walking headers only.
    bytes: Vec<u8>,
    label: u32,
}

type Emit<'a> = &'a mut dyn FnMut(RawSample) -> Result<ControlFlow<()>, DataError>;

/// Passes each complete sample of `shard` to `emit` until it breaks; returns the samples seen.
/// `classes`, when known, bounds the labels.
fn walk_shard(
    shard: &Path,
    walk: Walk,
    classes: Option<usize>,
    emit: Emit,
) -> Result<usize, DataError> {
    let file = File::open(shard).map_err(|source| DataError::io(shard, source))?;
    let file_len = file
        .metadata()
        .map_err(|source| DataError::io(shard, source))?
        .len();
    let mut walker = Walker::new(shard, walk, classes, file_len);
    match walk {
        // Unbuffered, because BufReader drops its buffer on every seek.
        Walk::Headers => {
            let mut archive = tar::Archive::new(file);
            let entries = archive.entries_with_seek();
            walker.run(entries.map_err(|error| walker.tar_error(error))?, emit)?;
        }
        Walk::Everything => {
            let mut archive = tar::Archive::new(BufReader::with_capacity(READ_BUFFER, file));
            let entries = archive.entries();
            walker.run(entries.map_err(|error| walker.tar_error(error))?, emit)?;
        }
    }
    Ok(walker.samples)
}

/// The member name up to the first dot of its file name (directories included), and its role.
fn split_member(name: &str) -> (&str, Part) {
    let file_start = name.rfind('/').map_or(0, |slash| slash + 1);
    let Some(dot) = name[file_start..].find('.').map(|dot| file_start + dot) else {
        return (name, Part::Ignored);
    };
    let extension = name[dot + 1..].to_ascii_lowercase();
    let part = if extension == "cls" {
        Part::Label
    } else if IMAGE_EXTENSIONS.contains(&extension.as_str()) {
        Part::Image
    } else {
        Part::Ignored
    };
    (&name[..dot], part)
}

#[derive(Clone, Copy)]
enum Part {
    Image,
    Label,
    Ignored,
}

enum Content {
    Image(Vec<u8>),
    Label(u32),
    Ignored,
}

/// The members of the sample being assembled.
struct Group {
    key: String,
    image: Option<(String, Vec<u8>)>,
    label: Option<(String, u32)>,
}

impl Group {
    fn new(key: &str) -> Self {
        Group {
            key: key.to_string(),
            image: None,
            label: None,
        }
    }

    fn add(&mut self, member: String, content: Content) -> Result<(), String> {
        let taken = match (&content, &self.image, &self.label) {
            (Content::Image(_), Some((first, _)), _) => Some(first),
            (Content::Label(_), _, Some((first, _))) => Some(first),
            _ => None,
        };
        if let Some(first) = taken {
            return Err(format!(
                "member {member} repeats the role of member {first} in sample {}",
                self.key
            ));
        }
        match content {
            Content::Image(bytes) => self.image = Some((member, bytes)),
            Content::Label(label) => self.label = Some((member, label)),
            Content::Ignored => {}
        }
        Ok(())
    }

    /// The sample, or `None` for a group of ignored members only.
    fn finish(self) -> Result<Option<RawSample>, String> {
        match (self.image, self.label) {
            (Some((_, bytes)), Some((_, label))) => Ok(Some(RawSample {
                key: self.key,
                bytes,
                label,
            })),
            (Some((member, _)), None) => Err(format!(
                "member {member} has no {}.cls label member next to it",
                self.key
            )),
            (None, Some((member, _))) => Err(format!(
                "member {member} has no image member ({}.jpg, .jpeg or .png) next to it",
                self.key
            )),
            (None, None) => Ok(None),
        }
    }
}

struct Walker<'a> {
    shard: &'a Path,
    walk: Walk,
    classes: Option<usize>,
    group: Option<Group>,
    samples: usize,
    last_member: Option<String>,
    /// Where the data of the last member ends, padded to a whole block.
    data_end: u64,
    file_len: u64,
}

impl<'a> Walker<'a> {
    fn new(shard: &'a Path, walk: Walk, classes: Option<usize>, file_len: u64) -> Self {
        Walker {
            shard,
            walk,
            classes,
            group: None,
            samples: 0,
            last_member: None,
            data_end: 0,
            file_len,
        }
    }

    fn run<R: Read>(&mut self, entries: tar::Entries<'_, R>, emit: Emit) -> Result<(), DataError> {
        for entry in entries {
            let entry = entry.map_err(|error| self.tar_error(error))?;
            if self.member(entry, emit)?.is_break() {
                return Ok(());
            }
        }
        // Before the last sample, so a cut-off tail is reported as such, not as a lone member.
        self.check_end()?;
        self.flush(emit).map(drop)
    }

    fn member<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        emit: Emit,
    ) -> Result<ControlFlow<()>, DataError> {
        // Saturating: a corrupt header can claim any size.
        let data_end = entry.raw_file_position().saturating_add(entry.size());
        self.data_end = data_end
            .checked_next_multiple_of(TAR_BLOCK)
            .unwrap_or(u64::MAX);
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_contiguous()) {
            return Ok(ControlFlow::Continue(()));
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if data_end > self.file_len {
            return Err(self.truncated(&format!("inside member {name}")));
        }
        self.last_member = Some(name.clone());
        let (key, part) = split_member(&name);
        if self.group.as_ref().is_some_and(|group| group.key != key) && self.flush(emit)?.is_break()
        {
            return Ok(ControlFlow::Break(()));
        }
        let group = Group::new(key);
        let content = self.content(&mut entry, &name, part)?;
        self.group
            .get_or_insert(group)
            .add(name, content)
            .map_err(|problem| DataError::invalid(self.shard, problem, SAMPLE_HELP))?;
        Ok(ControlFlow::Continue(()))
    }

    fn content<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
        part: Part,
    ) -> Result<Content, DataError> {
        match part {
            Part::Image if self.walk == Walk::Everything => {
                self.read_image(entry, name).map(Content::Image)
            }
            Part::Image => Ok(Content::Image(Vec::new())),
            Part::Label => self.read_label(entry, name).map(Content::Label),
            Part::Ignored => Ok(Content::Ignored),
        }
    }

    /// Hands the finished group, if any, to `emit`.
    fn flush(&mut self, emit: Emit) -> Result<ControlFlow<()>, DataError> {
        let Some(group) = self.group.take() else {
            return Ok(ControlFlow::Continue(()));
        };
        match group
            .finish()
            .map_err(|problem| DataError::invalid(self.shard, problem, SAMPLE_HELP))?
        {
            Some(sample) => {
                self.samples += 1;
                emit(sample)
            }
            None => Ok(ControlFlow::Continue(())),
        }
    }
}

/// Reading member data, and errors that name the shard and member.
impl Walker<'_> {
    fn read_image<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<Vec<u8>, DataError> {
        let size = entry.size();
        if size > MAX_IMAGE_BYTES {
            return Err(DataError::invalid(
                self.shard,
                format!(
                    "member {name} claims {size} bytes, more than the {} MiB allowed for one \
                     image",
                    MAX_IMAGE_BYTES >> 20
                ),
                "Check that the shard is not corrupt, or shrink the image before sharding.",
            ));
        }
        read_member(entry, size).map_err(|error| self.read_error(name, error))
    }

    fn read_label<R: Read>(
        &self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<u32, DataError> {
        let size = entry.size();
        let text = if size > MAX_LABEL_BYTES {
            format!("{size} bytes")
        } else {
            let bytes = read_member(entry, size).map_err(|error| self.read_error(name, error))?;
            match parse_label(&bytes) {
                Some(label) => return self.check_label(name, label),
                None => format!("{:?}", String::from_utf8_lossy(&bytes)),
            }
        };
        Err(DataError::invalid(
            self.shard,
            format!("member {name} holds {text}, not a class index"),
            "A .cls member holds the class index as decimal text, such as 7; rewrite the \
             shard with write_shards.",
        ))
    }

    fn check_label(&self, name: &str, label: u32) -> Result<u32, DataError> {
        match self.classes {
            Some(classes) if label as usize >= classes => Err(DataError::invalid(
                self.shard,
                format!("member {name} holds label {label}, but there are only {classes} classes"),
                "The class list (dataset.json) does not match the shards; rewrite the shards \
                 with write_shards, or delete dataset.json so that the shards are scanned.",
            )),
            _ => Ok(label),
        }
    }

    /// A file that stops before the tar end marker lost its tail: the tar reader alone would
    /// take a cut at a member boundary for a clean end and silently shorten the epoch.
    fn check_end(&self) -> Result<(), DataError> {
        if self.file_len >= self.data_end.saturating_add(TAR_BLOCK) {
            return Ok(());
        }
        Err(self.truncated(&match &self.last_member {
            Some(member) => format!("after member {member} without the tar end marker"),
            None => "before its first member".to_string(),
        }))
    }

    fn truncated(&self, place: &str) -> DataError {
        DataError::invalid(
            self.shard,
            format!("the file ends {place}: it is truncated"),
            SHARD_HELP,
        )
    }

    /// An error from the tar reader between members.
    fn tar_error(&self, error: io::Error) -> DataError {
        if error.raw_os_error().is_some() {
            return DataError::io(self.shard, error);
        }
        let place = match &self.last_member {
            Some(member) => format!("after member {member}"),
            None => "at its start".to_string(),
        };
        DataError::invalid(
            self.shard,
            format!("the tar data {place} is corrupt or cut short ({error})"),
            SHARD_HELP,
        )
    }

    fn read_error(&self, name: &str, error: io::Error) -> DataError {
        if error.raw_os_error().is_some() {
            return DataError::io(self.shard, error);
        }
        DataError::invalid(
            self.shard,
            format!("member {name} is cut short or corrupt ({error})"),
            SHARD_HELP,
        )
    }
}

/// Reads exactly `size` bytes of a member; a truncated tar yields fewer without an error.
fn read_member(entry: &mut impl Read, size: u64) -> io::Result<Vec<u8>> {
    // Bounded by the callers' size checks, so the header cannot force a huge allocation.
    let mut bytes = Vec::with_capacity(size as usize);
    entry.take(size).read_to_end(&mut bytes)?;
    if (bytes.len() as u64) < size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("only {} of its {size} bytes are in the file", bytes.len()),
        ));
    }
    Ok(bytes)
}

fn parse_label(bytes: &[u8]) -> Option<u32> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

fn crashed(shard: &Path, payload: Box<dyn Any + Send>) -> DataError {
    DataError::Worker(format!(
        "the thread reading {} crashed: {}",
        shard.display(),
        panic_message(payload.as_ref())
    ))
}

// ---------------------------------------------------------------------------------------------
// The epoch stream.

/// What one reader thread reads.
struct ReadJob {
    shard: PathBuf,
    expected: usize,
    classes: usize,
}

enum Message {
    Sample(EncodedSample),
    Failed(DataError),
    Done,
}

/// The body of a reader thread; a parameter so tests can inject failures.
type ReadFn = fn(&ReadJob, &SyncSender<Message>) -> Result<(), DataError>;

/// Sends every sample of the job's shard, checking that the count matches the shard list.
fn read_shard(job: &ReadJob, sender: &SyncSender<Message>) -> Result<(), DataError> {
    let mut feed = Feed {
        job,
        sender,
        origin: job.shard.display().to_string(),
        sent: 0,
        stopped: false,
    };
    walk_shard(
        &job.shard,
        Walk::Everything,
        Some(job.classes),
        &mut |raw| feed.send(raw),
    )?;
    feed.finish()
}

/// A reader's side of its channel.
struct Feed<'a> {
    job: &'a ReadJob,
    sender: &'a SyncSender<Message>,
    origin: String,
    sent: usize,
    /// The stream was dropped.
    stopped: bool,
}

impl Feed<'_> {
    fn send(&mut self, raw: RawSample) -> Result<ControlFlow<()>, DataError> {
        // Checked before sending, so no sample beyond the listed count ever reaches training.
        if self.sent == self.job.expected {
            let found = format!("more than {}", self.job.expected);
            return Err(count_error(self.job, &found));
        }
        self.sent += 1;
        let sample = EncodedSample {
            origin: format!("{}:{}", self.origin, raw.key),
            bytes: raw.bytes,
            label: raw.label,
        };
        // A failed send means the stream was dropped: stop quietly.
        self.stopped = self.sender.send(Message::Sample(sample)).is_err();
        Ok(if self.stopped {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    }

    fn finish(&self) -> Result<(), DataError> {
        if self.stopped || self.sent == self.job.expected {
            return Ok(());
        }
        Err(count_error(self.job, &self.sent.to_string()))
    }
}

fn count_error(job: &ReadJob, found: &str) -> DataError {
    DataError::invalid(
        &job.shard,
        format!(
            "holds {found} samples, but the shard list (dataset.json or the scan when it was \
             opened) says {}",
            job.expected
        ),
        "The shard changed after it was listed; rewrite the shards with write_shards, or \
         delete dataset.json and open the shards again.",
    )
}

/// Runs on the reader thread: every ending, even a panic, is reported as the last message.
fn run_reader(job: &ReadJob, read: ReadFn, sender: &SyncSender<Message>) {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| read(job, sender)));
    let last = match outcome {
        Ok(Ok(())) => Message::Done,
        Ok(Err(error)) => Message::Failed(error),
        Err(payload) => Message::Failed(crashed(&job.shard, payload)),
    };
    // Fails only when the stream was dropped, and then nobody is left to tell.
    let _ = sender.send(last);
}

/// One open shard in the rotation.
struct Slot {
    shard: PathBuf,
    receiver: Receiver<Message>,
    thread: JoinHandle<()>,
}

impl Slot {
    fn spawn(job: ReadJob, read: ReadFn) -> Result<Slot, DataError> {
        let (sender, receiver) = sync_channel(CHANNEL_DEPTH);
        let shard = job.shard.clone();
        let thread = std::thread::Builder::new()
            .name("shard-reader".to_string())
            .spawn(move || run_reader(&job, read, &sender))
            .map_err(DataError::Thread)?;
        Ok(Slot {
            shard,
            receiver,
            thread,
        })
    }

    /// Stops and joins the reader. Closing the channel first makes a reader blocked in `send`
    /// give up at once, so the join waits at most for one member read.
    fn close(self) -> Option<Box<dyn Any + Send>> {
        drop(self.receiver);
        self.thread.join().err()
    }
}

/// Round-robin over `OPEN_SHARDS` reader threads in a fixed order, so the sample order
/// depends only on the shard list, never on thread timing.
struct Interleave {
    pending: VecDeque<ReadJob>,
    slots: Vec<Slot>,
    cursor: usize,
    read: ReadFn,
}

impl Interleave {
    fn start(jobs: Vec<ReadJob>, read: ReadFn) -> Result<Self, DataError> {
        let mut interleave = Interleave {
            pending: jobs.into(),
            slots: Vec::with_capacity(OPEN_SHARDS),
            cursor: 0,
            read,
        };
        while interleave.slots.len() < OPEN_SHARDS {
            let Some(job) = interleave.pending.pop_front() else {
                break;
            };
            interleave.slots.push(Slot::spawn(job, read)?);
        }
        Ok(interleave)
    }

    /// The finished shard at `index` hands its place to the next pending one.
    fn retire(&mut self, index: usize) -> Result<(), DataError> {
        let finished = match self.pending.pop_front() {
            Some(job) => std::mem::replace(&mut self.slots[index], Slot::spawn(job, self.read)?),
            None => self.slots.remove(index),
        };
        let shard = finished.shard.clone();
        if let Some(payload) = finished.close() {
            return Err(crashed(&shard, payload));
        }
        if self.cursor >= self.slots.len() {
            self.cursor = 0;
        }
        Ok(())
    }

    /// The reader hung up without a last message: only a crash outside `run_reader` does that.
    fn vanished(&mut self) -> DataError {
        let slot = self.slots.remove(self.cursor);
        let shard = slot.shard.clone();
        match slot.close() {
            Some(payload) => crashed(&shard, payload),
            None => DataError::invalid(
                &shard,
                "the thread reading this shard stopped without finishing it",
                BUG_HELP,
            ),
        }
    }
}

impl Iterator for Interleave {
    type Item = Result<EncodedSample, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.slots.is_empty() {
            match self.slots[self.cursor].receiver.recv() {
                Ok(Message::Sample(sample)) => {
                    self.cursor = (self.cursor + 1) % self.slots.len();
                    return Some(Ok(sample));
                }
                Ok(Message::Failed(error)) => return Some(Err(error)),
                Ok(Message::Done) => {
                    if let Err(error) = self.retire(self.cursor) {
                        return Some(Err(error));
                    }
                }
                Err(_) => return Some(Err(self.vanished())),
            }
        }
        None
    }
}

impl Drop for Interleave {
    fn drop(&mut self) {
        // Close every channel before joining any thread, so all readers stop in parallel.
        let threads: Vec<JoinHandle<()>> = self
            .slots
            .drain(..)
            .map(|slot| {
                drop(slot.receiver);
                slot.thread
            })
            .collect();
        for thread in threads {
            // A panic was already reported as a message or is moot now the stream is gone.
            let _ = thread.join();
        }
    }
}

/// Fill to `capacity`, then emit a random element and put the next incoming one in its place;
/// drain at the end. Capacity 0 passes samples straight through.
struct ShuffleBuffer {
    items: Vec<EncodedSample>,
    capacity: usize,
    rng: StdRng,
}

impl ShuffleBuffer {
    fn next(
        &mut self,
        source: &mut impl Iterator<Item = Result<EncodedSample, DataError>>,
    ) -> Option<Result<EncodedSample, DataError>> {
        if self.capacity == 0 {
            return source.next();
        }
        while self.items.len() < self.capacity {
            match source.next() {
                Some(Ok(sample)) => self.items.push(sample),
                Some(Err(error)) => return Some(Err(error)),
                None => break,
            }
        }
        self.emit(source)
    }

    fn emit(
        &mut self,
        source: &mut impl Iterator<Item = Result<EncodedSample, DataError>>,
    ) -> Option<Result<EncodedSample, DataError>> {
        if self.items.is_empty() {
            return None;
        }
        let pick = self.rng.random_range(0..self.items.len());
        match source.next() {
            Some(Ok(incoming)) => Some(Ok(std::mem::replace(&mut self.items[pick], incoming))),
            Some(Err(error)) => Some(Err(error)),
            None => Some(Ok(self.items.swap_remove(pick))),
        }
    }
}

/// Sequential stream of one epoch's samples, the same for a given (seed, epoch) whatever the
/// thread timing. Memory is bounded by `buffer + OPEN_SHARDS * CHANNEL_DEPTH` samples.
/// A read error is yielded once, naming the shard and member, and then the stream ends.
/// Dropping the stream mid-epoch stops and joins its reader threads.
pub struct ShardStream {
    /// `None` once the stream has ended; dropping it stops and joins the readers.
    source: Option<Interleave>,
    buffer: ShuffleBuffer,
    samples: usize,
}

impl ShardStream {
    /// Shards are shuffled per epoch when `shuffle`, then only positions with
    /// `position % part.1 == part.0` are kept (disjoint shards per data-parallel rank; (0, 1)
    /// is everything); samples pass through a shuffle buffer of `buffer` samples when
    /// `shuffle` (0 = none).
    pub fn new(
        set: &ShardSet,
        seed: u64,
        epoch: usize,
        shuffle: bool,
        buffer: usize,
        part: (usize, usize),
    ) -> Result<Self, DataError> {
        Self::with_reader(set, seed, epoch, shuffle, buffer, part, read_shard)
    }

    fn with_reader(
        set: &ShardSet,
        seed: u64,
        epoch: usize,
        shuffle: bool,
        buffer: usize,
        part: (usize, usize),
        read: ReadFn,
    ) -> Result<Self, DataError> {
        let jobs = epoch_jobs(set, mix_seed(seed, epoch, SHARD_ORDER), shuffle, part)?;
        let samples = jobs.iter().map(|job| job.expected).sum();
        Ok(ShardStream {
            source: Some(Interleave::start(jobs, read)?),
            buffer: ShuffleBuffer {
                items: Vec::new(),
                capacity: if shuffle { buffer } else { 0 },
                rng: StdRng::seed_from_u64(mix_seed(seed, epoch, SAMPLE_ORDER)),
            },
            samples,
        })
    }

    /// Samples this stream yields if every shard is intact (this part's shards only).
    pub fn expected_len(&self) -> usize {
        self.samples
    }
}

impl Iterator for ShardStream {
    type Item = Result<EncodedSample, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.buffer.next(self.source.as_mut()?);
        if !matches!(item, Some(Ok(_))) {
            // The end, or an error that ends the epoch: release the readers and the buffer now.
            self.source = None;
            self.buffer.items = Vec::new();
        }
        item
    }
}

/// This epoch's shards, in reading order, for rank `part.0` of `part.1`.
fn epoch_jobs(
    set: &ShardSet,
    shard_seed: u64,
    shuffle: bool,
    part: (usize, usize),
) -> Result<Vec<ReadJob>, DataError> {
    check_stream_args(set, part)?;
    let mut order: Vec<usize> = (0..set.shards.len()).collect();
    if shuffle {
        order.shuffle(&mut StdRng::seed_from_u64(shard_seed));
    }
    let (rank, ranks) = part;
    Ok(order
        .into_iter()
        .enumerate()
        .filter(|(position, _)| position % ranks == rank)
        .map(|(_, index)| ReadJob {
            shard: set.shards[index].clone(),
            expected: set.counts[index],
            classes: set.class_names.len(),
        })
        .collect())
}

fn check_stream_args(set: &ShardSet, (rank, ranks): (usize, usize)) -> Result<(), DataError> {
    if set.shards.len() != set.counts.len() {
        return Err(DataError::Argument(format!(
            "the shard set lists {} shards but {} counts; build it with ShardSet::open",
            set.shards.len(),
            set.counts.len()
        )));
    }
    if ranks == 0 || rank >= ranks {
        return Err(DataError::Argument(format!(
            "part ({rank}, {ranks}) is not a (rank, ranks) pair with rank < ranks; \
             (0, 1) reads every shard"
        )));
    }
    if set.shards.len() < ranks {
        return Err(DataError::Argument(format!(
            "{} shards cannot be split among {ranks} ranks, as every rank needs at least one; \
             write smaller shards so there are at least {ranks}",
            set.shards.len()
        )));
    }
    Ok(())
}

/// Independent, well-mixed seeds per (seed, epoch, purpose): neighbouring epochs and the two
/// shuffles must not share generator streams.
fn mix_seed(seed: u64, epoch: usize, purpose: u64) -> u64 {
    splitmix(splitmix(splitmix(seed) ^ epoch as u64) ^ purpose)
}

fn splitmix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------------------------
// Writing shards.

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
    mut shards: Vec<(String, usize)>,
) -> Result<(), DataError> {
    shards.sort();
    let listed: Vec<Value> = shards
        .iter()
        .map(|(file, samples)| json!({ "file": file, "samples": samples }))
        .collect();
    let manifest = json!({ "format": FORMAT, "classes": class_names, "shards": listed });
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

fn append_member<W: Write>(
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

/// Writes `path` through a temporary file in the same directory and renames it into place.
fn write_atomically(
    path: &Path,
    body: impl FnOnce(&mut BufWriter<File>, &Path) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let temp = path.with_file_name(format!(
        ".{}.partial-{}",
        file_name_of(path),
        std::process::id()
    ));
    let result = write_then_rename(path, &temp, body);
    if result.is_err() {
        // Best effort: the temporary name is hidden and never read as a shard anyway.
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn write_then_rename(
    path: &Path,
    temp: &Path,
    body: impl FnOnce(&mut BufWriter<File>, &Path) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let file = File::create(temp).map_err(|source| write_error(temp, source))?;
    let mut writer = BufWriter::with_capacity(READ_BUFFER, file);
    body(&mut writer, temp)?;
    let file = writer
        .into_inner()
        .map_err(|error| write_error(temp, error.into_error()))?;
    // On disk before the rename, so a crash cannot leave a final name over missing data.
    file.sync_all()
        .map_err(|source| write_error(temp, source))?;
    std::fs::rename(temp, path).map_err(|source| write_error(path, source))
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
    use std::collections::HashSet;
    use std::time::{Duration, Instant};

    /// A fake JPEG: the magic bytes are all `write_shards` looks at.
    fn jpeg(index: usize) -> Vec<u8> {
        let mut bytes = JPEG_MAGIC.to_vec();
        bytes.extend(format!("sample {index} ").repeat(1 + index % 7).bytes());
        bytes
    }

    /// `count` source images with labels `index % classes`; every tenth is a PNG.
    fn sources(dir: &Path, count: usize, classes: u32) -> Vec<(PathBuf, u32)> {
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

    fn names(classes: u32) -> Vec<String> {
        (0..classes).map(|class| format!("class{class}")).collect()
    }

    /// Writes `count` samples of 3 classes in shards of `shard_size` under `root/shards`.
    fn dataset(root: &Path, count: usize, shard_size: usize) -> (Vec<(PathBuf, u32)>, PathBuf) {
        let samples = sources(&root.join("src"), count, 3);
        let out = root.join("shards");
        write_shards(&samples, &names(3), &out, "train", shard_size, 7, false).unwrap();
        (samples, out)
    }

    fn open(dir: &Path) -> ShardSet {
        ShardSet::open(dir.to_str().unwrap()).unwrap()
    }

    fn read_all(stream: ShardStream) -> Vec<EncodedSample> {
        stream.map(|item| item.unwrap()).collect()
    }

    fn origins(set: &ShardSet, seed: u64, epoch: usize, buffer: usize) -> Vec<String> {
        let stream = ShardStream::new(set, seed, epoch, true, buffer, (0, 1)).unwrap();
        read_all(stream).into_iter().map(|s| s.origin).collect()
    }

    fn last_error(stream: ShardStream) -> String {
        match stream.last() {
            Some(Err(error)) => error.to_string(),
            other => panic!("expected the stream to end in an error, got {other:?}"),
        }
    }

    /// (name, data) of a tar member.
    type Member<'a> = (&'a str, &'a [u8]);

    /// A tar holding `members` in order, with its end marker.
    fn tar_of(members: &[Member]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, data) in members {
            append_member(&mut builder, name, data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    /// A one-shard set over hand-made tar bytes, as `open` would list it.
    fn hand_set(dir: &Path, bytes: &[u8], expected: usize, classes: usize) -> ShardSet {
        let shard = dir.join("hand-000000.tar");
        std::fs::write(&shard, bytes).unwrap();
        ShardSet {
            shards: vec![shard],
            counts: vec![expected],
            class_names: (0..classes).map(|c| c.to_string()).collect(),
        }
    }

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

    #[test]
    fn written_samples_read_back_exactly_once() {
        let root = tempfile::tempdir().unwrap();
        let (samples, out) = dataset(root.path(), 23, 5);
        let set = open(&out);
        assert_eq!(set.shards.len(), 5);
        assert_eq!(file_name_of(&set.shards[4]), "train-000004.tar");
        assert_eq!(set.counts, [5, 5, 5, 5, 3]);
        assert_eq!(set.len(), 23);
        assert_eq!(set.class_names, names(3));
        let mut expected: Vec<(Vec<u8>, u32)> = samples
            .iter()
            .map(|(path, label)| (std::fs::read(path).unwrap(), *label))
            .collect();
        expected.sort();
        for (shuffle, buffer) in [(false, 0), (true, 0), (true, 8), (true, 1000)] {
            let stream = ShardStream::new(&set, 1, 0, shuffle, buffer, (0, 1)).unwrap();
            assert_eq!(stream.expected_len(), 23);
            let read = read_all(stream);
            let keys: HashSet<&str> = read.iter().map(|s| s.origin.as_str()).collect();
            assert_eq!(keys.len(), 23, "every origin is distinct");
            let mut got: Vec<(Vec<u8>, u32)> =
                read.into_iter().map(|s| (s.bytes, s.label)).collect();
            got.sort();
            assert_eq!(got, expected, "shuffle {shuffle}, buffer {buffer}");
        }
    }

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
    fn same_seed_and_epoch_give_the_same_stream() {
        let root = tempfile::tempdir().unwrap();
        let (_, out) = dataset(root.path(), 60, 6);
        let set = open(&out);
        let first = origins(&set, 3, 2, 10);
        assert_eq!(first, origins(&set, 3, 2, 10));
        assert_ne!(
            first,
            origins(&set, 3, 3, 10),
            "another epoch, another order"
        );
        assert_ne!(
            first,
            origins(&set, 4, 2, 10),
            "another seed, another order"
        );
    }

    #[test]
    fn shuffle_buffer_mixes_samples() {
        let root = tempfile::tempdir().unwrap();
        // One shard, so only the buffer can change the order.
        let (_, out) = dataset(root.path(), 50, 50);
        let set = open(&out);
        let plain: Vec<String> = read_all(ShardStream::new(&set, 0, 0, false, 16, (0, 1)).unwrap())
            .into_iter()
            .map(|s| s.origin)
            .collect();
        let mut mixed = origins(&set, 0, 0, 16);
        assert_ne!(mixed, plain);
        mixed.sort();
        let mut sorted = plain.clone();
        sorted.sort();
        assert_eq!(mixed, sorted);
    }

    #[test]
    fn shuffle_buffer_is_a_permutation() {
        let items = (0..100).map(|index| {
            Ok(EncodedSample {
                origin: index.to_string(),
                bytes: Vec::new(),
                label: index,
            })
        });
        let mut source = items.collect::<Vec<_>>().into_iter();
        let mut buffer = ShuffleBuffer {
            items: Vec::new(),
            capacity: 10,
            rng: StdRng::seed_from_u64(1),
        };
        let mut labels = Vec::new();
        while let Some(item) = buffer.next(&mut source) {
            labels.push(item.unwrap().label);
            assert!(buffer.items.len() <= 10);
        }
        // Mixed, not merely delayed: few neighbours keep their input order.
        let in_order = labels.windows(2).filter(|w| w[1] == w[0] + 1).count();
        assert!(
            in_order < 30,
            "{in_order} of 99 neighbours in input order: {labels:?}"
        );
        labels.sort();
        assert_eq!(labels, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn parts_are_disjoint_and_cover_everything() {
        let root = tempfile::tempdir().unwrap();
        let (_, out) = dataset(root.path(), 35, 5);
        let set = open(&out);
        for epoch in 0..3 {
            let mut seen = HashSet::new();
            let mut total = 0;
            for rank in 0..3 {
                let stream = ShardStream::new(&set, 9, epoch, true, 4, (rank, 3)).unwrap();
                let count = stream.expected_len();
                let read = read_all(stream);
                assert_eq!(read.len(), count);
                total += read.len();
                seen.extend(read.into_iter().map(|s| s.origin));
            }
            assert_eq!(total, 35);
            assert_eq!(seen.len(), 35, "no sample is read by two ranks");
        }
        for part in [(0, 0), (3, 3), (0, 8)] {
            let error = ShardStream::new(&set, 9, 0, true, 4, part).err().unwrap();
            assert!(matches!(error, DataError::Argument(_)), "{part:?}: {error}");
        }
    }

    #[test]
    fn truncated_shard_ends_the_stream_with_an_error() {
        let root = tempfile::tempdir().unwrap();
        let (_, out) = dataset(root.path(), 30, 10);
        let set = open(&out);
        let victim = &set.shards[1];
        let length = std::fs::metadata(victim).unwrap().len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(victim)
            .unwrap();
        file.set_len(length / 2).unwrap();
        let stream = ShardStream::new(&set, 0, 0, true, 5, (0, 1)).unwrap();
        let error = last_error(stream);
        assert!(error.contains("train-000001.tar"), "{error}");
        std::fs::remove_file(out.join(MANIFEST)).unwrap();
        let error = ShardSet::open(out.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("train-000001.tar"), "{error}");
    }

    #[test]
    fn a_cut_at_a_member_boundary_is_still_caught() {
        let dir = tempfile::tempdir().unwrap();
        let whole = tar_of(&[
            ("a.jpg", b"x"),
            ("a.cls", b"0"),
            ("b.jpg", b"y"),
            ("b.cls", b"1"),
        ]);
        // Drop the end marker and the last sample: a clean cut between members.
        let cut = &whole[..whole.len() - 1024 - 4 * 512];
        let set = hand_set(dir.path(), cut, 1, 2);
        let error = last_error(ShardStream::new(&set, 0, 0, false, 0, (0, 1)).unwrap());
        assert!(error.contains("truncated"), "{error}");
        assert!(error.contains("after member a.cls"), "{error}");
        let error = ShardSet::open(set.shards[0].to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(error.contains("hand-000000.tar"), "{error}");
        assert!(error.contains("truncated"), "{error}");
    }

    #[test]
    fn samples_need_an_image_and_a_label() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[Member], &str); 5] = [
            (
                &[("a.jpg", b"x"), ("a.cls", b"0"), ("b.jpg", b"y")],
                "member b.jpg has no b.cls",
            ),
            (
                &[("a.cls", b"0"), ("a.jpg", b"x"), ("b.cls", b"1")],
                "member b.cls has no image",
            ),
            (
                &[("a.jpg", b"x"), ("a.cls", b"cat")],
                "member a.cls holds \"cat\", not a class",
            ),
            (
                &[("a.jpg", b"x"), ("b.cls", b"0")],
                "member a.jpg has no a.cls",
            ),
            (
                &[("a.jpg", b"x"), ("a.png", b"y"), ("a.cls", b"0")],
                "a.png repeats the role",
            ),
        ];
        for (members, expected) in cases {
            let set = hand_set(dir.path(), &tar_of(members), 2, 2);
            let path = set.shards[0].to_str().unwrap();
            let error = ShardSet::open(path).unwrap_err().to_string();
            assert!(error.contains("hand-000000.tar"), "{error}");
            assert!(error.contains(expected), "{error}");
            let error = last_error(ShardStream::new(&set, 0, 0, false, 0, (0, 1)).unwrap());
            assert!(error.contains(expected), "{error}");
        }
    }

    #[test]
    fn other_members_and_directories_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut folder = tar::Header::new_ustar();
        folder.set_entry_type(tar::EntryType::Directory);
        folder.set_size(0);
        builder.append_data(&mut folder, "x/", io::empty()).unwrap();
        for (name, data) in [
            ("x/k1.JPG", &b"one"[..]),
            ("x/k1.cls", b" 1\n"),
            ("x/k1.json", b"{}"),
            ("README.txt", b"hello"),
            ("x/k2.png", b"two"),
            ("x/k2.cls", b"0"),
        ] {
            append_member(&mut builder, name, data).unwrap();
        }
        let set = hand_set(dir.path(), &builder.into_inner().unwrap(), 2, 2);
        let opened = ShardSet::open(set.shards[0].to_str().unwrap()).unwrap();
        assert_eq!(opened.counts, [2]);
        let read = read_all(ShardStream::new(&set, 0, 0, false, 0, (0, 1)).unwrap());
        let origin = set.shards[0].display().to_string();
        assert_eq!(read[0].origin, format!("{origin}:x/k1"));
        assert_eq!((read[0].bytes.as_slice(), read[0].label), (&b"one"[..], 1));
        assert_eq!((read[1].bytes.as_slice(), read[1].label), (&b"two"[..], 0));
    }

    #[test]
    fn labels_beyond_the_class_list_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let set = hand_set(
            dir.path(),
            &tar_of(&[("a.jpg", b"x"), ("a.cls", b"5")]),
            1,
            3,
        );
        let error = last_error(ShardStream::new(&set, 0, 0, false, 0, (0, 1)).unwrap());
        assert!(
            error.contains("label 5, but there are only 3 classes"),
            "{error}"
        );
    }

    #[test]
    fn counts_that_disagree_with_the_shard_are_errors() {
        let root = tempfile::tempdir().unwrap();
        let (_, out) = dataset(root.path(), 10, 10);
        let mut set = open(&out);
        set.counts[0] = 11;
        let error = last_error(ShardStream::new(&set, 0, 0, false, 0, (0, 1)).unwrap());
        assert!(error.contains("holds 10 samples"), "{error}");
        set.counts[0] = 9;
        let stream = ShardStream::new(&set, 0, 0, false, 0, (0, 1)).unwrap();
        let items: Vec<_> = stream.collect();
        assert_eq!(items.len(), 10, "9 samples, then the error");
        let error = items[9].as_ref().unwrap_err().to_string();
        assert!(error.contains("holds more than 9 samples"), "{error}");
    }

    #[test]
    fn dropping_a_stream_midway_is_prompt() {
        let root = tempfile::tempdir().unwrap();
        let samples: Vec<(PathBuf, u32)> = (0..400)
            .map(|index| {
                let path = root.path().join(format!("{index}.jpg"));
                let mut bytes = jpeg(index);
                bytes.resize(20_000, index as u8);
                std::fs::write(&path, bytes).unwrap();
                (path, 0)
            })
            .collect();
        let out = root.path().join("shards");
        write_shards(&samples, &names(1), &out, "big", 40, 0, false).unwrap();
        let set = open(&out);
        let mut stream = ShardStream::new(&set, 0, 0, true, 32, (0, 1)).unwrap();
        for _ in 0..5 {
            stream.next().unwrap().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50)); // let the readers block on full channels
        let start = Instant::now();
        drop(stream);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn a_panicking_reader_is_an_error_not_a_short_epoch() {
        let root = tempfile::tempdir().unwrap();
        let (_, out) = dataset(root.path(), 10, 5);
        let set = open(&out);
        let boom: ReadFn = |_, _| panic!("boom");
        let mut stream = ShardStream::with_reader(&set, 0, 0, false, 0, (0, 1), boom).unwrap();
        let error = stream.next().unwrap().unwrap_err().to_string();
        assert!(error.contains("crashed: boom"), "{error}");
        assert!(stream.next().is_none());
    }

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

    #[test]
    fn streams_can_move_to_a_loader_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<ShardStream>();
        assert_send::<ShardSet>();
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
