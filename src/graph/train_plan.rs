//! A compiled training graph: forward (batch-statistics BN), softmax cross-entropy,
//! backward and optimizer update, all pre-built and run as one submit per step.
//!
//! Every forward activation is kept for the backward pass; activation gradients live in
//! two ping-pong buffers (the graph is a chain, so only two are alive at a time).

use super::chunked_steps::ChunkedNode;
use super::chunks::{node_chunks, BatchChunks};
use super::param_buffers::{read_named, ParamBuffers};
use super::plan::{
    check_binding_limit, check_buffer_limit, check_input_len, workspace_entry, MemoryReport, Plan,
};
use super::replication::{BnPass, Replication};
use super::steps::{
    encode, profile_steps, staging_buffer, tensor_bytes, BufferRange, PassTimer, Step, StepBuilder,
};
use super::{GraphBuilder, GraphError, Node, ParamStore, Replicas, StepTiming, TensorId};
use crate::gpu::{read_buffer_f32, storage_buffer, Gpu, GpuError};
use crate::ops::{accumulate_metrics, cross_entropy, ScratchSpec, Slot, TrainSettings, UpdateRule};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// What to train and how.
#[derive(Clone, Debug, Default)]
pub struct TrainConfig {
    pub settings: TrainSettings,
    /// None builds gradients only (no optimizer state, no update).
    pub update: Option<UpdateRule>,
    /// L2 coefficient per parameter name; parameters not listed do not decay.
    pub weight_decay: HashMap<String, f32>,
    /// Also compute the gradient with respect to the graph input.
    pub input_grad: bool,
    /// Data-parallel training (`TrainPlan::step_replicated`): gradients leave the GPU in
    /// buckets of about this many bytes, each summed over the replicas while the backward
    /// pass of the earlier layers goes on. None: a single process.
    pub gradient_bucket_bytes: Option<u64>,
}

/// What one training step reports back.
#[derive(Clone, Debug)]
pub struct StepOutput {
    /// Cross-entropy per sample.
    pub loss: Vec<f32>,
    /// [batch, classes], from the forward pass of this step (before the update).
    pub logits: Vec<f32>,
}

impl StepOutput {
    pub fn mean_loss(&self) -> f64 {
        self.loss.iter().map(|&l| l as f64).sum::<f64>() / self.loss.len().max(1) as f64
    }

    /// Number of rows whose arg-max logit is the label.
    pub fn correct(&self, labels: &[u32]) -> usize {
        let classes = self.logits.len() / self.loss.len().max(1);
        self.logits
            .chunks(classes.max(1))
            .zip(labels)
            .filter(|(row, &label)| argmax(row) == label as usize)
            .count()
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Gradients from `TrainPlan::gradients`.
#[derive(Clone, Debug)]
pub struct Gradients {
    /// The forward output the gradient was seeded at.
    pub output: Vec<f32>,
    /// With respect to the graph input, when the plan was built with `input_grad`.
    pub input: Option<Vec<f32>>,
    /// With respect to each trainable parameter, by parameter name.
    pub params: ParamStore,
}

enum Seed<'a> {
    Labels(&'a [u32]),
    OutputGrad(&'a [f32]),
}

/// Where a step's input comes from: the host, or the output of another plan run first in
/// the same submit (a frozen front).
enum StepInput<'a> {
    Host(&'a [f32]),
    After(&'a Plan, &'a [f32]),
}

pub(super) struct NamedBuffer {
    pub name: String,
    pub shape: Vec<usize>,
    pub buffer: wgpu::Buffer,
}

pub struct TrainPlan {
    device: wgpu::Device,
    queue: wgpu::Queue,
    params: Arc<ParamBuffers>,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    input: wgpu::Buffer,
    output: wgpu::Buffer,
    labels: wgpu::Buffer,
    loss: wgpu::Buffer,
    output_grad: wgpu::Buffer,
    input_grad: Option<wgpu::Buffer>,
    param_grads: Vec<NamedBuffer>,
    opt_state: Vec<NamedBuffer>,
    update_rule: Option<UpdateRule>,
    hyper: wgpu::Buffer,
    steps: Vec<Step>,
    forward: Range<usize>,
    loss_steps: Range<usize>,
    backward: Range<usize>,
    update: Range<usize>,
    /// What data-parallel steps need beyond a single process's.
    replication: Option<Replication>,
    staging: wgpu::Buffer,
    timer: Option<PassTimer>,
    memory: MemoryReport,
    metrics: wgpu::Buffer,
    /// The last submission of `step_queued`, waited for before the next one is queued.
    in_flight: std::sync::Mutex<Option<wgpu::SubmissionIndex>>,
}

/// Bytes of the running-metrics buffer: loss sum, correct, samples (f32 each), padded.
const METRICS_BYTES: u64 = 16;

/// Training metrics accumulated on the GPU since the last `TrainPlan::take_metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunningMetrics {
    pub loss_sum: f64,
    pub correct: usize,
    pub samples: usize,
}

impl RunningMetrics {
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.samples.max(1) as f64
    }

    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.samples.max(1) as f64
    }
}

