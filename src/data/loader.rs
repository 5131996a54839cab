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
use super::transform::{convert_channels, resize, write_normalized, Augment, Normalize};

/// Batches prepared ahead of the consumer. Two keep the GPU fed while bounding memory
/// (a 64 x 224 x 224 x 3 batch is 38 MB).
const PREFETCH_BATCHES: usize = 2;

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

/// Iterator over one epoch's batches, prepared on a background thread a couple of batches ahead.
///
/// Fully deterministic: the sample order is a permutation seeded by (seed, epoch) and every
/// augmentation decision by (seed, epoch, batch index), so batches never depend on thread timing
/// and a loader created for epoch `e` reproduces that epoch exactly (how training resumes).
/// Dropping the loader early stops the thread after the batch it is preparing.
pub struct BatchLoader {
    /// `None` once the epoch is over.
    receiver: Option<Receiver<Batch>>,
    worker: Option<JoinHandle<()>>,
    remaining: usize,
}

impl BatchLoader {
    /// Starts loading `epoch`. Panics with the [`BatchLoader::try_new`] message on invalid options.
    pub fn new(set: Arc<ImageSet>, options: LoaderOptions, epoch: usize) -> Self {
        Self::try_new(set, options, epoch).unwrap_or_else(|error| panic!("BatchLoader: {error}"))
    }

    /// Starts loading `epoch`, or explains why `set` and `options` cannot work together.
    pub fn try_new(
        set: Arc<ImageSet>,
        options: LoaderOptions,
        epoch: usize,
    ) -> Result<Self, DataError> {
        validate(&set, &options)?;
        let plan = EpochPlan::new(set, options, epoch);
        let total = plan.batch_count();
        let (sender, receiver) = sync_channel(PREFETCH_BATCHES);
        let worker = std::thread::Builder::new()
            .name("batch-loader".into())
            .spawn(move || {
                for index in 0..total {
                    // A send error means the loader was dropped: stop quietly.
                    if sender.send(plan.batch(index)).is_err() {
                        return;
                    }
                }
            })
            .map_err(DataError::Thread)?;
        Ok(BatchLoader {
            receiver: Some(receiver),
            worker: Some(worker),
            remaining: total,
        })
    }

    /// Closes the channel and waits for the worker, which then stops at its next send.
    fn stop_worker(&mut self) -> std::thread::Result<()> {
        self.receiver = None;
        self.worker.take().map_or(Ok(()), JoinHandle::join)
    }
}

impl Iterator for BatchLoader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        match self.receiver.as_ref()?.recv() {
            Ok(batch) => {
                self.remaining -= 1;
                Some(batch)
            }
            Err(_) => {
                // The worker ended. If it panicked, surface that instead of a silently short epoch.
                if let Err(panic) = self.stop_worker() {
                    std::panic::resume_unwind(panic);
                }
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for BatchLoader {}
impl FusedIterator for BatchLoader {}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        // A worker panic is ignored here: re-raising in drop could abort the process.
        let _ = self.stop_worker();
    }
}

fn validate(set: &ImageSet, options: &LoaderOptions) -> Result<(), DataError> {
    let problem = if options.batch_size == 0 {
        "batch_size is 0".to_string()
    } else if options.resolution == 0 {
        "resolution is 0".to_string()
    } else if ![1, 3].contains(&options.channels) {
        format!("{} output channels requested; use 1 or 3", options.channels)
    } else if ![1, 3].contains(&set.channels) {
        format!("the image set has {} channels; only 1 or 3 are supported", set.channels)
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
}

impl EpochPlan {
    fn new(set: Arc<ImageSet>, options: LoaderOptions, epoch: usize) -> Self {
        let epoch = epoch as u64;
        let mut order: Vec<usize> = (0..set.len()).collect();
        if options.shuffle {
            order.shuffle(&mut seeded_rng([options.seed, epoch, 0, ORDER_STREAM]));
        }
        EpochPlan {
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
                options.channels,
                placement,
                &options.normalize,
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
