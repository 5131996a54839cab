//! One epoch's sample stream: the epoch's shard order and this rank's part of it, read through
//! [`Interleave`] and mixed by a seeded shuffle buffer.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::interleave::{read_shard, EncodedSample, Interleave, ReadFn, ReadJob};
use super::set::ShardSet;
use crate::data::error::DataError;

/// Seed purposes, so shard order and sample order use independent generators.
const SHARD_ORDER: u64 = 1;
const SAMPLE_ORDER: u64 = 2;

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
    /// Samples still to yield under the set's `limit`.
    remaining: Option<usize>,
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
        let remaining = set.limit.map(|limit| part_of(limit, part));
        let all: usize = jobs.iter().map(|job| job.expected).sum();
        let samples = remaining.map_or(all, |remaining| remaining.min(all));
        Ok(ShardStream {
            source: Some(Interleave::start(jobs, read)?),
            buffer: ShuffleBuffer {
                items: Vec::new(),
                capacity: if shuffle { buffer } else { 0 },
                rng: StdRng::seed_from_u64(mix_seed(seed, epoch, SAMPLE_ORDER)),
            },
            samples,
            remaining,
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
        if self.remaining == Some(0) {
            self.source = None;
            self.buffer.items = Vec::new();
            return None;
        }
        let item = self.buffer.next(self.source.as_mut()?);
        if let (Some(Ok(_)), Some(remaining)) = (&item, &mut self.remaining) {
            *remaining -= 1;
        }
        if !matches!(item, Some(Ok(_))) {
            // The end, or an error that ends the epoch: release the readers and the buffer now.
            self.source = None;
            self.buffer.items = Vec::new();
        }
        item
    }
}

/// Rank `part.0`'s share of `total` samples split over `part.1` ranks, the remainder going
/// to the first ranks, so the shares add up to `total`.
fn part_of(total: usize, (rank, ranks): (usize, usize)) -> usize {
    let ranks = ranks.max(1);
    total / ranks + usize::from(rank < total % ranks)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    use crate::data::shards::spec::file_name_of;
    use crate::data::shards::testing::{dataset, names, open, origins, read_all};

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
    fn a_limit_yields_the_first_samples_of_each_epoch_split_over_the_ranks() {
        let root = tempfile::tempdir().unwrap();
        let (_, out) = dataset(root.path(), 30, 5);
        let mut set = open(&out);
        let whole = origins(&set, 2, 1, 8);
        set.limit = Some(7);
        assert_eq!(set.len(), 7);
        let stream = ShardStream::new(&set, 2, 1, true, 8, (0, 1)).unwrap();
        assert_eq!(stream.expected_len(), 7);
        assert_eq!(read_all(stream).len(), 7);
        assert_eq!(
            origins(&set, 2, 1, 8),
            whole[..7],
            "the stream's first samples"
        );
        let shares: Vec<usize> = (0..3)
            .map(|rank| {
                let stream = ShardStream::new(&set, 2, 1, true, 8, (rank, 3)).unwrap();
                let expected = stream.expected_len();
                assert_eq!(read_all(stream).len(), expected);
                expected
            })
            .collect();
        assert_eq!(shares, [3, 2, 2]);
    }

    #[test]
    fn streams_can_move_to_a_loader_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<ShardStream>();
        assert_send::<ShardSet>();
    }
}
