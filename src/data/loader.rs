use std::borrow::Cow;
use std::iter::FusedIterator;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::error::DataError;
use super::image_set::ImageSet;
use super::transform::{
    convert_channels, resize, write_normalized, Augment, Normalize, NormalizeTable,
};

/// Most worker threads per loader. Resizing (e.g. 28 -> 224) costs about 1 ms per image, so
/// large resolutions need several cores; more than this would only add memory (a
/// 64 x 224 x 224 x 3 batch is 38 MB and each worker holds up to two).
const MAX_WORKERS: usize = 4;

/// Separate random streams, so the shuffle and the augmentation never share random numbers.
const ORDER_STREAM: u64 = 1;
const AUGMENT_STREAM: u64 = 2;

#[derive(Clone, Debug)]
pub struct LoaderOptions {
    pub batch_size: usize,
    /// Output height and width; images of another size are resized (triangle filter).
    pub resolution: usize,
    /// Output channels, 1 or 3: 1 -> 3 replicates grey, 3 -> 1 takes luminance.
    pub channels: usize,
    pub augment: Augment,
    /// One mean and std per output channel.
    pub normalize: Normalize,
    pub shuffle: bool,
    pub seed: u64,
    /// Skip the last batch if it would be partial.
    pub drop_last: bool,
}

/// One batch, always exactly `batch_size` images (NHWC f32). When fewer real samples remain
/// (`drop_last = false`) the rest are zeros with label 0 and `count` tells how many are real.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    pub labels: Vec<u32>,
    /// Real samples at the front of the batch.
    pub count: usize,
    /// Position of this batch in the epoch, from 0.
    pub index: usize,
}

/// Batches in one epoch of `len` samples.
pub fn batch_count(len: usize, options: &LoaderOptions) -> usize {
    match options.batch_size {
        0 => 0,
        size if options.drop_last => len / size,
        size => len.div_ceil(size),
    }
}

/// Iterator over one epoch's batches, prepared ahead on background threads.
///
/// Fully deterministic: the sample order is a permutation seeded by (seed, epoch) and every
/// augmentation decision by (seed, epoch, batch index), so batches never depend on thread timing
/// and a loader created for epoch `e` reproduces that epoch exactly (how training resumes).
///
/// Threads: by default `available_parallelism - 1` workers (1 to 4), leaving a core for the
/// caller; [`BatchLoader::try_with_workers`] sets the number. Worker `k` of `W` builds batches
/// `k, k + W, ...` into its own one-slot channel and the iterator reads the channels in turn, so
/// batches arrive in order and each worker runs at most two batches ahead (one waiting, one in
/// progress). Dropping the loader closes the channels and joins the workers, which stop after
/// the batch they are building.
pub struct BatchLoader {
    /// Batch `i` arrives on `receivers[i % receivers.len()]`.
    receivers: Vec<Receiver<Batch>>,
    workers: Vec<JoinHandle<()>>,
    next_index: usize,
    total: usize,
}

impl BatchLoader {
    /// Starts loading `epoch`. Panics with the [`BatchLoader::try_new`] message on invalid options.
    pub fn new(set: Arc<ImageSet>, options: LoaderOptions, epoch: usize) -> Self {
        Self::try_new(set, options, epoch).unwrap_or_else(|error| panic!("BatchLoader: {error}"))
    }

    /// Starts loading `epoch`, or explains why `set` and `options` cannot work together.
    /// Uses `available_parallelism - 1` worker threads (1 to 4).
    pub fn try_new(
        set: Arc<ImageSet>,
        options: LoaderOptions,
        epoch: usize,
    ) -> Result<Self, DataError> {
        let workers = std::thread::available_parallelism()
            .map_or(1, |cores| cores.get().saturating_sub(1))
            .clamp(1, MAX_WORKERS);
        Self::try_with_workers(set, options, epoch, workers)
    }

    /// Like [`BatchLoader::try_new`] with an explicit number of worker threads, e.g. 1 when the
    /// CPU also runs a software GPU. The batches are identical for any number of workers.
    pub fn try_with_workers(
        set: Arc<ImageSet>,
        options: LoaderOptions,
        epoch: usize,
        workers: usize,
    ) -> Result<Self, DataError> {
        validate(&set, &options)?;
        if workers == 0 {
            return Err(DataError::Argument(
                "0 worker threads requested".to_string(),
            ));
        }
        let plan = Arc::new(EpochPlan::new(set, options, epoch));
        let total = plan.batch_count();
        let worker_count = workers.min(total.max(1));
        // Built up in place so that a failed spawn drops (and so stops) the workers already started.
        let mut loader = BatchLoader {
            receivers: Vec::with_capacity(worker_count),
            workers: Vec::with_capacity(worker_count),
            next_index: 0,
            total,
        };
        for first_index in 0..worker_count {
            let (sender, receiver) = sync_channel(1);
            let plan = Arc::clone(&plan);
            let worker = std::thread::Builder::new()
                .name(format!("batch-loader-{first_index}"))
                .spawn(move || {
                    for index in (first_index..total).step_by(worker_count) {
                        // A send error means the loader was dropped: stop quietly.
                        if sender.send(plan.batch(index)).is_err() {
                            return;
                        }
                    }
                })
                .map_err(DataError::Thread)?;
            loader.receivers.push(receiver);
            loader.workers.push(worker);
        }
        Ok(loader)
    }
}

