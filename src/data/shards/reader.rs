//! Walking the members of one tar shard: grouping members into samples by key, reading image
//! and label data, and errors that name the shard and member.

use std::any::Any;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::ops::ControlFlow;
use std::path::Path;

use crate::data::error::{panic_message, DataError};

/// Shards read at the same time. A constant rather than a worker count, so the interleaved
/// sample order (and so training) is the same on every machine.
pub(super) const OPEN_SHARDS: usize = 4;
/// Large reads keep a network file system streaming.
pub(super) const READ_BUFFER: usize = 1 << 20;
pub(super) const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];
/// Refuses absurd member sizes (a corrupt header) before allocating for them.
const MAX_IMAGE_BYTES: u64 = 256 << 20;
const MAX_LABEL_BYTES: u64 = 64;
const TAR_BLOCK: u64 = 512;

const SHARD_HELP: &str = "Copy the shard again, or rewrite the shards with write_shards.";
const SAMPLE_HELP: &str = "Every sample needs KEY.jpg, KEY.jpeg or KEY.png and KEY.cls next \
    to each other in the tar (GNU tar: --sort=name); rewrite the shard with write_shards.";

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Walk {
    /// Seek past image data: counting and labels only.
    Headers,
    /// Read everything sequentially.
    Everything,
}

pub(super) struct RawSample {
    pub(super) key: String,
    /// Empty when walking headers only.
    pub(super) bytes: Vec<u8>,
    pub(super) label: u32,
}

pub(super) type Emit<'a> = &'a mut dyn FnMut(RawSample) -> Result<ControlFlow<()>, DataError>;

/// Passes each complete sample of `shard` to `emit` until it breaks; returns the samples seen.
/// `classes`, when known, bounds the labels.
pub(super) fn walk_shard(
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

pub(super) fn crashed(shard: &Path, payload: Box<dyn Any + Send>) -> DataError {
    DataError::Worker(format!(
        "the thread reading {} crashed: {}",
        shard.display(),
        panic_message(payload.as_ref())
    ))
}

#[cfg(test)]
mod tests {
    use std::io;

    use crate::data::shards::manifest::MANIFEST;
    use crate::data::shards::testing::{
        dataset, hand_set, last_error, open, read_all, tar_of, Member,
    };
    use crate::data::shards::writer::append_member;
    use crate::data::shards::{ShardSet, ShardStream};

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
}