impl std::ops::AddAssign for RunningMetrics {
    fn add_assign(&mut self, other: RunningMetrics) {
        self.loss_sum += other.loss_sum;
        self.correct += other.correct;
        self.samples += other.samples;
    }
}

/// The training nodes (those up to the one producing the loss input), checked to form a
/// chain from the graph input.
fn training_chain(graph: &GraphBuilder) -> Result<(usize, TensorId), GraphError> {
    let output = *graph.outputs.first().ok_or(GraphError::NoOutputs)?;
    let last = graph
        .nodes
        .iter()
        .position(|n| n.output == output)
        .ok_or_else(|| GraphError::NotAChain("the first output is the graph input".into()))?;
    let mut expected = graph.inputs[0];
    for node in &graph.nodes[..=last] {
        if node.input != expected {
            return Err(GraphError::NotAChain(format!(
                "op {:?} does not read the previous op's output",
                node.name
            )));
        }
        if node.kind.fused().is_some() {
            return Err(GraphError::NotAChain(format!(
                "op {:?} has batchnorm folded in, which is for inference only; \
                 train the unfolded graph",
                node.name
            )));
        }
        expected = node.output;
    }
    Ok((last + 1, output))
}

/// Shapes and indices of the training chain, worked out before any buffer exists.
pub(super) struct Layout<'g> {
    pub(super) nodes: &'g [Node],
    pub(super) input_id: TensorId,
    pub(super) output_id: TensorId,
    pub(super) input_shape: Vec<usize>,
    pub(super) output_shape: Vec<usize>,
    /// Which of the two gradient buffers holds each tensor's gradient.
    pub(super) grad_of: HashMap<TensorId, usize>,
    /// The graph input and every node's output, in order.
    pub(super) tensors: Vec<TensorId>,
    /// The larger gradient buffer: the largest tensor.
    pub(super) grad_bytes: u64,
    pub(super) scratch_specs: Vec<Vec<ScratchSpec>>,
    /// Transient scratch, shared by index across ops.
    pub(super) shared_bytes: Vec<u64>,
    /// Parameters with gradients, in node order.
    pub(super) trainable: Vec<usize>,
    pub(super) workspace_bytes: u64,
    /// How each node splits the batch (one chunk where its tensors fit one binding).
    pub(super) chunks: Vec<BatchChunks>,
}

