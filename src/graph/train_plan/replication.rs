//! One data-parallel training step: the forward and backward passes cut where the replicas
//! must talk. Gradients leave the GPU in buckets, last layers first: each bucket's
//! gradients are copied into one flat staging buffer, read once, and summed over the
//! replicas with a non-blocking collective while the GPU goes on with the backward pass of
//! the earlier layers. Under sync-BN every batch norm also pools its partial sums with the
//! other replicas, forward and backward, before finishing its statistics.

use super::buffers::Buffers;
use super::layout::Layout;
use super::phases::{BnPass, Phases};
use crate::gpu::{read_buffer_f32, storage_buffer, Gpu, GpuError};
use crate::graph::buffer_range::BufferRange;
use crate::graph::builder::GraphBuilder;
use crate::graph::error::GraphError;
use crate::graph::param_buffers::ParamBuffers;
use crate::graph::replicas::{PendingSum, ReplicaError, Replicas, StepTiming};
use crate::graph::steps::{encode, staging_buffer, Step};
use crate::ops::{BnPartials, Slot};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A batch norm whose partial sums are pooled over the replicas (sync-BN).
struct BnSync {
    /// The step after which the partial sums are in `partials`.
    after: usize,
    pass: BnPass,
    partials: wgpu::Buffer,
    layout: BnPartials,
}

/// Parameter gradients that are final at the same point of the backward pass and travel
/// together.
struct Bucket {
    /// The step after which all of them are final.
    after: usize,
    /// Each gradient (its part of the flat gradient buffer) and its size, laid out back to
    /// back from `offset`.
    grads: Vec<(BufferRange, u64)>,
    /// Byte offset in the flat upload buffer.
    offset: u64,
    bytes: u64,
    staging: wgpu::Buffer,
}

pub(super) struct Replication {
    bn: Vec<BnSync>,
    buckets: Vec<Bucket>,
    bn_staging: wgpu::Buffer,
    /// All averaged gradients, flat, on their way back to the gradient buffers.
    upload: wgpu::Buffer,
}

/// A point of the step where the replicas exchange something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Point {
    BatchNorm(usize),
    Bucket(usize),
}

/// The parameter gradients in buckets of about `bucket_bytes`, in the order the backward
/// pass finishes them (each exchanged after the step that completes it), and their total
/// size.
fn gradient_buckets(
    gpu: &Gpu,
    layout: &Layout,
    buffers: &Buffers,
    phases: &Phases,
    bucket_bytes: u64,
) -> (Vec<Bucket>, u64) {
    let mut buckets: Vec<Bucket> = Vec::new();
    let mut open: Vec<(BufferRange, u64)> = Vec::new();
    let mut offset = 0;
    let mut close = |open: &mut Vec<(BufferRange, u64)>, after: usize, offset: &mut u64| {
        let bytes: u64 = open.iter().map(|(_, b)| b).sum();
        buckets.push(Bucket {
            after,
            grads: std::mem::take(open),
            offset: *offset,
            bytes,
            staging: staging_buffer(gpu.device(), "gradient bucket", bytes),
        });
        *offset += bytes;
    };
    for (i, node) in layout.nodes.iter().enumerate().rev() {
        for grad in node
            .params
            .iter()
            .filter_map(|p| buffers.param_grads.get(p))
        {
            let bytes = grad.shape.iter().product::<usize>() as u64 * 4;
            open.push((grad.range.clone(), bytes));
        }
        let open_bytes: u64 = open.iter().map(|(_, b)| b).sum();
        if open_bytes >= bucket_bytes || (i == 0 && !open.is_empty()) {
            close(&mut open, phases.backward_done[i], &mut offset);
        }
    }
    (buckets, offset)
}

/// The batch norms whose statistics or sums the replicas exchange, after which step.
fn bn_syncs(
    graph: &GraphBuilder,
    layout: &Layout,
    buffers: &Buffers,
    params: &ParamBuffers,
    phases: &Phases,
) -> Vec<BnSync> {
    phases
        .bn_exchanges
        .iter()
        .filter_map(|&(after, node, pass)| {
            let n = &layout.nodes[node];
            let input = graph.tensors[n.input.0].shape.as_slice();
            Some(BnSync {
                after,
                pass,
                partials: buffers
                    .node_slot(layout, params, graph, node, Slot::Scratch(1))?
                    .buffer,
                layout: n.kind.bn_partials(input)?,
            })
        })
        .collect()
}

fn partials_bytes(layout: &BnPartials) -> u64 {
    2 * (layout.chunks * layout.channels) as u64 * 4
}

