//! A compiled inference graph: every buffer planned once, bind groups built once, and a
//! dispatch list that runs a whole batch in one command buffer and one submit.

use super::buffer_range::BufferRange;
use super::builder::GraphBuilder;
use super::chunks::{node_chunks, BatchChunks};
use super::error::GraphError;
use super::forward_pairs::{forward_pairs, runs_in_previous};
use super::limits::{check_buffer_limit, workspace_entry};
use super::memory::{plan_memory, MemoryPlan, MemoryReport};
use super::node::{Node, TensorId};
use super::param_buffers::ParamBuffers;
use super::params::ParamStore;
use super::shapes::{check_input_len, tensor_bytes, with_batch};
use super::steps::{encode, staging_buffer, Step, StepBuilder};
use super::timestamps::{profile_steps, PassTimer};
use crate::gpu::{read_buffer_f32, storage_buffer, uniform_storage_buffer, Gpu};
use crate::ops::{Dispatch, Slot};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// The buffers forward dispatches bind besides the parameters.
struct ForwardBuffers<'a> {
    memory_plan: &'a MemoryPlan,
    activations: &'a [wgpu::Buffer],
    unused: &'a wgpu::Buffer,
    workspace: &'a wgpu::Buffer,
}

impl ForwardBuffers<'_> {
    fn activation(&self, t: TensorId) -> &wgpu::Buffer {
        &self.activations[self.memory_plan.buffer_of[t.0]]
    }
}

impl GraphBuilder {
    /// Plans buffers, builds bind groups and the dispatch list on `gpu`.
    pub fn compile(&self, gpu: &Gpu) -> Result<Plan, GraphError> {
        Plan::compile(self, gpu)
    }
}

/// Refuses graphs an inference plan cannot run: one input, at least one output, and
/// parameter buffers that match.
fn check_graph(graph: &GraphBuilder, params: &ParamBuffers) -> Result<(), GraphError> {
    if graph.inputs.len() != 1 {
        return Err(GraphError::InputCount(graph.inputs.len()));
    }
    if graph.outputs.is_empty() {
        return Err(GraphError::NoOutputs);
    }
    params.check_matches(graph)
}

/// Adds every node's forward dispatches, one set per chunk of the batch (none for an op
/// that only reshapes), and each pair of nodes that runs as one dispatch (`pairs`) once.
fn add_forward_steps(
    builder: &mut StepBuilder,
    graph: &GraphBuilder,
    params: &ParamBuffers,
    chunks: &[BatchChunks],
    pairs: &[Option<Dispatch>],
    buffers: &ForwardBuffers,
) -> Result<(), GraphError> {
    for (i, (node, chunks)) in graph.nodes.iter().zip(chunks).enumerate() {
        let input = &graph.tensors[node.input.0].shape;
        // Its output is its input's buffer (plan_memory), or the node before runs it.
        if node.kind.only_reshapes(input) || runs_in_previous(pairs, i) {
            continue;
        }
        match &pairs[i] {
            Some(pair) => {
                let next = &graph.nodes[i + 1];
                add_pair_step(builder, graph, params, [node, next], pair, buffers)?;
            }
            None => add_node_steps(builder, graph, params, node, chunks, buffers)?,
        }
    }
    Ok(())
}

/// One node's forward dispatches, one set per chunk of the batch.
fn add_node_steps(
    builder: &mut StepBuilder,
    graph: &GraphBuilder,
    params: &ParamBuffers,
    node: &Node,
    chunks: &BatchChunks,
    buffers: &ForwardBuffers,
) -> Result<(), GraphError> {
    let batch = graph.tensors[graph.inputs[0].0].shape[0];
    let input = &graph.tensors[node.input.0].shape;
    let output = &graph.tensors[node.output.0].shape;
    let per_sample = |shape: &[usize]| tensor_bytes(shape) / batch.max(1) as u64;
    for range in &chunks.ranges {
        let part = |t: TensorId, shape: &[usize]| {
            chunks.bind(buffers.activation(t), range, per_sample(shape))
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
                Slot::Param(i) => param_range(graph, params, node, i),
                Slot::Unused => Some(buffers.unused.clone().into()),
                Slot::Workspace => Some(buffers.workspace.clone().into()),
                _ => None,
            })?;
        }
    }
    Ok(())
}

