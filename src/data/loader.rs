use std::iter::FusedIterator;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::decode::{decode_image, Pixels};
use super::error::{panic_message, BadSample, DataError};
use super::shards::{EncodedSample, ShardStream};
use super::source::DataSource;
use super::transform::{
    color_jitter, view, write_normalized, Augment, Geometry, Normalize, NormalizeTable,
};

/// Separate random streams, so the shuffle and the augmentation never share random numbers.
const ORDER_STREAM: u64 = 1;
const AUGMENT_STREAM: u64 = 2;

/// Default share of bad files tolerated before a run stops (ImageNet's train set has a
/// handful in 1.28 million).
pub const DEFAULT_MAX_BAD_FRACTION: f64 = 0.001;

/// Default samples in the shard shuffle buffer (about 100 MB of ImageNet JPEGs).
pub const DEFAULT_SHUFFLE_BUFFER: usize = 1000;

#[derive(Clone, Debug)]
pub struct LoaderOptions {
    pub batch_size: usize,
    /// Output height and width.
    pub resolution: usize,
    /// Output channels, 1 or 3: 1 -> 3 replicates grey, 3 -> 1 takes luminance.
    pub channels: usize,
    pub augment: Augment,
    /// The evaluation view (and the training view without a random resized crop): the
    /// shorter side is resized to `resolution / crop_pct`, then the centre is cropped.
    pub crop_pct: f32,
    /// One mean and std per output channel.
    pub normalize: Normalize,
    pub shuffle: bool,
    pub seed: u64,
    /// Skip the last batch if it would be partial; batches are then always full, bad files'
    /// slots refilled from the rest of their batch.
    pub drop_last: bool,
    /// Decoding threads; 0 = `available_parallelism - 1` (at least 1).
    pub workers: usize,
    /// Stop with an error once more than this fraction of the data set's files failed to decode.
    pub max_bad_fraction: f64,
    /// `(part, parts)`: load only this part of every epoch (data-parallel ranks); `(0, 1)`: all.
    pub part: (usize, usize),
    /// Samples in the shard shuffle buffer (shards only).
    pub shuffle_buffer: usize,
}

impl LoaderOptions {
    /// The evaluation view of every sample in order, on the default number of threads.
    pub fn new(
        batch_size: usize,
        resolution: usize,
        channels: usize,
        normalize: Normalize,
    ) -> Self {
        LoaderOptions {
            batch_size,
            resolution,
            channels,
            augment: Augment::default(),
            crop_pct: 1.0,
            normalize,
            shuffle: false,
            seed: 0,
            drop_last: false,
            workers: 0,
            max_bad_fraction: DEFAULT_MAX_BAD_FRACTION,
            part: (0, 1),
            shuffle_buffer: DEFAULT_SHUFFLE_BUFFER,
        }
    }

    /// Worker threads to start.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism()
                .map_or(1, |cores| cores.get().saturating_sub(1))
                .max(1),
            workers => workers,
        }
    }
}

/// One batch, always exactly `batch_size` images (NHWC f32). When fewer real samples remain
/// (`drop_last = false`, or bad files skipped) the rest are zeros with label 0 and `count`
/// tells how many are real.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    /// Real samples at the front of the batch.
    pub count: usize,
    /// Position of this batch in the epoch, from 0.
    pub index: usize,
    /// Files of this batch that could not be decoded (skipped, or refilled when full batches
    /// are required).
    pub bad: Vec<BadSample>,
    /// Where each real sample came from (its path, `SHARD:KEY`, or `#INDEX` in memory).
    pub origins: Vec<String>,
}

/// Batches in one epoch of `len` samples.
pub fn batch_count(len: usize, options: &LoaderOptions) -> usize {
    match options.batch_size {
        0 => 0,
        size if options.drop_last => len / size,
        size => len.div_ceil(size),
    }
}

