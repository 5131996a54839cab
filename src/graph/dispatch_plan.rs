//! A compiled plan for a chain of layers described by their dispatches alone, outside
//! `GraphBuilder`: every tensor and parameter in a buffer of its own, all bind groups built
//! once, a batch run as one command buffer and one submit. The int8 network (issue 21) is
//! such a chain: its layers' dispatches come from `ops::int8_ops`, its parameters are
//! packed on the CPU (`ops::int8`), and its tensors are packed int8 (bytes, not floats), so
//! it does not go through the float graph's shapes, memory plan or parameter store.

use super::error::GraphError;
use super::memory::{pack_tensors, MemoryPlan, MemoryReport};
use super::plan::RunTiming;
use super::steps::{encode, staging_buffer, Step, StepBuilder};
use super::timestamps::{profile_steps, PassTimer};
use crate::gpu::{read_buffer_bytes, storage_buffer, Gpu};
use crate::ops::{Dispatch, Slot};

/// One layer of a `DispatchPlan`: its dispatches (binding `Slot::Input`, `Slot::Output`,
/// `Slot::Param(i)` and `Slot::Workspace`), the tensors it reads and writes, by index into
/// the plan's tensors, and the bytes of its parameters, `Slot::Param(i)` being `params[i]`.
#[derive(Clone, Debug)]
pub struct PlannedLayer {
    pub name: String,
    pub dispatches: Vec<Dispatch>,
    pub input: usize,
    pub output: usize,
    pub params: Vec<Vec<u8>>,
    /// Working memory its dispatches share through `Slot::Workspace` (one buffer serves
    /// every layer: it is dead after each).
    pub workspace_bytes: u64,
}

/// Each tensor's buffer (see `shared_tensors`), after checking that every tensor the layers,
/// the input and the outputs name exists.
fn tensor_buffers(
    gpu: &Gpu,
    tensor_bytes: &[u64],
    layers: &[PlannedLayer],
    input: usize,
    outputs: &[usize],
) -> Result<(Vec<wgpu::Buffer>, MemoryPlan), GraphError> {
    let named = layers
        .iter()
        .flat_map(|l| [(&*l.name, l.input), (&*l.name, l.output)]);
    let ends = std::iter::once(("input", input)).chain(outputs.iter().map(|&o| ("output", o)));
    if let Some((name, tensor)) = named.chain(ends).find(|(_, i)| *i >= tensor_bytes.len()) {
        return Err(GraphError::UnknownPlanTensor {
            layer: name.to_string(),
            tensor,
            count: tensor_bytes.len(),
        });
    }
    let memory = shared_tensors(tensor_bytes, layers, input, outputs);
    let buffers: Vec<wgpu::Buffer> = memory
        .buffer_bytes
        .iter()
        .enumerate()
        .map(|(i, &bytes)| storage_buffer(gpu, &format!("tensors {i}"), bytes))
        .collect();
    let tensors = memory
        .buffer_of
        .iter()
        .map(|&b| buffers[b].clone())
        .collect();
    Ok((tensors, memory))
}

/// Where each tensor lives: the layers run in order, each reading its input and writing
/// its output; the input and the outputs are pinned. A tensor no layer touches gets a
/// buffer of its own.
fn shared_tensors(
    tensor_bytes: &[u64],
    layers: &[PlannedLayer],
    input: usize,
    outputs: &[usize],
) -> MemoryPlan {
    let steps: Vec<[usize; 2]> = layers.iter().map(|l| [l.input, l.output]).collect();
    let mut memory = pack_tensors(tensor_bytes, &steps, &[input], outputs);
    for (tensor, &bytes) in tensor_bytes.iter().enumerate() {
        if memory.buffer_of[tensor] == usize::MAX {
            memory.buffer_bytes.push(bytes);
            memory.buffer_of[tensor] = memory.buffer_bytes.len() - 1;
        }
    }
    memory
}

/// A storage buffer holding `bytes` (zero-padded to whole words, as writes must be).
fn upload(gpu: &Gpu, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    let buffer = storage_buffer(gpu, label, bytes.len() as u64);
    let mut padded = bytes.to_vec();
    padded.resize(bytes.len().next_multiple_of(4), 0);
    gpu.queue().write_buffer(&buffer, 0, &padded);
    buffer
}

pub struct DispatchPlan {
    device: wgpu::Device,
    queue: wgpu::Queue,
    /// Each tensor's buffer: tensors whose lifetimes do not overlap share one.
    tensors: Vec<wgpu::Buffer>,
    tensor_bytes: Vec<u64>,
    activation_bytes: u64,
    live_peak: u64,
    /// Held so that the bind groups' buffers live as long as the plan.
    params: Vec<wgpu::Buffer>,
    workspace_bytes: u64,
    steps: Vec<Step>,
    input: usize,
    /// The tensors `run` reads back, and where each lands in the staging buffer.
    outputs: Vec<(usize, u64)>,
    staging: wgpu::Buffer,
    /// GPU timestamps around the pass, where the adapter has them (`run_timed`).
    timer: Option<PassTimer>,
}

