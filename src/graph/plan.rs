//! A compiled inference graph: every buffer planned once, bind groups built once, and a
//! dispatch list that runs a whole batch in one command buffer and one submit.

use super::chunks::node_chunks;
use super::param_buffers::ParamBuffers;
use super::steps::{
    encode, profile_steps, staging_buffer, tensor_bytes, BufferRange, PassTimer, Step, StepBuilder,
};
use super::{GraphBuilder, GraphError, ParamStore, TensorId};
use crate::gpu::{read_buffer_f32, storage_buffer, Gpu};
use crate::ops::Slot;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes the plan allocated on the GPU, by purpose.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct MemoryReport {
    /// Activation buffers after reuse of dead tensors (includes the input and outputs).
    pub activations: u64,
    /// What activations would take with one buffer per tensor (no reuse).
    pub activations_unshared: u64,
    /// The largest set of activations alive at once (an op's input and output plus
    /// everything still to be read): the least any reuse scheme could allocate.
    pub activations_live_peak: u64,
    pub params: u64,
    /// Gradients, optimizer state and reduction scratch (training plans only).
    pub training: u64,
    /// Uniform blocks, staging and timestamp buffers.
    pub other: u64,
}

impl MemoryReport {
    pub fn total(&self) -> u64 {
        self.activations + self.params + self.training + self.other
    }
}

/// How long one run took.
#[derive(Clone, Copy, Debug)]
pub struct RunTiming {
    /// Upload, dispatch, wait and read-back, measured on the CPU.
    pub wall: Duration,
    /// The compute pass alone, from GPU timestamps, where the adapter has them.
    pub gpu: Option<Duration>,
}

struct PlannedOutput {
    buffer: usize,
    len: usize,
    staging_offset: u64,
}

pub struct Plan {
    device: wgpu::Device,
    queue: wgpu::Queue,
    params: Arc<ParamBuffers>,
    input_buffer: usize,
    input_shape: Vec<usize>,
    activations: Vec<wgpu::Buffer>,
    steps: Vec<Step>,
    outputs: Vec<PlannedOutput>,
    staging: wgpu::Buffer,
    timer: Option<PassTimer>,
    memory: MemoryReport,
}

/// Which buffer each tensor lives in, reusing buffers of tensors no longer needed.
struct MemoryPlan {
    buffer_of: Vec<usize>,
    buffer_bytes: Vec<u64>,
    live_peak: u64,
}

fn plan_memory(graph: &GraphBuilder) -> MemoryPlan {
    let tensor_count = graph.tensors.len();
    // Position of the last op that reads each tensor; outputs and the input live forever.
    let mut last_use = vec![None; tensor_count];
    for (i, node) in graph.nodes.iter().enumerate() {
        last_use[node.input.0] = Some(i);
    }
    let pinned = |t: TensorId| graph.outputs.contains(&t) || graph.inputs.contains(&t);

    let mut buffer_of = vec![usize::MAX; tensor_count];
    let mut buffer_bytes: Vec<u64> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let (mut live, mut live_peak) = (0u64, 0u64);
    for &input in &graph.inputs {
        buffer_bytes.push(tensor_bytes(&graph.tensors[input.0].shape));
        buffer_of[input.0] = buffer_bytes.len() - 1;
        live += tensor_bytes(&graph.tensors[input.0].shape);
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        let need = tensor_bytes(&graph.tensors[node.output.0].shape);
        // Best fit among free buffers; otherwise grow the largest free one; otherwise a new one.
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, &b)| buffer_bytes[b] >= need)
            .min_by_key(|(_, &b)| buffer_bytes[b])
            .or_else(|| {
                free.iter()
                    .enumerate()
                    .max_by_key(|(_, &b)| buffer_bytes[b])
            })
            .map(|(slot, _)| slot);
        let buffer = match best {
            Some(slot) => free.swap_remove(slot),
            None => {
                buffer_bytes.push(0);
                buffer_bytes.len() - 1
            }
        };
        buffer_bytes[buffer] = buffer_bytes[buffer].max(need);
        buffer_of[node.output.0] = buffer;
        live += need;
        live_peak = live_peak.max(live);
        // Free the input only after the output is placed: an op never reads and writes
        // the same buffer.
        if last_use[node.input.0] == Some(i) && !pinned(node.input) {
            free.push(buffer_of[node.input.0]);
            live -= tensor_bytes(&graph.tensors[node.input.0].shape);
        }
        if last_use[node.output.0].is_none() && !pinned(node.output) {
            free.push(buffer);
            live -= need;
        }
    }
    MemoryPlan {
        buffer_of,
        buffer_bytes,
        live_peak,
    }
}

