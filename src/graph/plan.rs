//! A compiled graph: every buffer planned once, bind groups built once, and a dispatch
//! list that runs a whole batch in one command buffer and one submit.

use super::{GraphBuilder, GraphError, ParamStore, TensorId};
use crate::gpu::{read_buffer_bytes, read_buffer_f32, storage_buffer, Gpu};
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
    pub params: u64,
    /// Uniform blocks, staging and timestamp buffers.
    pub other: u64,
}

impl MemoryReport {
    pub fn total(&self) -> u64 {
        self.activations + self.params + self.other
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

struct Step {
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
}

struct PlannedParam {
    name: String,
    shape: Vec<usize>,
    buffer: wgpu::Buffer,
}

struct PlannedOutput {
    buffer: usize,
    len: usize,
    staging_offset: u64,
}

struct Timestamps {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    period_ns: f32,
}

pub struct Plan {
    device: wgpu::Device,
    queue: wgpu::Queue,
    input_buffer: usize,
    input_shape: Vec<usize>,
    activations: Vec<wgpu::Buffer>,
    params: Vec<PlannedParam>,
    steps: Vec<Step>,
    outputs: Vec<PlannedOutput>,
    staging: wgpu::Buffer,
    timestamps: Option<Timestamps>,
    memory: MemoryReport,
}

/// Which buffer each tensor lives in, reusing buffers of tensors no longer needed.
struct MemoryPlan {
    buffer_of: Vec<usize>,
    buffer_bytes: Vec<u64>,
}

fn tensor_bytes(shape: &[usize]) -> u64 {
    shape.iter().product::<usize>() as u64 * 4
}

fn plan_memory(graph: &GraphBuilder) -> MemoryPlan {
    let tensor_count = graph.tensors.len();
    // Position of the last op that reads each tensor; outputs and the input live forever.
    let mut last_use = vec![0usize; tensor_count];
    for (i, node) in graph.nodes.iter().enumerate() {
        last_use[node.input.0] = i;
    }
    let pinned = |t: TensorId| graph.outputs.contains(&t) || graph.inputs.contains(&t);

    let mut buffer_of = vec![usize::MAX; tensor_count];
    let mut buffer_bytes: Vec<u64> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    for &input in &graph.inputs {
        buffer_bytes.push(tensor_bytes(&graph.tensors[input.0].shape));
        buffer_of[input.0] = buffer_bytes.len() - 1;
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
        // Free the input only after the output is placed: an op never reads and writes
        // the same buffer.
        if last_use[node.input.0] == i && !pinned(node.input) {
            free.push(buffer_of[node.input.0]);
        }
        if !graph.nodes[i + 1..].iter().any(|n| n.input == node.output) && !pinned(node.output) {
            free.push(buffer);
        }
    }
    MemoryPlan {
        buffer_of,
        buffer_bytes,
    }
}

fn check_binding_limits(graph: &GraphBuilder, gpu: &Gpu) -> Result<(), GraphError> {
    let limits = gpu.limits();
    let limit = limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size);
    let param_shapes = graph.params.iter().map(|p| (&p.name, &p.shape));
    let tensor_shapes = graph.tensors.iter().map(|t| (&t.name, &t.shape));
    for (name, shape) in tensor_shapes.chain(param_shapes) {
        let bytes = tensor_bytes(shape);
        if bytes > limit {
            let batch = graph
                .inputs
                .first()
                .map(|i| graph.tensors[i.0].shape[0])
                .unwrap_or(1);
            let per_sample = bytes / batch.max(1) as u64;
            return Err(GraphError::TooLarge {
                tensor: name.clone(),
                shape: shape.clone(),
                bytes,
                limit,
                max_batch: (limit / per_sample.max(1)) as usize,
            });
        }
    }
    Ok(())
}

impl Plan {
    pub(super) fn compile(graph: &GraphBuilder, gpu: &Gpu) -> Result<Plan, GraphError> {
        if graph.inputs.len() != 1 {
            return Err(GraphError::InputCount(graph.inputs.len()));
        }
        if graph.outputs.is_empty() {
            return Err(GraphError::NoOutputs);
        }
        check_binding_limits(graph, gpu)?;
        let device = gpu.device().clone();
        let memory_plan = plan_memory(graph);
        let activations: Vec<wgpu::Buffer> = memory_plan
            .buffer_bytes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| storage_buffer(gpu, &format!("activation {i}"), bytes))
            .collect();
        let params: Vec<PlannedParam> = graph
            .params
            .iter()
            .map(|p| PlannedParam {
                name: p.name.clone(),
                shape: p.shape.clone(),
                buffer: storage_buffer(gpu, &p.name, tensor_bytes(&p.shape)),
            })
            .collect();
        let unused = storage_buffer(gpu, "unused binding", 16);