/// One sample as a job carries it: an index into a random-access source, or bytes already
/// read from a shard.
enum SampleRef {
    Index(usize),
    Encoded(EncodedSample),
}

/// A batch to build: `samples[i]` is (augmentation key, sample).
struct Job {
    index: usize,
    samples: Vec<(u64, SampleRef)>,
}

/// What a worker is handed: a batch to build, or a failure to pass on in its turn.
enum Task {
    Build(Job),
    Fail(DataError),
}

/// Iterator over one epoch's batches, prepared ahead on background threads.
///
/// Fully deterministic: the sample order is seeded by (seed, epoch) and every augmentation
/// decision by (seed, epoch, sample), so batches never depend on thread timing or the number
/// of workers, and a loader created for epoch `e` reproduces that epoch exactly (how training
/// resumes).
///
/// Threads: a planner thread lists each batch's samples (reading shards sequentially) and
/// hands batch `i` to worker `i % W`, which reads, decodes and transforms it into its own
/// one-slot channel; the iterator reads the channels in turn, so batches arrive in order and
/// memory is bounded by about two batches per worker. A file that cannot be decoded is
/// reported in [`Batch::bad`] and skipped; past `max_bad_fraction` of the data set, or on any
/// other failure (a corrupt shard, a panicking thread), the iterator yields an error and ends.
/// Dropping the loader stops and joins every thread.
pub struct BatchLoader {
    /// Batch `i` arrives on `receivers[i % receivers.len()]`.
    receivers: Vec<Receiver<Result<Batch, DataError>>>,
    threads: Vec<JoinHandle<()>>,
    next_index: usize,
    total: usize,
    bad_seen: usize,
    bad_limit: f64,
    source_len: usize,
    max_bad_fraction: f64,
}

impl BatchLoader {
    /// Starts loading `epoch`, or explains why `source` and `options` cannot work together.
    pub fn new(
        source: DataSource,
        options: LoaderOptions,
        epoch: usize,
    ) -> Result<Self, DataError> {
        validate(&source, &options)?;
        let source_len = source.len();
        let workers = options.worker_count();
        let plan = Arc::new(EpochPlan::new(source, options, epoch));
        let (planner, total) = Planner::new(&plan)?;
        let mut loader = BatchLoader {
            receivers: Vec::with_capacity(workers),
            threads: Vec::with_capacity(workers + 1),
            next_index: 0,
            total,
            bad_seen: 0,
            bad_limit: plan.options.max_bad_fraction * source_len as f64,
            source_len,
            max_bad_fraction: plan.options.max_bad_fraction,
        };
        // Built up in place so that a failed spawn drops (and so stops) the threads started.
        let mut task_senders = Vec::with_capacity(workers);
        for worker in 0..workers {
            let (task_sender, task_receiver) = sync_channel::<Task>(1);
            let (batch_sender, batch_receiver) = sync_channel(1);
            let plan = Arc::clone(&plan);
            loader
                .threads
                .push(spawn(format!("batch-loader-{worker}"), move || {
                    for task in task_receiver {
                        let result = match task {
                            Task::Build(job) => plan.build_guarded(job),
                            Task::Fail(error) => Err(error),
                        };
                        // A send error means the loader was dropped: stop quietly.
                        if batch_sender.send(result).is_err() {
                            return;
                        }
                    }
                })?);
            loader.receivers.push(batch_receiver);
            task_senders.push(task_sender);
        }
        loader
            .threads
            .push(spawn("batch-planner".to_string(), move || {
                planner.run(&task_senders)
            })?);
        Ok(loader)
    }

    /// Batches this epoch will yield (for shards, as counted by the shard index).
    pub fn total(&self) -> usize {
        self.total
    }

    /// Ends the epoch with `error`: later calls return `None`.
    fn fail(&mut self, error: DataError) -> Option<Result<Batch, DataError>> {
        self.receivers.clear();
        self.next_index = self.total;
        Some(Err(error))
    }
}

