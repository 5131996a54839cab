//! Tar shards in the WebDataset convention, so that ImageNet-scale image data is read as a few
//! large sequential files instead of millions of small ones (slow on network file systems).
//!
//! A shard is a plain tar file. Each sample is a run of adjacent members sharing one key (the
//! member name up to the first dot of its file name): `KEY.jpg` (or `.jpeg`, `.png`) holds the
//! encoded image and `KEY.cls` the class index as decimal text. Other members are ignored.
//! `dataset.json` beside the shards records the class names and every shard's sample count.
//!
//! The files, bottom up: `spec` finds the shard files, `manifest` reads `dataset.json`,
//! `reader` walks the members of one tar, `set` lists a set's shards and counts,
//! `interleave` reads several shards on threads in a fixed rotation, `stream` turns that
//! into one epoch's shuffled stream, and `writer` writes shards and their manifest.

mod interleave;
mod manifest;
mod reader;
mod set;
mod spec;
mod stream;
mod writer;

pub use interleave::EncodedSample;
pub use set::ShardSet;
pub use stream::ShardStream;
pub use writer::write_shards;

// Last in the file: the import checker (/tmp/ana/imports.py) ignores everything after the
// first `#[cfg(test)]`.
#[cfg(test)]
mod testing;