impl Iterator for BatchLoader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next_index >= self.total {
            return None;
        }
        let worker = self.next_index % self.receivers.len();
        match self.receivers[worker].recv() {
            Ok(batch) => {
                self.next_index += 1;
                Some(batch)
            }
            Err(_) => {
                // A worker only hangs up early by panicking: surface that instead of a short epoch.
                self.receivers.clear();
                self.next_index = self.total;
                if let Err(panic) = self.workers.swap_remove(worker).join() {
                    std::panic::resume_unwind(panic);
                }
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.total - self.next_index;
        (remaining, Some(remaining))
    }
}

impl ExactSizeIterator for BatchLoader {}
impl FusedIterator for BatchLoader {}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        // Closing the channels makes every blocked or future send fail, so the joins return.
        self.receivers.clear();
        for worker in self.workers.drain(..) {
            // A worker panic is ignored here: re-raising in drop could abort the process.
            let _ = worker.join();
        }
    }
}

fn validate(set: &ImageSet, options: &LoaderOptions) -> Result<(), DataError> {
    let problem = if options.batch_size == 0 {
        "batch_size is 0".to_string()
    } else if options.resolution == 0 || u32::try_from(options.resolution).is_err() {
        format!("resolution {} is out of range", options.resolution)
    } else if ![1, 3].contains(&options.channels) {
        format!("{} output channels requested; use 1 or 3", options.channels)
    } else if ![1, 3].contains(&set.channels) {
        format!(
            "the image set has {} channels; only 1 or 3 are supported",
            set.channels
        )
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
    } else if !set.is_empty() && (set.height == 0 || set.width == 0) {
        format!("the image set's images are {}x{}", set.height, set.width)
    } else if set.pixels.len() != set.len() * set.image_size() {
        format!(
            "the image set holds {} bytes of pixels for {} images of {} bytes",
            set.pixels.len(),
            set.len(),
            set.image_size()
        )
    } else {
        return Ok(());
    };
    Err(DataError::Argument(problem))
}

/// Everything needed to build any batch of one epoch, independently of the others.
struct EpochPlan {
    set: Arc<ImageSet>,
    options: LoaderOptions,
    epoch: u64,
    /// Sample indices in epoch order.
    order: Vec<usize>,
    normalize: NormalizeTable,
}

impl EpochPlan {
    fn new(set: Arc<ImageSet>, options: LoaderOptions, epoch: usize) -> Self {
        let epoch = epoch as u64;
        let mut order: Vec<usize> = (0..set.len()).collect();
        if options.shuffle {
            order.shuffle(&mut seeded_rng([options.seed, epoch, 0, ORDER_STREAM]));
        }
        EpochPlan {
            normalize: NormalizeTable::new(&options.normalize),
            set,
            options,
            epoch,
            order,
        }
    }

    fn batch_count(&self) -> usize {
        batch_count(self.order.len(), &self.options)
    }

    fn batch(&self, index: usize) -> Batch {
        let options = &self.options;
        let image_size = options.resolution * options.resolution * options.channels;
        let mut images = vec![0.0; options.batch_size * image_size];
        let mut labels = vec![0; options.batch_size];
        let start = index * options.batch_size;
        let samples = &self.order[start..(start + options.batch_size).min(self.order.len())];
        let mut rng = seeded_rng([options.seed, self.epoch, index as u64, AUGMENT_STREAM]);
        for ((&sample, out), label) in samples
            .iter()
            .zip(images.chunks_exact_mut(image_size))
            .zip(&mut labels)
        {
            let placement = options.augment.draw(&mut rng);
            write_normalized(
                out,
                &self.resized_image(sample),
                options.resolution,
                placement,
                &self.normalize,
            );
            *label = self.set.labels[sample];
        }
        Batch {
            images,
            labels,
            count: samples.len(),
            index,
        }
    }

    /// Image `sample` at the output resolution and channel count. Channels are reduced before
    /// resizing and expanded after it, so the resize always works on the fewest channels.
    fn resized_image(&self, sample: usize) -> Cow<'_, [u8]> {
        let set = &*self.set;
        let (resolution, out_channels) = (self.options.resolution, self.options.channels);
        let mut pixels = Cow::Borrowed(set.image(sample));
        let mut channels = set.channels;
        if out_channels < channels {
            pixels = Cow::Owned(convert_channels(&pixels, channels, out_channels));
            channels = out_channels;
        }
        if (set.height, set.width) != (resolution, resolution) {
            pixels = Cow::Owned(resize(
                &pixels,
                (set.height, set.width),
                channels,
                (resolution, resolution),
            ));
        }
        if out_channels > channels {
            pixels = Cow::Owned(convert_channels(&pixels, channels, out_channels));
        }
        pixels
    }
}

/// A generator for one (seed, epoch, batch, stream) tuple. The tuple is the 256-bit seed itself,
/// so distinct tuples can never collide.
fn seeded_rng(parts: [u64; 4]) -> StdRng {
    let mut seed = [0u8; 32];
    for (bytes, part) in seed.chunks_exact_mut(8).zip(parts) {
        bytes.copy_from_slice(&part.to_le_bytes());
    }
    StdRng::from_seed(seed)
}