impl Replication {
    /// Groups the parameter gradients into buckets of about `bucket_bytes` in the order the
    /// backward pass finishes them, and prepares the sync-BN exchanges `phases` asks for.
    pub fn new(
        gpu: &Gpu,
        graph: &GraphBuilder,
        layout: &Layout,
        buffers: &Buffers,
        params: &ParamBuffers,
        phases: &Phases,
        bucket_bytes: u64,
    ) -> Replication {
        let (buckets, total_bytes) = gradient_buckets(gpu, layout, buffers, phases, bucket_bytes);
        let bn = bn_syncs(graph, layout, buffers, params, phases);
        let largest_partials = bn.iter().map(|b| partials_bytes(&b.layout)).max();
        Replication {
            bn_staging: staging_buffer(
                gpu.device(),
                "batch-norm partials",
                largest_partials.unwrap_or(4),
            ),
            upload: storage_buffer(gpu, "averaged gradients", total_bytes),
            bn,
            buckets,
        }
    }

    /// Device memory it adds to the plan.
    pub fn bytes(&self) -> u64 {
        self.bn_staging.size()
            + self.upload.size()
            + self.buckets.iter().map(|b| b.staging.size()).sum::<u64>()
    }

    /// The exchanges in step order.
    fn points(&self) -> Vec<(usize, Point)> {
        let mut points: Vec<(usize, Point)> = self
            .bn
            .iter()
            .enumerate()
            .map(|(i, b)| (b.after, Point::BatchNorm(i)))
            .chain(
                self.buckets
                    .iter()
                    .enumerate()
                    .map(|(i, b)| (b.after, Point::Bucket(i))),
            )
            .collect();
        points.sort();
        points
    }

    /// Runs `steps[..end]` (forward, loss, backward; `encoder` already holds the step's
    /// input) with every exchange, then leaves the gradients averaged over the replicas in
    /// the upload buffer (see `encode_averaged`).
    pub fn forward_backward(
        &self,
        (device, queue): (&wgpu::Device, &wgpu::Queue),
        steps: &[Step],
        mut encoder: wgpu::CommandEncoder,
        end: usize,
        replicas: &dyn Replicas,
        start: Instant,
    ) -> Result<StepTiming, GraphError> {
        let mut flight = Flight::new(self.buckets.len());
        let mut cursor = 0;
        for (after, point) in self.points() {
            encode_range(&mut encoder, &steps[cursor..after]);
            cursor = after;
            match point {
                Point::Bucket(b) => self.send_bucket(queue, encoder, b, &mut flight),
                Point::BatchNorm(i) => {
                    self.sync_batch_norm((device, queue), encoder, i, replicas)?
                }
            }
            encoder = device.create_command_encoder(&Default::default());
            flight.progress(device, &self.buckets, replicas)?;
        }
        encode_range(&mut encoder, &steps[cursor..end]);
        queue.submit([encoder.finish()]);
        let (compute_end, sums) = flight.finish(device, &self.buckets, replicas)?;
        self.upload_averages(queue, sums, replicas.count());
        let bytes = self.buckets.iter().map(|b| b.bytes).sum();
        Ok(StepTiming::measure(
            start,
            compute_end,
            &flight.trips,
            bytes,
        ))
    }

    /// Submits the work so far with bucket `b`'s gradients copied to its staging buffer,
    /// and starts mapping it (the exchange goes on while the backward pass runs).
    fn send_bucket(
        &self,
        queue: &wgpu::Queue,
        mut encoder: wgpu::CommandEncoder,
        b: usize,
        flight: &mut Flight,
    ) {
        let bucket = &self.buckets[b];
        let mut at = 0;
        for (grad, bytes) in &bucket.grads {
            encoder.copy_buffer_to_buffer(&grad.buffer, grad.offset, &bucket.staging, at, *bytes);
            at += bytes;
        }
        queue.submit([encoder.finish()]);
        flight.map(b, &bucket.staging, bucket.bytes);
    }

    /// Submits the work so far, reads batch norm `i`'s partials back, pools them over the
    /// replicas and writes them back where the next steps read them.
    fn sync_batch_norm(
        &self,
        (device, queue): (&wgpu::Device, &wgpu::Queue),
        mut encoder: wgpu::CommandEncoder,
        i: usize,
        replicas: &dyn Replicas,
    ) -> Result<(), GraphError> {
        let sync = &self.bn[i];
        let bytes = partials_bytes(&sync.layout);
        encoder.copy_buffer_to_buffer(&sync.partials, 0, &self.bn_staging, 0, bytes);
        queue.submit([encoder.finish()]);
        let local = read_buffer_f32(device, &self.bn_staging, bytes as usize / 4)?;
        let pooled = match sync.pass {
            BnPass::Forward => pool_statistics(&local, &sync.layout, replicas),
            BnPass::Backward => pool_gradient_sums(&local, &sync.layout, replicas),
        }
        .map_err(|e| GraphError::Replicas(e.to_string()))?;
        queue.write_buffer(&sync.partials, 0, bytemuck::cast_slice(&pooled));
        Ok(())
    }

