//! Compiling a plan's entry points before its first dispatch, several at once where the
//! driver compiles on one thread per device.
//!
//! lavapipe turns a pipeline into machine code at its first dispatch, on the device's one
//! queue thread, and keeps the code in Mesa's disk cache: a plan's entry points compile one
//! after another, on one core (the default job's first run spent about 160 of its 175
//! seconds there). Devices opened through instances of their own each have a queue thread,
//! so helper devices compiling shares of the list at once (a dispatch of no workgroups
//! compiles without running anything) fill the cache while this device compiles its own
//! share; its first dispatch of a helper's entry point then loads the code from the cache.
//! Where the cache is off, this device compiles the helpers' shares again at first use: the
//! first run takes as long as it did without them, and no longer.
//!
//! Only software Vulkan adapters take helpers: a GPU driver (and WARP, the software DX12
//! one) compiles at pipeline creation, with caches of its own; neither was measured here
//! (no GPU was available).

use super::{CompiledEntry, Gpu, GpuError, Precompiled, Shader, GEMM_PROLOGUE_UNIFORM_BYTES};
use std::collections::{HashMap, HashSet};

/// At most this many devices compile at once (this one and its helpers): each helper is a
/// device of its own, with the driver's memory and threads. `MOBILENET_COMPILE_THREADS=N`
/// caps it further; 1 turns helpers off.
const MAX_COMPILERS: usize = 8;

impl Gpu {
    /// Compiles the entry points of `entries` this device has not compiled yet, in shares
    /// on this device and on helper devices at once (see the module's comment); returns
    /// nothing compiled where there would be no helper. Best effort: an entry point that
    /// fails here fails again, with its error, where a plan creates it.
    #[doc(hidden)]
    pub fn precompile(&self, entries: &[(Shader, &'static str)]) -> Precompiled {
        let todo = self.not_compiled(entries);
        let compilers = self.compilers_for(todo.len());
        if compilers < 2 {
            return Precompiled::default();
        }
        let start = std::time::Instant::now();
        let shares: Vec<Vec<(Shader, &'static str)>> = (0..compilers)
            .map(|k| todo.iter().skip(k).step_by(compilers).copied().collect())
            .collect();
        let (here, on_helpers) = std::thread::scope(|scope| {
            let helpers: Vec<_> = shares[1..]
                .iter()
                .map(|share| scope.spawn(move || compile_on_helper(self, share)))
                .collect();
            let here = self.compile_now(&shares[0]).unwrap_or(0);
            // This device's pipeline objects for the helpers' shares (its first dispatch of
            // each loads the code they leave in the cache), so that no later call compiles
            // them again; an error here is the plan's to report when it creates them.
            for &(shader, entry) in shares[1..].iter().flatten() {
                let _ = self.pipeline(shader, entry);
            }
            let on_helpers = helpers.into_iter().map(|h| h.join().unwrap_or(0)).sum();
            (here, on_helpers)
        });
        let call = Precompiled {
            here,
            on_helpers,
            seconds: start.elapsed().as_secs_f64(),
        };
        self.add_compiled_ahead(call);
        call
    }

    /// `entries` without repeats and without those this device has compiled.
    fn not_compiled(&self, entries: &[(Shader, &'static str)]) -> Vec<(Shader, &'static str)> {
        let mut seen = HashSet::new();
        entries
            .iter()
            .copied()
            .filter(|&(shader, entry)| seen.insert((shader, entry)))
            .filter(|&(shader, entry)| !self.has_pipeline(shader, entry))
            .collect()
    }

    /// Devices to compile `count` entry points on: one per core on a software Vulkan
    /// adapter.
    fn compilers_for(&self, count: usize) -> usize {
        if !self.is_software_vulkan() {
            return 1;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cap = self.compile_threads().unwrap_or(MAX_COMPILERS);
        cores.min(cap).min(MAX_COMPILERS).min(count)
    }

    /// Creates the pipelines of `entries` and dispatches each with no workgroups, which
    /// makes lavapipe compile it; waits until it has. Returns how many it compiled.
    fn compile_now(&self, entries: &[(Shader, &'static str)]) -> Result<usize, GpuError> {
        let compiled: Vec<CompiledEntry> = entries
            .iter()
            .map(|&(shader, entry)| self.pipeline(shader, entry))
            .collect::<Result<_, _>>()?;
        let scope = self
            .device()
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let mut placeholders = Placeholders::default();
        let groups: Vec<wgpu::BindGroup> = compiled
            .iter()
            .map(|c| placeholders.bind_group(self, c))
            .collect();
        let mut encoder = self.device().create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            for (c, group) in compiled.iter().zip(&groups) {
                pass.set_pipeline(&c.pipeline);
                pass.set_bind_group(0, group, &[]);
                pass.dispatch_workgroups(0, 0, 0);
            }
        }
        let commands = encoder.finish();
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Pipeline {
                pipeline: "precompile".into(),
                reason: error.to_string(),
            });
        }
        self.queue().submit([commands]);
        self.device()
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Pipeline {
                pipeline: "precompile".into(),
                reason: e.to_string(),
            })?;
        Ok(compiled.len())
    }
}

/// A helper device's share: how many it compiled (none where it could not open or fail).
fn compile_on_helper(gpu: &Gpu, share: &[(Shader, &'static str)]) -> usize {
    gpu.open_another()
        .and_then(|helper| helper.compile_now(share))
        .unwrap_or(0)
}

/// One buffer per binding number, bound whole to every entry point: nothing reads or writes
/// them (no workgroup runs), but every binding needs a buffer that fits its type, and a
/// binding may be a uniform block up to `GEMM_PROLOGUE_UNIFORM_BYTES` long.
#[derive(Default)]
struct Placeholders {
    buffers: HashMap<u32, wgpu::Buffer>,
}

impl Placeholders {
    fn bind_group(&mut self, gpu: &Gpu, compiled: &CompiledEntry) -> wgpu::BindGroup {
        for &binding in compiled.bindings.iter() {
            self.buffers.entry(binding).or_insert_with(|| {
                gpu.device().create_buffer(&wgpu::BufferDescriptor {
                    label: Some("precompile placeholder"),
                    size: GEMM_PROLOGUE_UNIFORM_BYTES,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::STORAGE,
                    mapped_at_creation: false,
                })
            });
        }
        let entries: Vec<wgpu::BindGroupEntry> = compiled
            .bindings
            .iter()
            .map(|binding| wgpu::BindGroupEntry {
                binding: *binding,
                resource: self.buffers[binding].as_entire_binding(),
            })
            .collect();
        gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("precompile"),
            layout: &compiled.pipeline.get_bind_group_layout(0),
            entries: &entries,
        })
    }
}