impl<'g> Layout<'g> {
    fn new(graph: &'g GraphBuilder, gpu: &Gpu) -> Result<Layout<'g>, GraphError> {
        let (node_count, output_id) = training_chain(graph)?;
        let nodes = &graph.nodes[..node_count];
        let input_id = graph.inputs[0];
        let shape_of = |t: TensorId| graph.tensors[t.0].shape.as_slice();
        let mut grad_of = HashMap::new();
        grad_of.insert(output_id, 0usize);
        for node in nodes.iter().rev() {
            let flip = 1 - grad_of[&node.output];
            grad_of.insert(node.input, flip);
        }
        let tensors: Vec<TensorId> = std::iter::once(input_id)
            .chain(nodes.iter().map(|n| n.output))
            .collect();
        let grad_bytes = tensors
            .iter()
            .map(|&t| tensor_bytes(shape_of(t)))
            .max()
            .unwrap_or(4);
        let scratch_specs: Vec<_> = nodes
            .iter()
            .map(|n| n.kind.scratch(shape_of(n.input), shape_of(n.output)))
            .collect();
        let mut shared_bytes: Vec<u64> = Vec::new();
        for specs in &scratch_specs {
            for (i, spec) in specs.iter().enumerate().filter(|(_, s)| !s.persistent) {
                if shared_bytes.len() <= i {
                    shared_bytes.resize(i + 1, 4);
                }
                shared_bytes[i] = shared_bytes[i].max(spec.floats as u64 * 4);
            }
        }
        let trainable = nodes
            .iter()
            .flat_map(|n| n.params.iter().copied())
            .filter(|&p| graph.params[p].role.trainable())
            .collect();
        let (chunks, workspace_bytes) = node_chunks(gpu, graph, nodes, true)?;
        Ok(Layout {
            nodes,
            input_id,
            output_id,
            input_shape: shape_of(input_id).to_vec(),
            output_shape: shape_of(output_id).to_vec(),
            grad_of,
            tensors,
            grad_bytes,
            scratch_specs,
            shared_bytes,
            trainable,
            workspace_bytes,
            chunks,
        })
    }

    fn batch(&self) -> usize {
        self.input_shape[0]
    }

    /// The activation and gradient tensors, which ops may bind in chunks: each must fit
    /// one buffer.
    fn tensor_buffers(&self, graph: &GraphBuilder) -> Vec<(String, Vec<usize>, u64)> {
        self.tensors
            .iter()
            .map(|&t| {
                let info = &graph.tensors[t.0];
                (
                    info.name.clone(),
                    info.shape.clone(),
                    tensor_bytes(&info.shape),
                )
            })
            .collect()
    }

    /// The buffers ops bind whole, which must fit one binding: reduction scratch and the
    /// workspace (sized for the largest chunk).
    fn scratch_buffers(&self) -> Vec<(String, Vec<usize>, u64)> {
        let mut sizes = Vec::new();
        for (i, &bytes) in self.shared_bytes.iter().enumerate() {
            sizes.push((
                format!("reduction scratch {i}"),
                vec![(bytes / 4) as usize],
                bytes,
            ));
        }
        sizes.push(workspace_entry(self.workspace_bytes));
        sizes
    }
}

/// Every buffer the training steps bind.
pub(super) struct Buffers {
    pub(super) acts: HashMap<TensorId, wgpu::Buffer>,
    pub(super) grads: [wgpu::Buffer; 2],
    pub(super) shared: Vec<wgpu::Buffer>,
    /// Per node, per scratch index: its own buffer when the scratch is persistent.
    pub(super) persistent: Vec<Vec<Option<wgpu::Buffer>>>,
    pub(super) persistent_bytes: u64,
    /// By parameter index (so in graph order).
    pub(super) param_grads: BTreeMap<usize, NamedBuffer>,
    pub(super) opt_state: BTreeMap<usize, Vec<NamedBuffer>>,
    pub(super) workspace: wgpu::Buffer,
    pub(super) labels: wgpu::Buffer,
    pub(super) loss: wgpu::Buffer,
    pub(super) metrics: wgpu::Buffer,
    pub(super) unused: wgpu::Buffer,
    pub(super) hyper: wgpu::Buffer,
}

impl Buffers {
    fn allocate(gpu: &Gpu, graph: &GraphBuilder, layout: &Layout, config: &TrainConfig) -> Buffers {
        let shape_of = |t: TensorId| graph.tensors[t.0].shape.as_slice();
        let acts = layout
            .tensors
            .iter()
            .map(|&t| {
                let label = format!("activation {}", graph.tensors[t.0].name);
                (t, storage_buffer(gpu, &label, tensor_bytes(shape_of(t))))
            })
            .collect();
        let mut persistent_bytes = 0;
        let persistent = layout
            .scratch_specs
            .iter()
            .zip(layout.nodes)
            .map(|(specs, node)| {
                specs
                    .iter()
                    .map(|s| {
                        s.persistent.then(|| {
                            persistent_bytes += s.floats as u64 * 4;
                            let label = format!("{} state", node.name);
                            storage_buffer(gpu, &label, s.floats as u64 * 4)
                        })
                    })
                    .collect()
            })
            .collect();
        let named = |name: String, shape: &[usize]| NamedBuffer {
            buffer: storage_buffer(gpu, &name, tensor_bytes(shape)),
            name,
            shape: shape.to_vec(),
        };
        let param_grads = layout
            .trainable
            .iter()
            .map(|&p| {
                let info = &graph.params[p];
                let mut grad = named(format!("grad {}", info.name), &info.shape);
                grad.name = info.name.clone();
                (p, grad)
            })
            .collect();
        let mut opt_state = BTreeMap::new();
        if let Some(rule) = &config.update {
            for &p in &layout.trainable {
                let info = &graph.params[p];
                let states = rule
                    .state_names()
                    .iter()
                    .enumerate()
                    .map(|(i, state)| {
                        let state_buffer = named(format!("{}.{state}", info.name), &info.shape);
                        let init = vec![rule.state_init(i); info.len()];
                        gpu.queue().write_buffer(
                            &state_buffer.buffer,
                            0,
                            bytemuck::cast_slice(&init),
                        );
                        state_buffer
                    })
                    .collect();
                opt_state.insert(p, states);
            }
        }
        let batch_bytes = layout.batch() as u64 * 4;
        Buffers {
            acts,
            grads: [
                storage_buffer(gpu, "gradient ping", layout.grad_bytes),
                storage_buffer(gpu, "gradient pong", layout.grad_bytes),
            ],
            shared: layout
                .shared_bytes
                .iter()
                .enumerate()
                .map(|(i, &bytes)| storage_buffer(gpu, &format!("scratch {i}"), bytes))
                .collect(),
            persistent,
            persistent_bytes,
            param_grads,
            opt_state,
            workspace: storage_buffer(gpu, "workspace", layout.workspace_bytes),
            labels: storage_buffer(gpu, "labels", batch_bytes),
            loss: storage_buffer(gpu, "loss", batch_bytes),
            metrics: storage_buffer(gpu, "running metrics", METRICS_BYTES),
            unused: storage_buffer(gpu, "unused binding", 16),
            hyper: gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("optimizer hyper-parameters"),
                size: 32,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
        }
    }