        // All uniform blocks live in one buffer, each at an aligned offset.
        let alignment = gpu.limits().min_uniform_buffer_offset_alignment as u64;
        let dispatches: Vec<_> = graph
            .nodes
            .iter()
            .map(|node| {
                let input = &graph.tensors[node.input.0].shape;
                let output = &graph.tensors[node.output.0].shape;
                node.kind.forward(input, output)
            })
            .collect();
        let mut uniform_bytes = Vec::new();
        let mut uniform_offsets = Vec::new();
        for dispatch in dispatches.iter().flatten() {
            let offset = (uniform_bytes.len() as u64).next_multiple_of(alignment);
            uniform_bytes.resize(offset as usize, 0);
            uniform_bytes.extend_from_slice(&dispatch.uniform);
            uniform_offsets.push(offset);
        }
        let uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("uniform blocks"),
            size: (uniform_bytes.len() as u64).max(16).next_multiple_of(16),
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        gpu.queue().write_buffer(&uniform, 0, &uniform_bytes);

        let mut steps = Vec::new();
        let mut uniform_index = 0;
        for (node, node_dispatches) in graph.nodes.iter().zip(&dispatches) {
            for dispatch in node_dispatches {
                let pipeline = gpu.pipeline(dispatch.shader, dispatch.entry)?;
                let slot_buffer = |slot: &Slot| match *slot {
                    Slot::Input => &activations[memory_plan.buffer_of[node.input.0]],
                    Slot::Output => &activations[memory_plan.buffer_of[node.output.0]],
                    Slot::Param(i) => &params[node.params[i]].buffer,
                    Slot::Unused => &unused,
                };
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &uniform,
                        offset: uniform_offsets[uniform_index],
                        size: wgpu::BufferSize::new(dispatch.uniform.len() as u64),
                    }),
                }];
                for (i, slot) in dispatch.slots.iter().enumerate() {
                    entries.push(wgpu::BindGroupEntry {
                        binding: i as u32 + 1,
                        resource: slot_buffer(slot).as_entire_binding(),
                    });
                }
                let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(&node.name),
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &entries,
                });
                steps.push(Step {
                    pipeline,
                    bind_group,
                    workgroups: dispatch.workgroups,
                });
                uniform_index += 1;
            }
        }

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
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("output staging"),
            size: staging_bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        let timestamps = gpu.timestamp_period_ns().map(|period_ns| Timestamps {
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
        });

        let memory = MemoryReport {
            activations: memory_plan.buffer_bytes.iter().sum(),
            activations_unshared: graph.tensors.iter().map(|t| tensor_bytes(&t.shape)).sum(),
            params: graph.params.iter().map(|p| tensor_bytes(&p.shape)).sum(),
            other: uniform.size() + staging.size() + 16 + if timestamps.is_some() { 32 } else { 0 },
        };
        let plan = Plan {
            queue: gpu.queue().clone(),
            device,
            input_buffer: memory_plan.buffer_of[graph.inputs[0].0],
            input_shape: graph.tensors[graph.inputs[0].0].shape.clone(),
            activations,
            params,
            steps,
            outputs,
            staging,
            timestamps,
            memory,
        };
        plan.load_params(&ParamStore::initialize(graph, 0))?;
        Ok(plan)
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

    /// Uploads parameters. Every tensor of the plan must be present with its shape;
    /// all problems are reported together. Extra tensors in `store` are an error too.
    pub fn load_params(&self, store: &ParamStore) -> Result<(), GraphError> {
        let mut problems = Vec::new();
        for param in &self.params {
            match (store.shape(&param.name), store.get(&param.name)) {
                (Some(shape), Some(values)) => {
                    let expected = param.shape.iter().product::<usize>();
                    if shape != param.shape.as_slice() || values.len() != expected {
                        problems.push(format!(
                            "{}: expected shape {:?}, got {:?} with {} values",
                            param.name,
                            param.shape,
                            shape,
                            values.len()
                        ));
                    }
                }
                _ => problems.push(format!("{}: missing (shape {:?})", param.name, param.shape)),
            }
        }
        for (name, _, _) in store.iter() {
            if !self.params.iter().any(|p| p.name == name) {
                problems.push(format!("{name}: not a parameter of this graph"));
            }
        }
        if !problems.is_empty() {
            return Err(GraphError::Params(problems));
        }
        for param in &self.params {
            if let Some(values) = store.get(&param.name) {
                self.queue
                    .write_buffer(&param.buffer, 0, bytemuck::cast_slice(values));
            }
        }
        Ok(())
    }

    /// Reads every parameter back from the GPU.
    pub fn read_params(&self) -> Result<ParamStore, GraphError> {
        let mut store = ParamStore::new();
        for param in &self.params {
            let len = param.shape.iter().product::<usize>();
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("param readback"),
                size: (len as u64 * 4).max(4),
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let mut encoder = self.device.create_command_encoder(&Default::default());
            encoder.copy_buffer_to_buffer(&param.buffer, 0, &staging, 0, len as u64 * 4);
            self.queue.submit([encoder.finish()]);
            let values = read_buffer_f32(&self.device, &staging, len)?;
            store.insert(&param.name, param.shape.clone(), values);
        }
        Ok(store)
    }

    /// Runs one batch and returns the graph outputs, in the order they were marked.
    pub fn run(&self, input: &[f32]) -> Result<Vec<Vec<f32>>, GraphError> {
        Ok(self.run_timed(input)?.0)
    }

    /// Like `run`, also reporting wall-clock and (where available) GPU time.
    pub fn run_timed(&self, input: &[f32]) -> Result<(Vec<Vec<f32>>, RunTiming), GraphError> {
        let expected = self.input_shape.iter().product::<usize>();
        if input.len() != expected {
            return Err(GraphError::InputLength {
                got: input.len(),
                expected,
                shape: self.input_shape.clone(),
            });
        }
        let start = Instant::now();
        self.queue.write_buffer(
            &self.activations[self.input_buffer],
            0,
            bytemuck::cast_slice(input),
        );
        let mut encoder = self.device.create_command_encoder(&Default::default());
        {
            let timestamp_writes =
                self.timestamps
                    .as_ref()
                    .map(|t| wgpu::ComputePassTimestampWrites {
                        query_set: &t.queries,
                        beginning_of_pass_write_index: Some(0),
                        end_of_pass_write_index: Some(1),
                    });
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("forward"),
                timestamp_writes,
            });
            for step in &self.steps {
                pass.set_pipeline(&step.pipeline);
                pass.set_bind_group(0, &step.bind_group, &[]);
                let [x, y, z] = step.workgroups;
                pass.dispatch_workgroups(x, y, z);
            }
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
        if let Some(t) = &self.timestamps {
            encoder.resolve_query_set(&t.queries, 0..2, &t.resolve, 0);
            encoder.copy_buffer_to_buffer(&t.resolve, 0, &t.readback, 0, 16);
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
        let gpu_time = match &self.timestamps {
            Some(t) => {
                let raw = read_buffer_bytes(&self.device, &t.readback, 16)?;
                let tick = |i: usize| {
                    u64::from_le_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]))
                };
                let elapsed = tick(1).saturating_sub(tick(0)) as f64 * t.period_ns as f64;
                Some(Duration::from_nanos(elapsed as u64))
            }
            None => None,
        };
        Ok((
            results,
            RunTiming {
                wall: start.elapsed(),
                gpu: gpu_time,
            },
        ))
    }
}
