//! Turning op dispatches into ready-to-encode steps: uniform blocks packed into one
//! buffer, pipelines from the cache, bind groups built once.

use super::buffer_range::BufferRange;
use super::error::GraphError;
use super::kernel_choice;
use super::traffic::StepTraffic;
use crate::gpu::{CompiledEntry, Gpu};
use crate::ops::{Dispatch, Slot};

/// One pre-built dispatch.
pub(crate) struct Step {
    /// "<op name> <shader>:<entry>", for profiles.
    label: String,
    pipeline: std::sync::Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    /// Bytes its bindings read and write, counted when it was built.
    traffic: StepTraffic,
}

struct Pending {
    label: String,
    compiled: CompiledEntry,
    uniform_offset: u64,
    uniform_size: u64,
    buffers: Vec<(u32, BufferRange)>,
    workgroups: [u32; 3],
    traffic: StepTraffic,
}

/// Collects dispatches, then builds all of them at once (the uniform buffer has to
/// exist before any bind group that points into it).
pub(crate) struct StepBuilder<'a> {
    gpu: &'a Gpu,
    uniform_bytes: Vec<u8>,
    pending: Vec<Pending>,
}

impl<'a> StepBuilder<'a> {
    pub fn new(gpu: &'a Gpu) -> Self {
        StepBuilder {
            gpu,
            uniform_bytes: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Number of steps added so far (for recording phase boundaries).
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Adds one dispatch; `resolve` maps each slot the shader reads to a buffer (or a
    /// `BufferRange` of one).
    pub fn add<R: Into<BufferRange>>(
        &mut self,
        label: &str,
        dispatch: &Dispatch,
        resolve: impl Fn(Slot) -> Option<R>,
    ) -> Result<(), GraphError> {
        let resolve = |slot| resolve(slot).map(Into::into);
        let (dispatch, kernel) = kernel_choice::choose(self.gpu, label, dispatch, &resolve)?;
        let compiled = self.gpu.pipeline(dispatch.shader, dispatch.entry)?;
        let buffers = kernel_choice::bind(label, &dispatch, &compiled, &resolve)?;
        let traffic = StepTraffic::of(&dispatch, &compiled, &buffers);
        let alignment = self.gpu.limits().min_uniform_buffer_offset_alignment as u64;
        let offset = (self.uniform_bytes.len() as u64).next_multiple_of(alignment);
        self.uniform_bytes.resize(offset as usize, 0);
        self.uniform_bytes.extend_from_slice(&dispatch.uniform);
        let kernel = kernel.map(|name| format!(" [{name}]")).unwrap_or_default();
        self.pending.push(Pending {
            label: format!("{label} {}:{}{kernel}", dispatch.shader, dispatch.entry),
            compiled,
            uniform_offset: offset,
            uniform_size: dispatch.uniform.len() as u64,
            buffers,
            workgroups: dispatch.workgroups,
            traffic,
        });
        Ok(())
    }

    /// Creates the uniform buffer and every bind group; returns the steps and the
    /// uniform buffer's size in bytes.
    pub fn finish(self) -> Result<(Vec<Step>, u64), GraphError> {
        // The choices stay in effect for this process even where the cache cannot be written.
        if let Err(error) = self.gpu.save_tuning() {
            eprintln!("warning: {error}");
        }
        let device = self.gpu.device();
        let uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniform blocks"),
            size: (self.uniform_bytes.len() as u64)
                .max(16)
                .next_multiple_of(16),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.gpu
            .queue()
            .write_buffer(&uniform, 0, &self.uniform_bytes);
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let steps: Vec<Step> = self
            .pending
            .iter()
            .map(|p| {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &uniform,
                        offset: p.uniform_offset,
                        size: wgpu::BufferSize::new(p.uniform_size),
                    }),
                }];
                entries.extend(
                    p.buffers
                        .iter()
                        .map(|(binding, range)| wgpu::BindGroupEntry {
                            binding: *binding,
                            resource: wgpu::BindingResource::Buffer(range.binding()),
                        }),
                );
                Step {
                    label: p.label.clone(),
                    pipeline: p.compiled.pipeline.clone(),
                    bind_group: device.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(&p.label),
                        layout: &p.compiled.pipeline.get_bind_group_layout(0),
                        entries: &entries,
                    }),
                    workgroups: p.workgroups,
                    traffic: p.traffic,
                }
            })
            .collect();
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(GraphError::Gpu(crate::gpu::GpuError::Pipeline {
                pipeline: "bind groups".into(),
                reason: error.to_string(),
            }));
        }
        Ok((steps, uniform.size()))
    }
}