    /// The buffer bound to `slot` of node `index`'s dispatches.
    pub(super) fn node_slot(
        &self,
        layout: &Layout,
        params: &ParamBuffers,
        graph: &GraphBuilder,
        index: usize,
        slot: Slot,
    ) -> Option<wgpu::Buffer> {
        let node = &layout.nodes[index];
        match slot {
            Slot::Input => self.acts.get(&node.input).cloned(),
            Slot::Output => self.acts.get(&node.output).cloned(),
            Slot::Param(i) => node
                .params
                .get(i)
                .and_then(|&p| params.buffer(&graph.params[p].name).cloned()),
            Slot::GradOutput => Some(self.grads[layout.grad_of[&node.output]].clone()),
            Slot::GradInput => Some(self.grads[layout.grad_of[&node.input]].clone()),
            Slot::ParamGrad(i) => node
                .params
                .get(i)
                .and_then(|p| self.param_grads.get(p))
                .map(|g| g.buffer.clone()),
            Slot::Scratch(i) => match self.persistent[index].get(i) {
                Some(Some(buffer)) => Some(buffer.clone()),
                Some(None) => self.shared.get(i).cloned(),
                None => None,
            },
            Slot::Unused => Some(self.unused.clone()),
            Slot::Workspace => Some(self.workspace.clone()),
            _ => None,
        }
    }

    fn training_bytes(&self, layout: &Layout) -> u64 {
        2 * layout.grad_bytes
            + layout.shared_bytes.iter().sum::<u64>()
            + self.persistent_bytes
            + self
                .param_grads
                .values()
                .map(|g| g.buffer.size())
                .sum::<u64>()
            + self
                .opt_state
                .values()
                .flatten()
                .map(|g| g.buffer.size())
                .sum::<u64>()
    }
}

/// The compiled steps and where each phase starts and ends.
pub(super) struct Phases {
    pub(super) steps: Vec<Step>,
    pub(super) uniform_bytes: u64,
    pub(super) forward: Range<usize>,
    pub(super) loss_steps: Range<usize>,
    pub(super) backward: Range<usize>,
    pub(super) update: Range<usize>,
    /// Under sync-BN: (step after which, node index, pass) of each batch-norm exchange.
    pub(super) bn_exchanges: Vec<(usize, usize, BnPass)>,
    /// For each node, the step after which its backward dispatches are done.
    pub(super) backward_done: Vec<usize>,
}

/// Node `i` with its chunks and buffers, for emitting its dispatches.
fn chunked_node<'a>(
    graph: &'a GraphBuilder,
    layout: &'a Layout,
    i: usize,
    limit: u64,
    slot: &'a dyn Fn(Slot) -> Option<wgpu::Buffer>,
) -> ChunkedNode<'a> {
    let node = &layout.nodes[i];
    ChunkedNode {
        name: &node.name,
        kind: &node.kind,
        input: &graph.tensors[node.input.0].shape,
        output: &graph.tensors[node.output.0].shape,
        chunks: &layout.chunks[i],
        limit,
        slot,
    }
}

