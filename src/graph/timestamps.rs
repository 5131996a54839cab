//! GPU timestamps around compute passes: one pass (`PassTimer`) or every step in a pass
//! of its own (`profile_steps`).

use super::error::GraphError;
use super::steps::{encode, staging_buffer, Step};
use crate::gpu::{read_buffer_bytes, Gpu, GpuError};
use std::time::Duration;

/// Timestamp queries for `passes` compute passes (one at the beginning and one at the end
/// of each) and the buffers that carry them back.
struct PassStamps {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    passes: u32,
    period_ns: f32,
}

impl PassStamps {
    fn new(device: &wgpu::Device, label: &str, passes: u32, period_ns: f32) -> PassStamps {
        let bytes = Self::bytes_for(passes);
        PassStamps {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some(label),
                ty: wgpu::QueryType::Timestamp,
                count: 2 * passes,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: staging_buffer(device, label, bytes),
            passes,
            period_ns,
        }
    }

    fn bytes_for(passes: u32) -> u64 {
        2 * passes as u64 * 8
    }

    fn pass_writes(&self, pass: u32) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(2 * pass),
            end_of_pass_write_index: Some(2 * pass + 1),
        }
    }

    /// Call after the passes, before submitting.
    fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        let bytes = Self::bytes_for(self.passes);
        encoder.resolve_query_set(&self.queries, 0..2 * self.passes, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, bytes);
    }

    /// Each pass's time; call after the submission completed.
    fn pass_times(&self, device: &wgpu::Device) -> Result<Vec<Duration>, GraphError> {
        let raw = read_buffer_bytes(device, &self.readback, Self::bytes_for(self.passes))?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
        Ok(ticks
            .chunks_exact(2)
            .map(|pair| {
                let ns = pair[1].saturating_sub(pair[0]) as f64 * self.period_ns as f64;
                Duration::from_nanos(ns as u64)
            })
            .collect())
    }

    fn bytes(&self) -> u64 {
        self.resolve.size() + self.readback.size()
    }
}

/// Times every step on its own: one compute pass per step with timestamps around it.
/// Slower than a normal run (no overlap between passes), for finding the expensive steps.
pub(crate) fn profile_steps(
    gpu: &Gpu,
    steps: &[&Step],
) -> Result<Vec<(String, Duration)>, GraphError> {
    let period = gpu.timestamp_period_ns().ok_or_else(|| {
        GraphError::Gpu(GpuError::Pipeline {
            pipeline: "profile".into(),
            reason: "this adapter has no timestamp queries".into(),
        })
    })?;
    let device = gpu.device();
    let stamps = PassStamps::new(device, "step timestamps", steps.len().max(1) as u32, period);
    let mut encoder = device.create_command_encoder(&Default::default());
    for (i, step) in steps.iter().enumerate() {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(step.label()),
            timestamp_writes: Some(stamps.pass_writes(i as u32)),
        });
        encode(&mut pass, std::slice::from_ref(*step));
    }
    stamps.resolve(&mut encoder);
    gpu.queue().submit([encoder.finish()]);
    let times = stamps.pass_times(device)?;
    Ok(steps
        .iter()
        .zip(times)
        .map(|(step, time)| (step.label().to_string(), time))
        .collect())
}

/// GPU timestamps around a compute pass, where the adapter supports them.
pub(crate) struct PassTimer {
    stamps: PassStamps,
}

impl PassTimer {
    pub fn new(gpu: &Gpu) -> Option<PassTimer> {
        gpu.timestamp_period_ns().map(|period_ns| PassTimer {
            stamps: PassStamps::new(gpu.device(), "pass timestamps", 1, period_ns),
        })
    }

    pub fn pass_writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        self.stamps.pass_writes(0)
    }

    /// Call after the pass, before submitting.
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        self.stamps.resolve(encoder);
    }

    /// Call after the submission completed.
    pub fn elapsed(&self, device: &wgpu::Device) -> Result<Duration, GraphError> {
        let times = self.stamps.pass_times(device)?;
        Ok(times.first().copied().unwrap_or_default())
    }

    /// Device memory it holds.
    pub fn bytes(&self) -> u64 {
        self.stamps.bytes()
    }
}
