//! Calibration: the float (folded) network runs on the GPU over the user's images, through
//! the weights' own preprocessing, and every activation tensor the int8 model quantizes is
//! read back and summarised (`ActivationStats`).
//!
//! The intermediate tensors are read back by marking them as extra outputs of the folded
//! graph (`GraphBuilder::output`): a plan keeps its outputs in buffers of their own and
//! copies them out after the batch, so the calibration plan is the inference plan with
//! more read-back and no other change: the same kernels, the same values `predict` sees.

use super::error::QuantError;
use super::histogram::ActivationStats;
use super::tensors::activation_tensors;
use crate::data::{BatchLoader, DataSource, LoaderOptions};
use crate::gpu::Gpu;
use crate::graph::Plan;
use crate::model::fold_batchnorm;
use crate::weights::Pretrained;

/// Images calibration runs by default (the 1,000).
pub const DEFAULT_CALIBRATION_IMAGES: usize = 1000;
/// Images per submit: every intermediate tensor is read back, about 21 MB per image at
/// 224, so batches are kept smaller than inference's.
pub const DEFAULT_CALIBRATION_BATCH: usize = 16;

#[derive(Clone, Debug)]
pub struct CalibrationOptions {
    /// Images to run: the first N of the data set (spread over an image folder's classes;
    /// see `DataSource::limit`), all of them if it has fewer.
    pub images: usize,
    pub batch_size: usize,
    /// Decoding threads (0: cores - 1).
    pub workers: usize,
    /// Stop when more than this share of the files cannot be decoded.
    pub max_bad_fraction: f64,
}

impl Default for CalibrationOptions {
    fn default() -> Self {
        CalibrationOptions {
            images: DEFAULT_CALIBRATION_IMAGES,
            batch_size: DEFAULT_CALIBRATION_BATCH,
            workers: 0,
            max_bad_fraction: crate::data::DEFAULT_MAX_BAD_FRACTION,
        }
    }
}

/// What calibration saw.
#[derive(Clone, Debug)]
pub struct Calibration {
    /// Images that ran (bad files left out).
    pub images: usize,
    /// Files that could not be decoded.
    pub bad_files: Vec<String>,
    /// Every quantized activation tensor, in network order (the input first): its name
    /// and statistics over all images.
    pub tensors: Vec<(String, ActivationStats)>,
}

impl Calibration {
    pub fn stats(&self, tensor: &str) -> Option<&ActivationStats> {
        self.tensors
            .iter()
            .find(|(name, _)| name == tensor)
            .map(|(_, stats)| stats)
    }
}

/// Where calibration finds an activation tensor's values after a run.
struct ReadBack {
    name: String,
    /// The plan output holding it; `None` for the input, which the loader hands over.
    output: Option<usize>,
}

/// The folded network of `weights` for `batch` images with every quantized activation
/// marked as an output; returns the plan and, per activation tensor (input first), the
/// index of its output (`None` for the input, which the caller already holds).
fn calibration_plan(
    gpu: &Gpu,
    weights: &Pretrained,
    batch: usize,
) -> Result<(Plan, Vec<ReadBack>), QuantError> {
    let config = &weights.config;
    let mut model = config.build_folded(batch)?;
    let tensors = activation_tensors(&model.graph)?;
    for tensor in &tensors[1..] {
        model.graph.output(tensor.id)?;
    }
    let outputs = model.graph.outputs().to_vec();
    let slots = tensors
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let output = (i > 0).then(|| outputs.iter().position(|&o| o == t.id));
            ReadBack {
                name: t.name.clone(),
                output: output.flatten(),
            }
        })
        .collect();
    let plan = model.graph.compile(gpu)?;
    plan.load_params(&fold_batchnorm(&weights.params, config.bn_eps)?)?;
    Ok((plan, slots))
}

/// Runs the float network of `weights` over the first `options.images` images of `source`
/// (with the weights' preprocessing, as `eval` and `predict --data` feed it) and collects
/// the statistics of every activation tensor the int8 model quantizes. Files that cannot
/// be decoded are named on stderr and left out, as `eval` does.
pub fn calibrate(
    gpu: &Gpu,
    weights: &Pretrained,
    source: DataSource,
    options: &CalibrationOptions,
) -> Result<Calibration, QuantError> {
    let source = calibration_source(source, options)?;
    let batch_size = options.batch_size.min(source.len());
    let (plan, slots) = calibration_plan(gpu, weights, batch_size)?;
    let loader_options = LoaderOptions {
        workers: options.workers,
        max_bad_fraction: options.max_bad_fraction,
        ..weights.preprocess.loader_options(batch_size)
    };
    let mut stats = vec![ActivationStats::new(); slots.len()];
    let (mut images, mut bad_files) = (0, Vec::new());
    for batch in BatchLoader::new(source, loader_options, 0)? {
        let batch = batch?;
        for bad in &batch.bad {
            eprintln!("warning: skipped {bad}");
            bad_files.push(bad.origin.clone());
        }
        if batch.count == 0 {
            continue;
        }
        let outputs = plan.run(&batch.images)?;
        let values = read_back(&slots, &batch.images, &outputs, batch.count, batch_size);
        add_in_parallel(&mut stats, &values);
        images += batch.count;
    }
    let tensors: Vec<(String, ActivationStats)> =
        slots.into_iter().map(|slot| slot.name).zip(stats).collect();
    if let Some((name, s)) = tensors.iter().find(|(_, s)| s.non_finite > 0) {
        return Err(QuantError::NonFinite {
            tensor: name.clone(),
            count: s.non_finite,
        });
    }
    Ok(Calibration {
        images,
        bad_files,
        tensors,
    })
}

/// The first `options.images` images of `source`, refused where that leaves none.
fn calibration_source(
    source: DataSource,
    options: &CalibrationOptions,
) -> Result<DataSource, QuantError> {
    if options.images == 0 || options.batch_size == 0 {
        return Err(QuantError::Options(
            "calibration needs at least 1 image and a batch size of at least 1".into(),
        ));
    }
    let source = source.limit(options.images)?;
    if source.is_empty() {
        return Err(QuantError::Options(
            "the calibration data holds no images; point --data at images of the kind the \
             model will see"
                .into(),
        ));
    }
    Ok(source)
}

/// Each activation tensor's values for the `count` real images of a batch of
/// `batch_size`: short batches are padded with zero images, which must not count.
fn read_back<'a>(
    slots: &[ReadBack],
    input: &'a [f32],
    outputs: &'a [Vec<f32>],
    count: usize,
    batch_size: usize,
) -> Vec<&'a [f32]> {
    slots
        .iter()
        .map(|slot| {
            let all = slot.output.map_or(input, |i| outputs[i].as_slice());
            &all[..count * (all.len() / batch_size)]
        })
        .collect()
}

/// `stats[i].add(values[i])` for every tensor, spread over the cores (tensor i on thread
/// i mod threads, as the large tensors come first): at 224 a batch holds about 5 million
/// values per image, and the histograms would otherwise take longer than the GPU.
fn add_in_parallel(stats: &mut [ActivationStats], values: &[&[f32]]) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut shares: Vec<Vec<(&mut ActivationStats, &[f32])>> =
        (0..threads).map(|_| Vec::new()).collect();
    for (i, pair) in stats.iter_mut().zip(values.iter().copied()).enumerate() {
        shares[i % threads].push(pair);
    }
    std::thread::scope(|scope| {
        for share in shares {
            scope.spawn(move || {
                for (s, v) in share {
                    s.add(v);
                }
            });
        }
    });
}