fn spawn(name: String, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, DataError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(body)
        .map_err(DataError::Thread)
}

impl Iterator for BatchLoader {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.receivers.is_empty() {
            return None;
        }
        let worker = self.next_index % self.receivers.len();
        match self.receivers[worker].recv() {
            Ok(Ok(batch)) => {
                self.next_index += 1;
                self.bad_seen += batch.bad.len();
                if self.bad_seen as f64 > self.bad_limit {
                    let error = DataError::TooManyBad {
                        bad: self.bad_seen,
                        total: self.source_len,
                        max_fraction: self.max_bad_fraction,
                        last: batch.bad.last().cloned(),
                    };
                    return self.fail(error);
                }
                Some(Ok(batch))
            }
            Ok(Err(error)) => self.fail(error),
            Err(_) if self.next_index < self.total => self.fail(DataError::Worker(format!(
                "the data ended after {} of {} batches",
                self.next_index, self.total
            ))),
            Err(_) => {
                self.receivers.clear();
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.total.saturating_sub(self.next_index);
        (remaining, Some(remaining + 1))
    }
}

impl FusedIterator for BatchLoader {}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        // Closing the channels makes every blocked or future send fail, so the joins return.
        self.receivers.clear();
        for thread in self.threads.drain(..) {
            // Panics were caught and reported in order; re-raising in drop could abort.
            let _ = thread.join();
        }
    }
}

fn validate(source: &DataSource, options: &LoaderOptions) -> Result<(), DataError> {
    let (part, parts) = options.part;
    let problem = if options.batch_size == 0 {
        "batch_size is 0".to_string()
    } else if options.resolution == 0 || u32::try_from(options.resolution).is_err() {
        format!("resolution {} is out of range", options.resolution)
    } else if ![1, 3].contains(&options.channels) {
        format!("{} output channels requested; use 1 or 3", options.channels)
    } else if options.normalize.mean.len() != options.channels
        || options.normalize.std.len() != options.channels
    {
        format!(
            "normalize has {} means and {} stds for {} output channels",
            options.normalize.mean.len(),
            options.normalize.std.len(),
            options.channels
        )
    } else if options
        .normalize
        .std
        .iter()
        .chain(&options.normalize.mean)
        .any(|value| !value.is_finite())
        || options.normalize.std.contains(&0.0)
    {
        "normalize means and stds must be finite and stds non-zero".to_string()
    } else if !(options.crop_pct > 0.0 && options.crop_pct <= 1.0) {
        format!("crop_pct {} must be in (0, 1]", options.crop_pct)
    } else if !(0.0..=1.0).contains(&options.max_bad_fraction) {
        format!(
            "max_bad_fraction {} must be in [0, 1]",
            options.max_bad_fraction
        )
    } else if parts == 0 || part >= parts {
        format!("part {part} of {parts} does not exist")
    } else if let Some(Err(problem)) = options
        .augment
        .random_resized_crop
        .as_ref()
        .map(|crop| crop.validate())
    {
        problem
    } else {
        return source.validate();
    };
    Err(DataError::Argument(problem))
}

/// Everything needed to build any batch of one epoch, independently of the others.
struct EpochPlan {
    source: DataSource,
    options: LoaderOptions,
    epoch: u64,
    normalize: NormalizeTable,
}

impl EpochPlan {
    fn new(source: DataSource, options: LoaderOptions, epoch: usize) -> Self {
        EpochPlan {
            normalize: NormalizeTable::new(&options.normalize),
            source,
            options,
            epoch: epoch as u64,
        }
    }