fn build_phases(
    gpu: &Gpu,
    graph: &GraphBuilder,
    layout: &Layout,
    buffers: &Buffers,
    params: &ParamBuffers,
    config: &TrainConfig,
) -> Result<Phases, GraphError> {
    let shape_of = |t: TensorId| graph.tensors[t.0].shape.as_slice();
    let synced_bn = config.settings.synced_replicas > 1;
    let mut bn_exchanges = Vec::new();
    let mut builder = StepBuilder::new(gpu);
    let node_slot = |i: usize, slot| buffers.node_slot(layout, params, graph, i, slot);
    let limit = gpu.binding_limit();
    for (i, node) in layout.nodes.iter().enumerate() {
        let slot = |slot| node_slot(i, slot);
        let partials_done =
            chunked_node(graph, layout, i, limit, &slot).forward(&mut builder, &config.settings)?;
        if synced_bn && node.kind.bn_partials(shape_of(node.input)).is_some() {
            bn_exchanges.push((partials_done, i, BnPass::Forward));
        }
    }
    let forward = 0..builder.len();

    let (output_id, output_shape) = (layout.output_id, &layout.output_shape);
    if output_shape.len() == 2 {
        // The logits' gradient lives in a buffer sized for the largest tensor, which may
        // exceed one binding: bind the logits' part.
        let logits_grad = BufferRange {
            buffer: buffers.grads[layout.grad_of[&output_id]].clone(),
            offset: 0,
            size: Some(tensor_bytes(output_shape).next_multiple_of(16)),
        };
        let loss_slot = |slot| match slot {
            Slot::Input => buffers.acts.get(&output_id).cloned().map(BufferRange::from),
            Slot::Labels => Some(buffers.labels.clone().into()),
            Slot::Loss => Some(buffers.loss.clone().into()),
            Slot::GradInput => Some(logits_grad.clone()),
            Slot::Metrics => Some(buffers.metrics.clone().into()),
            _ => None,
        };
        let (rows, cols) = (output_shape[0], output_shape[1]);
        let batch = layout.batch();
        builder.add("loss", &cross_entropy(rows, cols, batch), loss_slot)?;
        builder.add("metrics", &accumulate_metrics(rows, cols, batch), loss_slot)?;
    }
    let loss_steps = forward.end..builder.len();

    let mut backward_done = vec![0; layout.nodes.len()];
    for (i, node) in layout.nodes.iter().enumerate().rev() {
        let input_grad = i > 0 || config.input_grad;
        let slot = |slot| node_slot(i, slot);
        let partials_done = chunked_node(graph, layout, i, limit, &slot).backward(
            &mut builder,
            input_grad,
            &config.settings,
        )?;
        if synced_bn && node.kind.bn_partials(shape_of(node.input)).is_some() {
            bn_exchanges.push((partials_done, i, BnPass::Backward));
        }
        backward_done[i] = builder.len();
    }
    let backward = loss_steps.end..builder.len();

    if let Some(rule) = &config.update {
        for &p in &layout.trainable {
            let info = &graph.params[p];
            let decay = config.weight_decay.get(&info.name).copied().unwrap_or(0.0);
            let states = &buffers.opt_state[&p];
            builder.add(
                &format!("update {}", info.name),
                &rule.dispatch(info.len(), decay),
                |slot| match slot {
                    Slot::Hyper => Some(buffers.hyper.clone()),
                    Slot::Param(0) => params.buffer(&info.name).cloned(),
                    Slot::ParamGrad(0) => Some(buffers.param_grads[&p].buffer.clone()),
                    Slot::OptState(s) => states.get(s).map(|b| b.buffer.clone()),
                    _ => None,
                },
            )?;
        }
    }
    let update = backward.end..builder.len();
    let (steps, uniform_bytes) = builder.finish()?;
    Ok(Phases {
        steps,
        uniform_bytes,
        forward,
        loss_steps,
        backward,
        update,
        bn_exchanges,
        backward_done,
    })
}

impl TrainPlan {
    /// Builds the training plan of `graph`, reading and updating `params`. The loss is
    /// computed on the graph's first output ([batch, classes] logits); ops after it (an
    /// inference softmax) are not part of training.
    pub fn compile(
        graph: &GraphBuilder,
        gpu: &Gpu,
        params: Arc<ParamBuffers>,
        config: &TrainConfig,
    ) -> Result<TrainPlan, GraphError> {
        if graph.inputs.len() != 1 {
            return Err(GraphError::InputCount(graph.inputs.len()));
        }
        params.check_matches(graph)?;
        let layout = Layout::new(graph, gpu)?;
        check_buffer_limit(
            gpu,
            layout.batch(),
            layout.tensor_buffers(graph).into_iter(),
        )?;
        check_binding_limit(gpu, layout.batch(), layout.scratch_buffers().into_iter())?;
        if config.settings.synced_replicas > 1 && layout.chunks.iter().any(|c| c.is_chunked()) {
            return Err(GraphError::Replicas(
                "sync-BN with a batch whose tensors exceed one storage binding is not \
                 supported; lower --batch-size or train without --sync-bn"
                    .into(),
            ));
        }
        let buffers = Buffers::allocate(gpu, graph, &layout, config);
        let phases = build_phases(gpu, graph, &layout, &buffers, &params, config)?;
        let replication = match config.gradient_bucket_bytes {
            Some(cap) => Some(Replication::new(
                gpu, graph, &layout, &buffers, &params, &phases, cap,
            )),
            None if phases.bn_exchanges.is_empty() => None,
            None => {
                return Err(GraphError::Replicas(
                    "sync-BN (synced_replicas > 1) exchanges statistics between replicas; \
                     set gradient_bucket_bytes as well"
                        .into(),
                ))
            }
        };

        let batch = layout.batch() as u64;
        let output_len = layout.output_shape.iter().product::<usize>() as u64;
        let staging = staging_buffer(gpu.device(), "step readback", (batch + output_len) * 4);
        let activation_bytes: u64 = buffers.acts.values().map(|b| b.size()).sum();
        let memory = MemoryReport {
            activations: activation_bytes,
            activations_unshared: activation_bytes,
            // Backward reads every forward activation, so all of them are live at once.
            activations_live_peak: activation_bytes,
            params: params.bytes(),
            training: buffers.training_bytes(&layout)
                + replication.as_ref().map_or(0, Replication::bytes),
            other: phases.uniform_bytes
                + staging.size()
                + layout.workspace_bytes
                + METRICS_BYTES
                + 2 * batch * 4
                + 48,
        };
        let Buffers {
            acts,
            grads,
            param_grads,
            opt_state,
            labels,
            loss,
            metrics,
            hyper,
            ..
        } = buffers;
        Ok(TrainPlan {
            device: gpu.device().clone(),
            queue: gpu.queue().clone(),
            params,
            input: acts[&layout.input_id].clone(),
            output: acts[&layout.output_id].clone(),
            output_grad: grads[layout.grad_of[&layout.output_id]].clone(),
            input_grad: config
                .input_grad
                .then(|| grads[layout.grad_of[&layout.input_id]].clone()),
            input_shape: layout.input_shape,
            output_shape: layout.output_shape,
            labels,
            loss,
            param_grads: param_grads.into_values().collect(),
            opt_state: opt_state.into_values().flatten().collect(),
            update_rule: config.update,
            hyper,
            steps: phases.steps,
            forward: phases.forward,
            loss_steps: phases.loss_steps,
            backward: phases.backward,
            update: phases.update,
            replication,
            staging,
            timer: PassTimer::new(gpu),
            memory,
            metrics,
            in_flight: std::sync::Mutex::new(None),
        })
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    pub fn batch(&self) -> usize {
        self.input_shape[0]
    }

    pub fn memory(&self) -> MemoryReport {
        self.memory
    }

    pub fn param_buffers(&self) -> &Arc<ParamBuffers> {
        &self.params
    }

    pub fn dispatch_count(&self) -> usize {
        self.steps.len()
    }

    /// Every dispatch in execution order, as `<op> <shader>:<entry> [<kernel>]`: which
    /// kernel each layer runs (the bracket names the one chosen among alternatives).
    pub fn kernels(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.label().to_string()).collect()
    }

