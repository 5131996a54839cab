//! Turning op dispatches into ready-to-encode steps: uniform blocks packed into one
//! buffer, pipelines from the cache, bind groups built once.

use super::buffer_range::BufferRange;
use super::error::GraphError;
use super::kernel_choice;
use super::traffic::StepTraffic;
use crate::gpu::{dispatch_bind_group, uniform_buffer, CompiledEntry, Gpu};
use crate::ops::{BatchNorm, Dispatch, KernelCaps, Slot};

/// One pre-built dispatch.
pub(crate) struct Step {
    /// "<op name> <shader>:<entry>", for profiles ("<op>+<op>" where two ops' work shares
    /// the dispatch).
    label: String,
    pipeline: std::sync::Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    /// Bytes its bindings read and write, counted when it was built.
    traffic: StepTraffic,
}

/// A dispatch as added, its slots resolved: kernels are chosen in `finish`, once every
/// entry point the plan may compile is known (`Gpu::precompile`).
struct Queued {
    label: String,
    dispatch: Dispatch,
    slots: Vec<(Slot, Option<BufferRange>)>,
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
    queued: Vec<Queued>,
    /// Whether `add` may run a dispatch in the last one's place (`BatchNorm::finalize_beside`).
    merge_reductions: bool,
}

impl<'a> StepBuilder<'a> {
    pub fn new(gpu: &'a Gpu) -> Self {
        StepBuilder {
            gpu,
            uniform_bytes: Vec::new(),
            queued: Vec::new(),
            merge_reductions: false,
        }
    }

    /// Lets `add` run a batch norm's backward finalize stage in the same dispatch as the
    /// weight-gradient sums added just before it, where neither touches the other's
    /// buffers: for plans whose steps are not cut between the two (sync-BN exchanges the
    /// batch norm's partials before its finalize).
    pub fn merging_reductions(mut self) -> Self {
        self.merge_reductions = true;
        self
    }

    /// Number of steps added so far (for recording phase boundaries).
    pub fn len(&self) -> usize {
        self.queued.len()
    }

    /// Adds one dispatch; `resolve` maps each slot the shader reads to a buffer (or a
    /// `BufferRange` of one). Where `merging_reductions` allows, a dispatch independent of
    /// the last one added joins it (`BatchNorm::finalize_beside`) and `len` stays.
    pub fn add<R: Into<BufferRange>>(
        &mut self,
        label: &str,
        dispatch: &Dispatch,
        resolve: impl Fn(Slot) -> Option<R>,
    ) -> Result<(), GraphError> {
        let resolve = |slot| resolve(slot).map(Into::into);
        if let Some((merged, beside)) = self.beside_last(dispatch, &resolve) {
            let last = self
                .queued
                .pop()
                .expect("beside_last found a last dispatch");
            let label = format!("{label}+{}", last.label);
            return self.queue(&label, &merged, |slot| {
                let found = beside.iter().find(|(s, _)| *s == slot);
                found.map_or_else(|| resolve(slot), |(_, range)| Some(range.clone()))
            });
        }
        self.queue(label, dispatch, resolve)
    }

    /// `dispatch` merged with the last dispatch added, and what the merged dispatch's slots
    /// for the last one's buffers receive, where the two may share a dispatch: a known
    /// pair, and no buffer bound by both.
    fn beside_last(
        &self,
        dispatch: &Dispatch,
        resolve: &dyn Fn(Slot) -> Option<BufferRange>,
    ) -> Option<(Dispatch, Vec<(Slot, BufferRange)>)> {
        let last = self.queued.last().filter(|_| self.merge_reductions)?;
        let (merged, slots) = BatchNorm::finalize_beside(dispatch, &last.dispatch)?;
        let bound = |(merged_slot, last_slot): (Slot, Slot)| {
            let (_, range) = last.slots.iter().find(|(s, _)| *s == last_slot)?;
            Some((merged_slot, range.clone()?))
        };
        let beside = slots.into_iter().map(bound).collect::<Option<Vec<_>>>()?;
        let own: Vec<BufferRange> = dispatch
            .bindings
            .iter()
            .filter_map(|&(_, slot)| resolve(slot))
            .collect();
        let shared = own
            .iter()
            .any(|r| beside.iter().any(|(_, b)| b.overlaps(r)));
        (!shared).then_some((merged, beside))
    }