    /// The replicas' summed gradients, averaged, into the upload buffer.
    fn upload_averages(&self, queue: &wgpu::Queue, sums: Vec<Vec<f32>>, replicas: usize) {
        let scale = 1.0 / replicas as f32;
        for (bucket, mut sum) in self.buckets.iter().zip(sums) {
            sum.iter_mut().for_each(|g| *g *= scale);
            queue.write_buffer(&self.upload, bucket.offset, bytemuck::cast_slice(&sum));
        }
    }

    /// Copies the averaged gradients into the gradient buffers the update reads.
    pub fn encode_averaged(&self, encoder: &mut wgpu::CommandEncoder) {
        for bucket in &self.buckets {
            let mut at = bucket.offset;
            for (grad, bytes) in &bucket.grads {
                let (buffer, to) = (&grad.buffer, grad.offset);
                encoder.copy_buffer_to_buffer(&self.upload, at, buffer, to, *bytes);
                at += bytes;
            }
        }
    }
}

fn encode_range(encoder: &mut wgpu::CommandEncoder, steps: &[Step]) {
    if steps.is_empty() {
        return;
    }
    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("replicated train step"),
        timestamp_writes: None,
    });
    encode(&mut pass, steps);
}

const MAP_PENDING: u8 = 0;
const MAP_DONE: u8 = 1;
const MAP_FAILED: u8 = 2;

/// The buckets of one step on their way: mapped on the GPU side, then summed. Sums are
/// started strictly in bucket order, the same on every replica, as collectives must be.
struct Flight {
    mapped: Vec<Arc<AtomicU8>>,
    submitted: usize,
    started: usize,
    in_flight: Vec<(usize, Box<dyn PendingSum>, Instant)>,
    results: Vec<Option<Vec<f32>>>,
    /// (start, end) of every finished sum.
    trips: Vec<(Instant, Instant)>,
    last_ready: Option<Instant>,
}

impl Flight {
    fn new(buckets: usize) -> Flight {
        Flight {
            mapped: (0..buckets)
                .map(|_| Arc::new(AtomicU8::new(MAP_PENDING)))
                .collect(),
            submitted: 0,
            started: 0,
            in_flight: Vec::new(),
            results: (0..buckets).map(|_| None).collect(),
            trips: Vec::new(),
            last_ready: None,
        }
    }

    fn map(&mut self, bucket: usize, staging: &wgpu::Buffer, bytes: u64) {
        let flag = self.mapped[bucket].clone();
        flag.store(MAP_PENDING, Ordering::Release);
        staging
            .slice(..bytes.max(4))
            .map_async(wgpu::MapMode::Read, move |result| {
                let state = if result.is_ok() { MAP_DONE } else { MAP_FAILED };
                flag.store(state, Ordering::Release);
            });
        self.submitted += 1;
    }

    /// Starts the sums of buckets that have arrived and collects finished ones, without
    /// blocking; returns whether anything moved.
    fn progress(
        &mut self,
        device: &wgpu::Device,
        buckets: &[Bucket],
        replicas: &dyn Replicas,
    ) -> Result<bool, GraphError> {
        device
            .poll(wgpu::PollType::Poll)
            .map_err(|e| GpuError::Readback(format!("waiting for a gradient bucket: {e}")))?;
        let mut moved = false;
        while self.started < self.submitted {
            let bucket = &buckets[self.started];
            match self.mapped[self.started].load(Ordering::Acquire) {
                MAP_PENDING => break,
                MAP_FAILED => {
                    return Err(
                        GpuError::Readback("mapping a gradient bucket failed".into()).into(),
                    )
                }
                _ => {}
            }
            let slice = bucket.staging.slice(..bucket.bytes.max(4));
            let values: Vec<f32> = {
                let view = slice
                    .get_mapped_range()
                    .map_err(|e| GpuError::Readback(e.to_string()))?;
                bytemuck::pod_collect_to_vec(&view[..bucket.bytes as usize])
            };
            bucket.staging.unmap();
            let now = Instant::now();
            self.last_ready = Some(now);
            let pending = replicas.start_sum(values).map_err(replica_error)?;
            self.in_flight.push((self.started, pending, now));
            self.started += 1;
            moved = true;
        }
        let mut i = 0;
        while i < self.in_flight.len() {
            if !self.in_flight[i].1.test().map_err(replica_error)? {
                i += 1;
                continue;
            }
            let (bucket, pending, since) = self.in_flight.swap_remove(i);
            self.trips.push((since, Instant::now()));
            self.results[bucket] = Some(pending.wait().map_err(replica_error)?);
            moved = true;
        }
        Ok(moved)
    }