impl Step {
    /// "<op name> <shader>:<entry>", with " [<kernel>]" where the kernel was chosen among
    /// alternatives.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Bytes this dispatch reads and writes (see `traffic`).
    pub fn traffic(&self) -> &StepTraffic {
        &self.traffic
    }
}

/// Records steps into a compute pass.
pub(crate) fn encode(pass: &mut wgpu::ComputePass<'_>, steps: &[Step]) {
    for step in steps {
        pass.set_pipeline(&step.pipeline);
        pass.set_bind_group(0, &step.bind_group, &[]);
        let [x, y, z] = step.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// Times every step on its own: one compute pass per step with timestamps around it.
/// Slower than a normal run (no overlap between passes), for finding the expensive steps.
pub(crate) fn profile_steps(
    gpu: &Gpu,
    steps: &[&Step],
) -> Result<Vec<(String, std::time::Duration)>, GraphError> {
    let period = gpu.timestamp_period_ns().ok_or_else(|| {
        GraphError::Gpu(crate::gpu::GpuError::Pipeline {
            pipeline: "profile".into(),
            reason: "this adapter has no timestamp queries".into(),
        })
    })?;
    let device = gpu.device();
    let count = (2 * steps.len()).max(2) as u32;
    let queries = device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("step timestamps"),
        ty: wgpu::QueryType::Timestamp,
        count,
    });
    let bytes = count as u64 * 8;
    let resolve = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("step timestamp resolve"),
        size: bytes,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let readback = staging_buffer(device, "step timestamp readback", bytes);
    let mut encoder = device.create_command_encoder(&Default::default());
    for (i, step) in steps.iter().enumerate() {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(&step.label),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &queries,
                beginning_of_pass_write_index: Some(2 * i as u32),
                end_of_pass_write_index: Some(2 * i as u32 + 1),
            }),
        });
        encode(&mut pass, std::slice::from_ref(*step));
    }
    encoder.resolve_query_set(&queries, 0..count, &resolve, 0);
    encoder.copy_buffer_to_buffer(&resolve, 0, &readback, 0, bytes);
    gpu.queue().submit([encoder.finish()]);
    let raw = crate::gpu::read_buffer_bytes(device, &readback, bytes)?;
    let tick = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&raw[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    Ok(steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let ns = tick(2 * i + 1).saturating_sub(tick(2 * i)) as f64 * period as f64;
            (
                step.label.clone(),
                std::time::Duration::from_nanos(ns as u64),
            )
        })
        .collect())
}

/// GPU timestamps around a compute pass, where the adapter supports them.
pub(crate) struct PassTimer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f32,
}

impl PassTimer {
    pub fn new(gpu: &Gpu) -> Option<PassTimer> {
        let device = gpu.device();
        gpu.timestamp_period_ns().map(|period_ns| PassTimer {
            queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("pass timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamp resolve"),
                size: 16,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamp readback"),
                size: 16,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            period_ns,
        })
    }

    pub fn pass_writes(&self) -> wgpu::ComputePassTimestampWrites<'_> {
        wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(0),
            end_of_pass_write_index: Some(1),
        }
    }

    /// Call after the pass, before submitting.
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        encoder.resolve_query_set(&self.queries, 0..2, &self.resolve, 0);
        encoder.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, 16);
    }

    /// Call after the submission completed.
    pub fn elapsed(&self, device: &wgpu::Device) -> Result<std::time::Duration, GraphError> {
        let raw = crate::gpu::read_buffer_bytes(device, &self.readback, 16)?;
        let tick = |i: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&raw[i * 8..i * 8 + 8]);
            u64::from_le_bytes(bytes)
        };
        let ns = tick(1).saturating_sub(tick(0)) as f64 * self.period_ns as f64;
        Ok(std::time::Duration::from_nanos(ns as u64))
    }
}

/// A MAP_READ buffer to copy results into.
pub(crate) fn staging_buffer(device: &wgpu::Device, label: &str, bytes: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}