/// The dispatch of two nodes that run as one (`forward_pairs`), over the whole batch: the
/// first node's input and parameters, the second's output and, for the epilogue, its
/// parameters.
fn add_pair_step(
    builder: &mut StepBuilder,
    graph: &GraphBuilder,
    params: &ParamBuffers,
    [first, second]: [&Node; 2],
    dispatch: &Dispatch,
    buffers: &ForwardBuffers,
) -> Result<(), GraphError> {
    let whole = |t: TensorId| {
        let shape = &graph.tensors[t.0].shape;
        let batch = shape[0];
        BatchChunks::whole(batch).bind(
            buffers.activation(t),
            &(0..batch),
            tensor_bytes(shape) / batch.max(1) as u64,
        )
    };
    let label = format!("{}+{}", first.name, second.name);
    builder.add(&label, dispatch, |slot| match slot {
        Slot::Input => Some(whole(first.input)),
        Slot::Output => Some(whole(second.output)),
        Slot::Param(i) => param_range(graph, params, first, i),
        Slot::EpilogueParam(i) => param_range(graph, params, second, i),
        Slot::Unused => Some(buffers.unused.clone().into()),
        _ => None,
    })
}

/// The buffer of `node`'s `i`th parameter.
fn param_range(
    graph: &GraphBuilder,
    params: &ParamBuffers,
    node: &Node,
    i: usize,
) -> Option<BufferRange> {
    params.range(&graph.params[node.params[i]].name)
}

/// Where each graph output is read from and where it lands in the staging buffer; and the
/// staging buffer's size.
fn plan_outputs(graph: &GraphBuilder, memory_plan: &MemoryPlan) -> (Vec<PlannedOutput>, u64) {
    let mut staging_bytes = 0u64;
    let outputs = graph
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
    (outputs, staging_bytes)
}

/// The chunks each op binds its tensors in (where one binding cannot hold them) and the
/// workspace they need, once every tensor is known to fit the largest buffer the adapter
/// allocates: that bounds the batch.
fn chunks_within_limits(
    gpu: &Gpu,
    graph: &GraphBuilder,
) -> Result<(Vec<BatchChunks>, u64), GraphError> {
    let batch = graph.tensors[graph.inputs[0].0].shape[0];
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
    Ok((chunks, workspace_bytes))
}

/// What an inference plan holds beside activations and parameters.
struct OtherBytes {
    uniforms: u64,
    staging: u64,
    /// The workspace and the placeholder binding.
    bindings: u64,
    timer: u64,
}

fn forward_memory(
    graph: &GraphBuilder,
    memory_plan: &MemoryPlan,
    params: &ParamBuffers,
    other: OtherBytes,
) -> MemoryReport {
    MemoryReport {
        activations: memory_plan.buffer_bytes.iter().sum(),
        activations_unshared: graph.tensors.iter().map(|t| tensor_bytes(&t.shape)).sum(),
        activations_live_peak: memory_plan.live_peak,
        params: params.bytes(),
        training: 0,
        other: other.uniforms + other.staging + other.bindings + other.timer,
    }
}

impl Plan {
    fn compile(graph: &GraphBuilder, gpu: &Gpu) -> Result<Plan, GraphError> {
        Self::compile_with(graph, gpu, Arc::new(ParamBuffers::new(gpu, graph)?))
    }

    /// Compiles against existing parameter buffers (e.g. a training plan's, so that
    /// evaluation always sees the current weights).
    pub fn compile_with(
        graph: &GraphBuilder,
        gpu: &Gpu,
        params: Arc<ParamBuffers>,
    ) -> Result<Plan, GraphError> {
        check_graph(graph, &params)?;
        let (chunks, workspace_bytes) = chunks_within_limits(gpu, graph)?;
        let device = gpu.device().clone();
        let pairs = forward_pairs(gpu, graph, &chunks);
        let memory_plan = plan_memory(graph, &pairs);
        let activations: Vec<wgpu::Buffer> = memory_plan
            .buffer_bytes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| storage_buffer(gpu, &format!("activation {i}"), bytes))
            .collect();
        let unused = uniform_storage_buffer(gpu, "unused binding", 16);
        let workspace = storage_buffer(gpu, "workspace", workspace_bytes);
        let buffers = ForwardBuffers {
            memory_plan: &memory_plan,
            activations: &activations,
            unused: &unused,
            workspace: &workspace,
        };
        let mut builder = StepBuilder::new(gpu);
        add_forward_steps(&mut builder, graph, &params, &chunks, &pairs, &buffers)?;
        let (steps, uniform_bytes) = builder.finish()?;

        let (outputs, staging_bytes) = plan_outputs(graph, &memory_plan);
        let staging = staging_buffer(&device, "output staging", staging_bytes);
        let timer = PassTimer::new(gpu);
        let memory = forward_memory(
            graph,
            &memory_plan,
            &params,
            OtherBytes {
                uniforms: uniform_bytes,
                staging: staging.size(),
                bindings: workspace.size() + unused.size(),
                timer: timer.as_ref().map_or(0, PassTimer::bytes),
            },
        );
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