/// The workspace as a `check_binding_limit` entry.
pub(crate) fn workspace_entry(bytes: u64) -> (String, Vec<usize>, u64) {
    (
        "forward workspace".into(),
        vec![(bytes / 4) as usize],
        bytes,
    )
}

/// Refuses tensors larger than one storage binding may be, naming the largest batch
/// that would fit.
pub(crate) fn check_binding_limit(
    gpu: &Gpu,
    batch: usize,
    buffers: impl Iterator<Item = (String, Vec<usize>, u64)>,
) -> Result<(), GraphError> {
    let limit = (gpu.binding_limit(), "max_storage_buffer_binding_size");
    check_tensor_limit(batch, buffers, limit)
}

/// Refuses tensors larger than the adapter's largest buffer, naming the largest batch that
/// would fit: the bound for tensors that ops may bind in chunks.
pub(crate) fn check_buffer_limit(
    gpu: &Gpu,
    batch: usize,
    buffers: impl Iterator<Item = (String, Vec<usize>, u64)>,
) -> Result<(), GraphError> {
    let limit = (gpu.limits().max_buffer_size, "max_buffer_size");
    check_tensor_limit(batch, buffers, limit)
}

/// Refuses tensors larger than `limit` bytes, naming the largest batch that would fit.
fn check_tensor_limit(
    batch: usize,
    buffers: impl Iterator<Item = (String, Vec<usize>, u64)>,
    (limit, limit_name): (u64, &'static str),
) -> Result<(), GraphError> {
    for (name, shape, bytes) in buffers {
        if bytes > limit {
            let per_sample = (bytes / batch.max(1) as u64).max(1);
            return Err(GraphError::TooLarge {
                tensor: name,
                shape,
                bytes,
                limit,
                limit_name,
                max_batch: (limit / per_sample) as usize,
            });
        }
    }
    Ok(())
}

/// `shape` with another batch size.
pub(crate) fn with_batch(shape: &[usize], batch: usize) -> Vec<usize> {
    let mut shape = shape.to_vec();
    shape[0] = batch;
    shape
}

impl Plan {
    pub(super) fn compile(graph: &GraphBuilder, gpu: &Gpu) -> Result<Plan, GraphError> {
        Self::compile_with(graph, gpu, Arc::new(ParamBuffers::new(gpu, graph)?))
    }

    /// Compiles against existing parameter buffers (e.g. a training plan's, so that
    /// evaluation always sees the current weights).
    pub fn compile_with(
        graph: &GraphBuilder,
        gpu: &Gpu,
        params: Arc<ParamBuffers>,
    ) -> Result<Plan, GraphError> {
        if graph.inputs.len() != 1 {
            return Err(GraphError::InputCount(graph.inputs.len()));
        }
        if graph.outputs.is_empty() {
            return Err(GraphError::NoOutputs);
        }
        params.check_matches(graph)?;
        let batch = graph.tensors[graph.inputs[0].0].shape[0];
        // Ops bind their tensors in chunks where one binding cannot hold them, so the batch
        // is bounded by the largest buffer the adapter allocates.
        let (chunks, workspace_bytes) = node_chunks(gpu, graph, &graph.nodes, false)?;
        check_buffer_limit(
            gpu,
            batch,
            graph
                .tensors
                .iter()
                .map(|t| (t.name.clone(), t.shape.clone(), tensor_bytes(&t.shape)))
                .chain(std::iter::once(workspace_entry(workspace_bytes))),
        )?;
        let device = gpu.device().clone();
        let memory_plan = plan_memory(graph);
        let activations: Vec<wgpu::Buffer> = memory_plan
            .buffer_bytes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| storage_buffer(gpu, &format!("activation {i}"), bytes))
            .collect();
        let unused = storage_buffer(gpu, "unused binding", 16);
        let workspace = storage_buffer(gpu, "workspace", workspace_bytes);

        let mut builder = StepBuilder::new(gpu);
        let limit = gpu.binding_limit();
        for (node, chunks) in graph.nodes.iter().zip(&chunks) {
            let input = &graph.tensors[node.input.0].shape;
            let output = &graph.tensors[node.output.0].shape;
            let per_sample = |shape: &[usize]| tensor_bytes(shape) / batch.max(1) as u64;
            let act = |t: TensorId| &activations[memory_plan.buffer_of[t.0]];
            for range in &chunks.ranges {
                let part = |t: TensorId, shape: &[usize]| {
                    chunks.bind(act(t), range, per_sample(shape), limit)
                };
                let (input_part, output_part) = (
                    with_batch(input, range.len()),
                    with_batch(output, range.len()),
                );
                let label = if chunks.is_chunked() {
                    format!("{}[{}..{}]", node.name, range.start, range.end)
                } else {
                    node.name.clone()
                };
                for dispatch in node.kind.forward(&input_part, &output_part) {
                    builder.add(&label, &dispatch, |slot| match slot {
                        Slot::Input => Some(part(node.input, input)),
                        Slot::Output => Some(part(node.output, output)),
                        Slot::Param(i) => params
                            .buffer(&graph.params[node.params[i]].name)
                            .map(|b| BufferRange::from(b.clone())),
                        Slot::Unused => Some(unused.clone().into()),
                        Slot::Workspace => Some(workspace.clone().into()),
                        _ => None,
                    })?;
                }
            }
        }
        let (steps, uniform_bytes) = builder.finish()?;

        let mut staging_bytes = 0u64;
        let outputs: Vec<PlannedOutput> = graph
            .outputs
            .iter()
            .map(|&t| {
                let len = graph.tensors[t.0].shape.iter().product::<usize>();
                let planned = PlannedOutput {
                    buffer: memory_plan.buffer_of[t.0],
                    len,
                    staging_offset: staging_bytes,
                };
                staging_bytes += (len as u64 * 4).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
                planned
            })
            .collect();
        let staging = staging_buffer(&device, "output staging", staging_bytes);
        let timer = PassTimer::new(gpu);
        let memory = MemoryReport {
            activations: memory_plan.buffer_bytes.iter().sum(),
            activations_unshared: graph.tensors.iter().map(|t| tensor_bytes(&t.shape)).sum(),
            activations_live_peak: memory_plan.live_peak,
            params: params.bytes(),
            training: 0,
            other: uniform_bytes
                + staging.size()
                + workspace_bytes
                + 16
                + if timer.is_some() { 32 } else { 0 },
        };
        Ok(Plan {
            queue: gpu.queue().clone(),
            device,
            params,
            input_buffer: memory_plan.buffer_of[graph.inputs[0].0],
            input_shape: graph.tensors[graph.inputs[0].0].shape.clone(),
            activations,
            steps,
            outputs,
            staging,
            timer,
            memory,
        })
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    pub fn memory(&self) -> MemoryReport {
        self.memory
    }

    /// Number of compute dispatches in one run.
    pub fn dispatch_count(&self) -> usize {
        self.steps.len()
    }

    /// Every dispatch in execution order, as `<op> <shader>:<entry> [<kernel>]`: which
    /// kernel each layer runs (the bracket names the one chosen among alternatives).
    pub fn kernels(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.label().to_string()).collect()
    }

    /// The parameter buffers this plan reads.
    pub fn param_buffers(&self) -> &Arc<ParamBuffers> {
        &self.params
    }

    /// Uploads parameters; see `ParamBuffers::load`.
    pub fn load_params(&self, store: &ParamStore) -> Result<(), GraphError> {
        self.params.load(store)
    }

    /// Reads every parameter back from the GPU.
    pub fn read_params(&self) -> Result<ParamStore, GraphError> {
        self.params.read()
    }

    /// Runs one batch with every dispatch timed on its own; returns (step label, GPU time).
    pub fn profile(&self, gpu: &Gpu, input: &[f32]) -> Result<Vec<(String, Duration)>, GraphError> {
        check_input_len(input.len(), &self.input_shape)?;
        self.queue.write_buffer(
            &self.activations[self.input_buffer],
            0,
            bytemuck::cast_slice(input),
        );
        let steps: Vec<&Step> = self.steps.iter().collect();
        profile_steps(gpu, &steps)
    }

    /// Runs one batch and returns the graph outputs, in the order they were marked.
    pub fn run(&self, input: &[f32]) -> Result<Vec<Vec<f32>>, GraphError> {
        Ok(self.run_timed(input)?.0)
    }

    /// Uploads `input` and records the forward pass into `encoder` without submitting or
    /// reading anything back, so that another plan can consume the first output on the
    /// GPU in the same submit. Returns that output's buffer and its length in bytes.
    pub fn encode_forward(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        input: &[f32],
    ) -> Result<(&wgpu::Buffer, u64), GraphError> {
        check_input_len(input.len(), &self.input_shape)?;
        self.queue.write_buffer(
            &self.activations[self.input_buffer],
            0,
            bytemuck::cast_slice(input),
        );
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: None,
            });
            encode(&mut pass, &self.steps);
        }
        let output = &self.outputs[0];
        Ok((&self.activations[output.buffer], output.len as u64 * 4))
    }

    /// Like `run`, also reporting wall-clock and (where available) GPU time.
    pub fn run_timed(&self, input: &[f32]) -> Result<(Vec<Vec<f32>>, RunTiming), GraphError> {
        check_input_len(input.len(), &self.input_shape)?;
        let start = Instant::now();
        self.queue.write_buffer(
            &self.activations[self.input_buffer],
            0,
            bytemuck::cast_slice(input),
        );
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes: self.timer.as_ref().map(PassTimer::pass_writes),
            });
            encode(&mut pass, &self.steps);
        }
        for output in &self.outputs {
            encoder.copy_buffer_to_buffer(
                &self.activations[output.buffer],
                0,
                &self.staging,
                output.staging_offset,
                output.len as u64 * 4,
            );
        }
        if let Some(timer) = &self.timer {
            timer.resolve(&mut encoder);
        }
        self.queue.submit([encoder.finish()]);

        let total_len = (self.staging.size() / 4) as usize;
        let all = read_buffer_f32(&self.device, &self.staging, total_len)?;
        let results = self
            .outputs
            .iter()
            .map(|o| {
                let start = (o.staging_offset / 4) as usize;
                all[start..start + o.len].to_vec()
            })
            .collect();
        let gpu = match &self.timer {
            Some(timer) => Some(timer.elapsed(&self.device)?),
            None => None,
        };
        Ok((
            results,
            RunTiming {
                wall: start.elapsed(),
                gpu,
            },
        ))
    }
}

/// The error for an input of the wrong length.
pub(crate) fn check_input_len(got: usize, shape: &[usize]) -> Result<(), GraphError> {
    let expected = shape.iter().product::<usize>();
    if got == expected {
        Ok(())
    } else {
        Err(GraphError::InputLength {
            got,
            expected,
            shape: shape.to_vec(),
        })
    }
}
