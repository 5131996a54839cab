//! Reading several shards at once: one reader thread per open shard, each feeding a bounded
//! channel, consumed round-robin in a fixed order so that thread timing never changes the
//! sample order.

use std::any::Any;
use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use super::reader::{crashed, walk_shard, RawSample, Walk, OPEN_SHARDS};
use crate::data::error::DataError;

/// Samples each reader thread may read ahead of the consumer.
const CHANNEL_DEPTH: usize = 16;
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

/// What one reader thread reads.
pub(super) struct ReadJob {
    pub(super) shard: PathBuf,
    pub(super) expected: usize,
    pub(super) classes: usize,
}

pub(super) enum Message {
    Sample(EncodedSample),
    Failed(DataError),
    Done,
}

/// The body of a reader thread; a parameter so tests can inject failures.
pub(super) type ReadFn = fn(&ReadJob, &SyncSender<Message>) -> Result<(), DataError>;

/// Sends every sample of the job's shard, checking that the count matches the shard list.
pub(super) fn read_shard(job: &ReadJob, sender: &SyncSender<Message>) -> Result<(), DataError> {
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
pub(super) struct Interleave {
    pending: VecDeque<ReadJob>,
    slots: Vec<Slot>,
    cursor: usize,
    read: ReadFn,
}

impl Interleave {
    pub(super) fn start(jobs: Vec<ReadJob>, read: ReadFn) -> Result<Self, DataError> {
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use crate::data::shards::testing::{dataset, jpeg, last_error, names, open};
    use crate::data::shards::{write_shards, ShardStream};

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
}