    fn check_labels(&self, labels: &[u32]) -> Result<(), GraphError> {
        if self.output_shape.len() != 2 {
            return Err(GraphError::Labels(format!(
                "the loss needs [batch, classes] logits, this graph's output is {:?}",
                self.output_shape
            )));
        }
        let (batch, classes) = (self.output_shape[0], self.output_shape[1]);
        if labels.len() != batch {
            return Err(GraphError::Labels(format!(
                "{} labels for a batch of {batch}",
                labels.len()
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| l as usize >= classes) {
            return Err(GraphError::Labels(format!(
                "label {bad} is out of range for {classes} classes"
            )));
        }
        Ok(())
    }

    /// Encodes the chosen phases into one command buffer and submits it.
    fn execute(
        &self,
        input: StepInput<'_>,
        seed: Seed<'_>,
        lr: Option<f32>,
        copy_step_outputs: bool,
    ) -> Result<wgpu::SubmissionIndex, GraphError> {
        let (mut encoder, phases) = self.begin(input, seed, lr)?;
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("train step"),
                timestamp_writes: self.timer.as_ref().map(PassTimer::pass_writes),
            });
            for phase in phases {
                encode(&mut pass, &self.steps[phase]);
            }
        }
        if copy_step_outputs {
            let batch_bytes = self.batch() as u64 * 4;
            encoder.copy_buffer_to_buffer(&self.loss, 0, &self.staging, 0, batch_bytes);
            let output_bytes = tensor_bytes(&self.output_shape);
            encoder.copy_buffer_to_buffer(
                &self.output,
                0,
                &self.staging,
                batch_bytes,
                output_bytes,
            );
        }
        if let Some(timer) = &self.timer {
            timer.resolve(&mut encoder);
        }
        Ok(self.queue.submit([encoder.finish()]))
    }

    /// Writes a step's input, labels or output gradient and learning rate, and returns the
    /// encoder (holding the frozen front's forward pass, if any) with the phases to run.
    fn begin(
        &self,
        input: StepInput<'_>,
        seed: Seed<'_>,
        lr: Option<f32>,
    ) -> Result<(wgpu::CommandEncoder, [Range<usize>; 4]), GraphError> {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        match input {
            StepInput::Host(images) => {
                check_input_len(images.len(), &self.input_shape)?;
                self.queue
                    .write_buffer(&self.input, 0, bytemuck::cast_slice(images));
            }
            StepInput::After(front, images) => {
                let (features, bytes) = front.encode_forward(&mut encoder, images)?;
                check_input_len(bytes as usize / 4, &self.input_shape)?;
                encoder.copy_buffer_to_buffer(features, 0, &self.input, 0, bytes);
            }
        }
        // Phases to encode, in order; skipped ones are empty (no allocation per step).
        let phases: [Range<usize>; 4] = match seed {
            Seed::Labels(labels) => {
                self.check_labels(labels)?;
                self.queue
                    .write_buffer(&self.labels, 0, bytemuck::cast_slice(labels));
                let update = match (lr, &self.update_rule) {
                    (Some(lr), Some(rule)) => {
                        self.queue.write_buffer(
                            &self.hyper,
                            0,
                            bytemuck::cast_slice(&rule.hyper_words(lr)),
                        );
                        self.update.clone()
                    }
                    _ => 0..0,
                };
                [
                    self.forward.clone(),
                    self.loss_steps.clone(),
                    self.backward.clone(),
                    update,
                ]
            }
            Seed::OutputGrad(grad) => {
                check_input_len(grad.len(), &self.output_shape)?;
                self.queue
                    .write_buffer(&self.output_grad, 0, bytemuck::cast_slice(grad));
                [self.forward.clone(), 0..0, self.backward.clone(), 0..0]
            }
        };
        Ok((encoder, phases))
    }