    /// This part's sample indices in epoch order (random-access sources): a seeded
    /// permutation dealt out like cards, so the parts are disjoint. With `drop_last`
    /// (training) it is first cut to a multiple of the part count: every rank then steps
    /// equally often, and the k-th batches of all parts together are the k-th batch of a
    /// single process with their summed batch size. Evaluation keeps every sample.
    fn order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.source.len()).collect();
        if self.options.shuffle {
            order.shuffle(&mut seeded_rng([
                self.options.seed,
                self.epoch,
                0,
                ORDER_STREAM,
            ]));
        }
        let (part, parts) = self.options.part;
        if self.options.drop_last {
            order.truncate(order.len() / parts * parts);
        }
        order.into_iter().skip(part).step_by(parts).collect()
    }

    /// Builds a batch, turning a panic into an error so the training loop hears of it in turn.
    fn build_guarded(&self, job: Job) -> Result<Batch, DataError> {
        let index = job.index;
        catch_unwind(AssertUnwindSafe(|| self.build(job))).unwrap_or_else(|panic| {
            Err(DataError::Worker(format!(
                "building batch {index} panicked: {}",
                panic_message(panic.as_ref())
            )))
        })
    }

    fn build(&self, job: Job) -> Result<Batch, DataError> {
        let options = &self.options;
        let image_size = options.resolution * options.resolution * options.channels;
        let mut batch = Batch {
            images: vec![0.0; options.batch_size * image_size],
            labels: vec![0; options.batch_size],
            count: 0,
            index: job.index,
            bad: Vec::new(),
            origins: Vec::with_capacity(job.samples.len()),
        };
        let mut good = Vec::with_capacity(job.samples.len());
        let mut bad_keys = Vec::new();
        for (key, sample) in &job.samples {
            match self.fetch(sample) {
                Ok((pixels, label)) => {
                    self.place(&mut batch, pixels, label, *key);
                    batch.origins.push(self.origin(sample));
                    good.push(sample);
                }
                Err(bad) => {
                    batch.bad.push(bad);
                    bad_keys.push(*key);
                }
            }
        }
        if options.drop_last && !bad_keys.is_empty() {
            if good.is_empty() {
                return Err(DataError::AllBad {
                    batch: job.index,
                    last: batch.bad.pop(),
                });
            }
            // Full batches are required: each bad slot takes another view of a good sample.
            for (slot, key) in bad_keys.into_iter().enumerate() {
                let stand_in = good[slot % good.len()];
                let (pixels, label) = self
                    .fetch(stand_in)
                    .map_err(|bad| DataError::Worker(format!("{bad} on its second read")))?;
                self.place(&mut batch, pixels, label, key);
                batch.origins.push(self.origin(stand_in));
            }
        }
        Ok(batch)
    }

    /// Writes the transformed sample into the batch's next free slot.
    fn place(&self, batch: &mut Batch, pixels: Pixels, label: u32, key: u64) {
        let image_size = self.options.resolution.pow(2) * self.options.channels;
        let out = &mut batch.images[batch.count * image_size..][..image_size];
        self.transform(pixels, key, out);
        batch.labels[batch.count] = label;
        batch.count += 1;
    }

    fn origin(&self, sample: &SampleRef) -> String {
        match sample {
            SampleRef::Index(index) => self.source.origin(*index),
            SampleRef::Encoded(encoded) => encoded.origin.clone(),
        }
    }

    /// Reads and decodes one sample; a failure is a bad sample, named by its origin.
    fn fetch(&self, sample: &SampleRef) -> Result<(Pixels, u32), BadSample> {
        match sample {
            SampleRef::Index(index) => self.source.fetch(*index),
            SampleRef::Encoded(encoded) => decode_image(&encoded.bytes)
                .map(|pixels| (pixels, encoded.label))
                .map_err(|reason| BadSample {
                    origin: encoded.origin.clone(),
                    reason,
                }),
        }
    }

    /// The sample's view, augmentation and normalisation, drawn from its own random stream.
    fn transform(&self, pixels: Pixels, key: u64, out: &mut [f32]) {
        let options = &self.options;
        let mut rng = seeded_rng([options.seed, self.epoch, key, AUGMENT_STREAM]);
        let geometry = match &options.augment.random_resized_crop {
            Some(crop) => Geometry::Box(crop.draw(pixels.width, pixels.height, &mut rng)),
            None => Geometry::Centre {
                crop_pct: options.crop_pct,
            },
        };
        let mut pixels = view(pixels, options.channels, options.resolution, geometry);
        let placement = options.augment.draw(&mut rng);
        if let Some(factors) = options.augment.draw_jitter(&mut rng) {
            color_jitter(&mut pixels, options.channels, factors);
        }
        write_normalized(out, &pixels, options.resolution, placement, &self.normalize);
    }
}