    fn queue(
        &mut self,
        label: &str,
        dispatch: &Dispatch,
        resolve: impl Fn(Slot) -> Option<BufferRange>,
    ) -> Result<(), GraphError> {
        // Every slot a candidate kernel may bind, not only the default's.
        let alternatives = crate::ops::alternatives(dispatch, &KernelCaps::of(self.gpu));
        let candidates = alternatives.iter().flat_map(|a| &a.candidates);
        let mut slots: Vec<(Slot, Option<BufferRange>)> = Vec::new();
        let bound = std::iter::once(dispatch).chain(candidates.map(|c| &c.dispatch));
        for &(_, slot) in bound.flat_map(|d| &d.bindings) {
            if !slots.iter().any(|(s, _)| *s == slot) {
                slots.push((slot, resolve(slot)));
            }
        }
        self.queued.push(Queued {
            label: label.to_string(),
            dispatch: dispatch.clone(),
            slots,
        });
        Ok(())
    }

    /// Chooses the kernel of one queued dispatch (timing the candidates where the tuner
    /// has no choice yet) and prepares its bindings and uniform block.
    fn prepare(&mut self, queued: &Queued) -> Result<Pending, GraphError> {
        let resolve = |slot: Slot| {
            let found = queued.slots.iter().find(|(s, _)| *s == slot);
            found.and_then(|(_, range)| range.clone())
        };
        let label = queued.label.as_str();
        let (dispatch, kernel) =
            kernel_choice::choose(self.gpu, label, &queued.dispatch, &resolve)?;
        let compiled = self.gpu.pipeline(dispatch.shader, dispatch.entry)?;
        let buffers = kernel_choice::bind(label, &dispatch, &compiled, &resolve)?;
        let traffic = StepTraffic::of(&dispatch, &compiled, &buffers);
        let alignment = self.gpu.limits().min_uniform_buffer_offset_alignment as u64;
        let offset = (self.uniform_bytes.len() as u64).next_multiple_of(alignment);
        self.uniform_bytes.resize(offset as usize, 0);
        self.uniform_bytes.extend_from_slice(&dispatch.uniform);
        let kernel = kernel.map(|name| format!(" [{name}]")).unwrap_or_default();
        Ok(Pending {
            label: format!("{label} {}:{}{kernel}", dispatch.shader, dispatch.entry),
            compiled,
            uniform_offset: offset,
            uniform_size: dispatch.uniform.len() as u64,
            buffers,
            workgroups: dispatch.workgroups,
            traffic,
        })
    }

    /// Chooses every queued dispatch's kernel, the entry points it will need compiled
    /// ahead and at once (`Gpu::precompile`), then creates the uniform buffer and every
    /// bind group; returns the steps and the uniform buffer's size in bytes.
    pub fn finish(mut self) -> Result<(Vec<Step>, u64), GraphError> {
        let entries: Vec<_> = self
            .queued
            .iter()
            .flat_map(|q| kernel_choice::entries_to_compile(self.gpu, &q.dispatch))
            .collect();
        self.gpu.precompile(&entries);
        let queued = std::mem::take(&mut self.queued);
        let pending = queued
            .iter()
            .map(|q| self.prepare(q))
            .collect::<Result<Vec<_>, _>>()?;
        // The choices stay in effect for this process even where the cache cannot be written.
        if let Err(error) = self.gpu.save_tuning() {
            eprintln!("warning: {error}");
        }
        let uniform = uniform_buffer(self.gpu, "uniform blocks", &self.uniform_bytes);
        let scope = self
            .gpu
            .device()
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let steps: Vec<Step> = pending
            .iter()
            .map(|p| Step {
                label: p.label.clone(),
                pipeline: p.compiled.pipeline.clone(),
                bind_group: dispatch_bind_group(
                    self.gpu,
                    &p.label,
                    &p.compiled,
                    wgpu::BufferBinding {
                        buffer: &uniform,
                        offset: p.uniform_offset,
                        size: wgpu::BufferSize::new(p.uniform_size),
                    },
                    p.buffers.iter().map(|(b, range)| (*b, range.binding())),
                ),
                workgroups: p.workgroups,
                traffic: p.traffic,
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

/// A MAP_READ buffer to copy results into.
pub(crate) fn staging_buffer(device: &wgpu::Device, label: &str, bytes: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes.max(4).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}