impl DispatchPlan {
    /// Allocates `tensor_bytes.len()` tensors of those sizes, uploads every layer's
    /// parameters and builds its dispatches in order; `input` is the tensor `run` fills and
    /// `outputs` those it reads back.
    pub fn compile(
        gpu: &Gpu,
        tensor_bytes: &[u64],
        layers: &[PlannedLayer],
        input: usize,
        outputs: &[usize],
    ) -> Result<DispatchPlan, GraphError> {
        let (tensors, memory) = tensor_buffers(gpu, tensor_bytes, layers, input, outputs)?;
        let workspace_bytes = layers.iter().map(|l| l.workspace_bytes).max().unwrap_or(0);
        let workspace = storage_buffer(gpu, "workspace", workspace_bytes);
        let mut params = Vec::new();
        let mut builder = StepBuilder::new(gpu);
        for layer in layers {
            let (input, output) = (tensors[layer.input].clone(), tensors[layer.output].clone());
            let first = params.len();
            for (i, bytes) in layer.params.iter().enumerate() {
                params.push(upload(gpu, &format!("{} param {i}", layer.name), bytes));
            }
            let resolve = |slot: Slot| match slot {
                Slot::Input => Some(input.clone()),
                Slot::Output => Some(output.clone()),
                Slot::Workspace => Some(workspace.clone()),
                Slot::Param(i) if i < layer.params.len() => Some(params[first + i].clone()),
                _ => None,
            };
            for dispatch in &layer.dispatches {
                builder.add(&layer.name, dispatch, resolve)?;
            }
        }
        let (steps, _) = builder.finish()?;
        let mut staged = Vec::new();
        let mut staging_bytes = 0;
        for &output in outputs {
            staged.push((output, staging_bytes));
            staging_bytes += tensor_bytes[output].next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
        }
        let staging = staging_buffer(gpu.device(), "output staging", staging_bytes);
        Ok(DispatchPlan {
            device: gpu.device().clone(),
            queue: gpu.queue().clone(),
            tensors,
            tensor_bytes: tensor_bytes.to_vec(),
            activation_bytes: memory.buffer_bytes.iter().sum(),
            live_peak: memory.live_peak,
            params,
            workspace_bytes,
            steps,
            input,
            outputs: staged,
            staging,
            timer: PassTimer::new(gpu),
        })
    }

    /// The device memory it holds: the tensors' buffers (shared where their lifetimes
    /// allow), the parameters, and the workspace and output staging as `other`.
    pub fn memory(&self) -> MemoryReport {
        MemoryReport {
            activations: self.activation_bytes,
            activations_unshared: self.tensor_bytes.iter().sum(),
            activations_live_peak: self.live_peak,
            params: self.params.iter().map(wgpu::Buffer::size).sum(),
            training: 0,
            other: self.workspace_bytes + self.staging.size(),
        }
    }

    /// Dispatches, in the order they run.
    pub fn dispatch_count(&self) -> usize {
        self.steps.len()
    }

    /// Every dispatch in execution order, labelled as `Plan::kernels` labels them (the
    /// kernel chosen among alternatives in brackets).
    pub fn kernels(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.label().to_string()).collect()
    }

    /// Each dispatch timed on its own with GPU timestamps, labelled `"<layer> <shader>:<entry>"`
    /// (as `Plan::profile`), for finding the expensive ones.
    pub fn profile(
        &self,
        gpu: &Gpu,
        input: &[u8],
    ) -> Result<Vec<(String, std::time::Duration)>, GraphError> {
        self.upload_input(input)?;
        let steps: Vec<&Step> = self.steps.iter().collect();
        profile_steps(gpu, &steps)
    }

    fn upload_input(&self, input: &[u8]) -> Result<(), GraphError> {
        let expected = self.tensor_bytes[self.input] as usize;
        if input.len() != expected {
            return Err(GraphError::InputLength {
                got: input.len(),
                expected,
                shape: vec![expected],
            });
        }
        let mut padded = input.to_vec();
        padded.resize(input.len().next_multiple_of(4), 0);
        self.queue
            .write_buffer(&self.tensors[self.input], 0, &padded);
        Ok(())
    }

    /// Uploads `input` (the input tensor's bytes), runs every layer in one submit and
    /// returns the bytes of each output tensor, in the order `compile` was given them.
    pub fn run(&self, input: &[u8]) -> Result<Vec<Vec<u8>>, GraphError> {
        self.execute(input, None)
    }

    /// `run`, also reporting the wall-clock time since `start` (which the caller takes
    /// before whatever host work it counts, such as quantizing the input) and, where the
    /// adapter has timestamps, the GPU time of the pass alone.
    pub fn run_timed(
        &self,
        input: &[u8],
        start: std::time::Instant,
    ) -> Result<(Vec<Vec<u8>>, RunTiming), GraphError> {
        let outputs = self.execute(input, self.timer.as_ref())?;
        let gpu = match &self.timer {
            Some(timer) => Some(timer.elapsed(&self.device)?),
            None => None,
        };
        let timing = RunTiming {
            wall: start.elapsed(),
            gpu,
        };
        Ok((outputs, timing))
    }

    /// One submit of every layer, with timestamps around the pass where `timer` is given.
    fn execute(&self, input: &[u8], timer: Option<&PassTimer>) -> Result<Vec<Vec<u8>>, GraphError> {
        self.upload_input(input)?;
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("dispatch plan"),
                timestamp_writes: timer.map(PassTimer::pass_writes),
            });
            encode(&mut pass, &self.steps);
        }
        for &(tensor, offset) in &self.outputs {
            let copy = self.tensor_bytes[tensor].next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
            encoder.copy_buffer_to_buffer(&self.tensors[tensor], 0, &self.staging, offset, copy);
        }
        if let Some(timer) = timer {
            timer.resolve(&mut encoder);
        }
        self.queue.submit([encoder.finish()]);
        let all = read_buffer_bytes(&self.device, &self.staging, self.staging.size())?;
        Ok(self
            .outputs
            .iter()
            .map(|&(tensor, offset)| {
                let start = offset as usize;
                all[start..start + self.tensor_bytes[tensor] as usize].to_vec()
            })
            .collect())
    }
}