    /// Waits for every bucket's sum; returns when the last bucket left the GPU, and the
    /// sums in bucket order.
    fn finish(
        &mut self,
        device: &wgpu::Device,
        buckets: &[Bucket],
        replicas: &dyn Replicas,
    ) -> Result<(Instant, Vec<Vec<f32>>), GraphError> {
        while self.started < self.submitted || !self.in_flight.is_empty() {
            if !self.progress(device, buckets, replicas)? {
                // Leave the cores to the GPU driver (lavapipe runs on them) and MPI.
                std::thread::sleep(Duration::from_micros(50));
            }
        }
        let sums = self
            .results
            .iter_mut()
            .map(|r| r.take().unwrap_or_default());
        Ok((self.last_ready.unwrap_or_else(Instant::now), sums.collect()))
    }
}

fn replica_error(e: ReplicaError) -> GraphError {
    GraphError::Replicas(e.to_string())
}

/// Count, mean and sum of squared deviations merged (Chan et al.'s pairwise update).
fn merge(acc: (f64, f64, f64), part: (f64, f64, f64)) -> (f64, f64, f64) {
    let (n, mean, m2) = acc;
    let (n_b, mean_b, m2_b) = part;
    let total = n + n_b;
    if total == 0.0 {
        return acc;
    }
    let delta = mean_b - mean;
    (
        total,
        mean + delta * n_b / total,
        m2 + m2_b + delta * delta * n * n_b / total,
    )
}

/// Forward sync-BN: this replica's chunks merged, then every replica's merged in rank
/// order, returned as one chunk `[mean | m2]` for the pooled finalize stage.
fn pool_statistics(
    local: &[f32],
    layout: &BnPartials,
    replicas: &dyn Replicas,
) -> Result<Vec<f32>, ReplicaError> {
    let (c, chunks) = (layout.channels, layout.chunks);
    let mut mine = vec![0.0; 2 * c];
    for ch in 0..c {
        let mut acc = (0.0, 0.0, 0.0);
        for s in 0..chunks {
            let first = s * layout.rows_per_chunk;
            let n = (first + layout.rows_per_chunk).min(layout.rows) - first;
            let (mean, m2) = layout.pair(local, s, ch);
            acc = merge(acc, (n as f64, mean as f64, m2 as f64));
        }
        mine[ch] = acc.1;
        mine[c + ch] = acc.2;
    }
    let all = replicas.all_gather(&mine)?;
    let mut pooled = vec![0.0f32; 2 * c];
    for ch in 0..c {
        let acc = all.chunks(2 * c).fold((0.0, 0.0, 0.0), |acc, rank| {
            merge(acc, (layout.rows as f64, rank[ch], rank[c + ch]))
        });
        pooled[ch] = acc.1 as f32;
        pooled[c + ch] = acc.2 as f32;
    }
    Ok(pooled)
}

/// Backward sync-BN: sums of dz and dz * xhat over every replica's rows, divided by the
/// replica count. Each replica's loss is its own batch's mean, so its dz is the replica
/// count times its share of the global loss's gradient; dividing makes the parameter
/// gradients the replicas' average, like every other gradient, and the input gradient
/// (which divides by the local row count) exact.
fn pool_gradient_sums(
    local: &[f32],
    layout: &BnPartials,
    replicas: &dyn Replicas,
) -> Result<Vec<f32>, ReplicaError> {
    let (c, chunks) = (layout.channels, layout.chunks);
    let mut mine = vec![0.0; 2 * c];
    for s in 0..chunks {
        for ch in 0..c {
            let (sum_dz, sum_dz_xhat) = layout.pair(local, s, ch);
            mine[ch] += sum_dz as f64;
            mine[c + ch] += sum_dz_xhat as f64;
        }
    }
    let total = replicas.sum(&mine)?;
    let count = replicas.count() as f64;
    Ok(total.iter().map(|&v| (v / count) as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_statistics_match_one_pass_over_all_values() {
        let values: Vec<f64> = (0..37)
            .map(|i| ((i * 7919) % 101) as f64 * 0.37 - 11.0)
            .collect();
        let stats = |v: &[f64]| {
            let mean = v.iter().sum::<f64>() / v.len() as f64;
            let m2 = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>();
            (v.len() as f64, mean, m2)
        };
        let merged = values.chunks(8).map(stats).fold((0.0, 0.0, 0.0), merge);
        let whole = stats(&values);
        assert_eq!(merged.0, whole.0);
        assert!((merged.1 - whole.1).abs() < 1e-12);
        assert!((merged.2 - whole.2).abs() < 1e-9 * whole.2);
    }
}