    /// One data-parallel optimisation step: forward and backward on this replica's part of
    /// the global batch, the gradients averaged over `replicas` (and under sync-BN the
    /// batch statistics pooled), then the update. Like `step_queued`, loss and accuracy
    /// accumulate on the GPU until `take_metrics`. Needs a plan compiled with
    /// `TrainConfig::gradient_bucket_bytes`; returns where the step's time went.
    pub fn step_replicated(
        &self,
        images: &[f32],
        labels: &[u32],
        lr: f32,
        replicas: &dyn Replicas,
    ) -> Result<StepTiming, GraphError> {
        self.replicated_from(StepInput::Host(images), labels, lr, replicas)
    }

    /// `step_replicated` after a frozen front, as `step_queued_after`.
    pub fn step_replicated_after(
        &self,
        front: &Plan,
        images: &[f32],
        labels: &[u32],
        lr: f32,
        replicas: &dyn Replicas,
    ) -> Result<StepTiming, GraphError> {
        self.replicated_from(StepInput::After(front, images), labels, lr, replicas)
    }

    fn replicated_from(
        &self,
        input: StepInput<'_>,
        labels: &[u32],
        lr: f32,
        replicas: &dyn Replicas,
    ) -> Result<StepTiming, GraphError> {
        let replication = self.replication.as_ref().ok_or_else(|| {
            GraphError::Replicas(
                "this plan was compiled for a single process; set \
                 TrainConfig::gradient_bucket_bytes"
                    .into(),
            )
        })?;
        let start = Instant::now();
        let (encoder, phases) = self.begin(input, Seed::Labels(labels), Some(lr))?;
        let timing = replication.forward_backward(
            (&self.device, &self.queue),
            &self.steps,
            encoder,
            self.backward.end,
            replicas,
            start,
        )?;
        let mut encoder = self.device.create_command_encoder(&Default::default());
        replication.encode_averaged(&mut encoder);
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("update"),
                timestamp_writes: None,
            });
            encode(&mut pass, &self.steps[phases[3].clone()]);
        }
        let submitted = self.queue.submit([encoder.finish()]);
        *self.in_flight.lock().unwrap_or_else(|e| e.into_inner()) = Some(submitted);
        Ok(timing)
    }

    fn read_step_output(&self) -> Result<StepOutput, GraphError> {
        let batch = self.batch();
        let total = batch + self.output_shape.iter().product::<usize>();
        let mut values = read_buffer_f32(&self.device, &self.staging, total)?;
        let logits = values.split_off(batch);
        Ok(StepOutput {
            loss: values,
            logits,
        })
    }

    /// One optimisation step queued without waiting for it or reading anything back: the
    /// loss and accuracy accumulate on the GPU until `take_metrics`. At most two steps are
    /// in flight (this waits for the previous one before returning), so the CPU prepares
    /// the next batch while the GPU runs this one without queueing unbounded work.
    pub fn step_queued(&self, images: &[f32], labels: &[u32], lr: f32) -> Result<(), GraphError> {
        self.step_queued_from(StepInput::Host(images), labels, lr)
    }

    /// `step_queued` on the output of `front` (a frozen, folded part of the network run
    /// in inference form) for `images`: both run in the same submit, and the features
    /// never leave the GPU.
    pub fn step_queued_after(
        &self,
        front: &Plan,
        images: &[f32],
        labels: &[u32],
        lr: f32,
    ) -> Result<(), GraphError> {
        self.step_queued_from(StepInput::After(front, images), labels, lr)
    }

    fn step_queued_from(
        &self,
        input: StepInput<'_>,
        labels: &[u32],
        lr: f32,
    ) -> Result<(), GraphError> {
        let submitted = self.execute(input, Seed::Labels(labels), Some(lr), false)?;
        let previous = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(submitted);
        if let Some(index) = previous {
            self.device
                .poll(wgpu::PollType::Wait {
                    submission_index: Some(index),
                    timeout: None,
                })
                .map_err(|e| {
                    GraphError::Gpu(GpuError::Readback(format!(
                        "waiting for a training step: {e}"
                    )))
                })?;
        }
        Ok(())
    }

    /// The metrics accumulated since the last call (waiting for queued steps), then resets
    /// them.
    pub fn take_metrics(&self) -> Result<RunningMetrics, GraphError> {
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(&self.metrics, 0, &self.staging, 0, METRICS_BYTES);
        encoder.clear_buffer(&self.metrics, 0, None);
        self.queue.submit([encoder.finish()]);
        let values = read_buffer_f32(&self.device, &self.staging, 3)?;
        *self.in_flight.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(RunningMetrics {
            loss_sum: values[0] as f64,
            correct: values[1] as usize,
            samples: values[2] as usize,
        })
    }

    /// One optimisation step on a batch: forward, loss, backward, update at `lr`.
    pub fn step(&self, images: &[f32], labels: &[u32], lr: f32) -> Result<StepOutput, GraphError> {
        self.execute(
            StepInput::Host(images),
            Seed::Labels(labels),
            Some(lr),
            true,
        )?;
        self.read_step_output()
    }

    /// Runs one training step with every dispatch timed on its own (see
    /// `profile_steps`); returns (step label, GPU time) in execution order. Updates the
    /// weights like `step`.
    pub fn profile(
        &self,
        gpu: &Gpu,
        images: &[f32],
        labels: &[u32],
        lr: f32,
    ) -> Result<Vec<(String, std::time::Duration)>, GraphError> {
        check_input_len(images.len(), &self.input_shape)?;
        self.check_labels(labels)?;
        self.queue
            .write_buffer(&self.input, 0, bytemuck::cast_slice(images));
        self.queue
            .write_buffer(&self.labels, 0, bytemuck::cast_slice(labels));
        if let Some(rule) = &self.update_rule {
            self.queue
                .write_buffer(&self.hyper, 0, bytemuck::cast_slice(&rule.hyper_words(lr)));
        }
        let steps: Vec<&Step> = self.steps.iter().collect();
        profile_steps(gpu, &steps)
    }

    /// GPU time of the last submitted step's compute pass, where timestamps exist.
    pub fn last_gpu_time(&self) -> Result<Option<std::time::Duration>, GraphError> {
        match &self.timer {
            Some(timer) => Ok(Some(timer.elapsed(&self.device)?)),
            None => Ok(None),
        }
    }

    /// Forward, loss and backward without updating: the loss and every parameter gradient.
    pub fn loss_gradients(
        &self,
        images: &[f32],
        labels: &[u32],
    ) -> Result<(StepOutput, ParamStore), GraphError> {
        self.execute(StepInput::Host(images), Seed::Labels(labels), None, true)?;
        let output = self.read_step_output()?;
        Ok((output, self.read_param_grads()?))
    }

    /// Forward, then backward from `output_grad` (dLoss/dOutput), no loss and no update.
    pub fn gradients(&self, images: &[f32], output_grad: &[f32]) -> Result<Gradients, GraphError> {
        self.execute(
            StepInput::Host(images),
            Seed::OutputGrad(output_grad),
            None,
            false,
        )?;
        let mut tensors = vec![("output", self.output_shape.as_slice(), &self.output)];
        if let Some(input_grad) = &self.input_grad {
            tensors.push(("input", self.input_shape.as_slice(), input_grad));
        }
        let mut read = read_named(&self.device, &self.queue, tensors.into_iter())?;
        let input = read.get_mut("input").map(std::mem::take);
        let output = read
            .get_mut("output")
            .map(std::mem::take)
            .unwrap_or_default();
        Ok(Gradients {
            output,
            input,
            params: self.read_param_grads()?,
        })
    }

    fn read_param_grads(&self) -> Result<ParamStore, GraphError> {
        let tensors = self
            .param_grads
            .iter()
            .map(|g| (g.name.as_str(), g.shape.as_slice(), &g.buffer));
        read_named(&self.device, &self.queue, tensors)
    }

    /// Optimizer state, named `<parameter>.<state>` (e.g. `stem.conv.weight.ms`).
    pub fn read_opt_state(&self) -> Result<ParamStore, GraphError> {
        let tensors = self
            .opt_state
            .iter()
            .map(|s| (s.name.as_str(), s.shape.as_slice(), &s.buffer));
        read_named(&self.device, &self.queue, tensors)
    }

    /// Restores optimizer state saved by `read_opt_state`; every tensor must be present.
    pub fn load_opt_state(&self, store: &ParamStore) -> Result<(), GraphError> {
        let mut problems = Vec::new();
        for state in &self.opt_state {
            match (store.shape(&state.name), store.get(&state.name)) {
                (Some(shape), Some(values)) if shape == state.shape.as_slice() => {
                    self.queue
                        .write_buffer(&state.buffer, 0, bytemuck::cast_slice(values));
                }
                (Some(shape), _) => problems.push(format!(
                    "{}: expected shape {:?}, got {shape:?}",
                    state.name, state.shape
                )),
                _ => problems.push(format!("{}: missing", state.name)),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(GraphError::Params(problems))
        }
    }
}