/// Lists each batch's samples in order and deals the batches out to the workers.
enum Planner {
    /// Random access: the epoch's order, cut into batches.
    Indexed {
        plan: Arc<EpochPlan>,
        order: Vec<usize>,
    },
    /// Shards: the sequential stream, grouped into batches.
    Streamed {
        plan: Arc<EpochPlan>,
        stream: Box<ShardStream>,
    },
}

impl Planner {
    /// The planner and the number of batches it will produce.
    fn new(plan: &Arc<EpochPlan>) -> Result<(Planner, usize), DataError> {
        let options = &plan.options;
        Ok(match &plan.source {
            DataSource::Shards(set) => {
                let stream = ShardStream::new(
                    set,
                    options.seed,
                    plan.epoch as usize,
                    options.shuffle,
                    options.shuffle_buffer,
                    options.part,
                )?;
                let total = batch_count(stream.expected_len(), options);
                let plan = Arc::clone(plan);
                let stream = Box::new(stream);
                (Planner::Streamed { plan, stream }, total)
            }
            _ => {
                let mut order = plan.order();
                let total = batch_count(order.len(), options);
                // A partial last batch that drop_last skips is never planned.
                order.truncate(order.len().min(total * options.batch_size));
                let plan = Arc::clone(plan);
                (Planner::Indexed { plan, order }, total)
            }
        })
    }

    fn run(self, workers: &[SyncSender<Task>]) {
        let send = |index: usize, task: Task| workers[index % workers.len()].send(task).is_ok();
        match self {
            Planner::Indexed { plan, order } => {
                for (index, samples) in order.chunks(plan.options.batch_size).enumerate() {
                    let samples = samples
                        .iter()
                        .map(|&sample| (sample as u64, SampleRef::Index(sample)))
                        .collect();
                    if !send(index, Task::Build(Job { index, samples })) {
                        return;
                    }
                }
            }
            Planner::Streamed { plan, stream } => {
                let options = &plan.options;
                let (part, parts) = options.part;
                let mut samples = Vec::with_capacity(options.batch_size);
                let mut index = 0;
                for (position, item) in stream.enumerate() {
                    let encoded = match item {
                        Ok(encoded) => encoded,
                        Err(error) => {
                            send(index, Task::Fail(error));
                            return;
                        }
                    };
                    // Keys distinct across parts, so every rank augments differently.
                    let key = (position * parts + part) as u64;
                    samples.push((key, SampleRef::Encoded(encoded)));
                    if samples.len() == options.batch_size {
                        let job = Job {
                            index,
                            samples: std::mem::take(&mut samples),
                        };
                        if !send(index, Task::Build(job)) {
                            return;
                        }
                        index += 1;
                    }
                }
                if !samples.is_empty() && !options.drop_last {
                    send(index, Task::Build(Job { index, samples }));
                }
            }
        }
    }
}

/// A generator for one (seed, epoch, key, stream) tuple. The tuple is the 256-bit seed itself,
/// so distinct tuples can never collide.
fn seeded_rng(parts: [u64; 4]) -> StdRng {
    let mut seed = [0u8; 32];
    for (bytes, part) in seed.chunks_exact_mut(8).zip(parts) {
        bytes.copy_from_slice(&part.to_le_bytes());
    }
    StdRng::from_seed(seed)
}
