//! Compiling a training plan: check the graph fits, lay it out, allocate its buffers,
//! build the dispatch list and (for data-parallel runs) the exchanges between replicas.

use super::buffers::{Buffers, NamedBuffer};
use super::config::TrainConfig;
use super::layout::Layout;
use super::phases::{build_phases, Phases};
use super::replication::Replication;
use crate::gpu::Gpu;
use crate::graph::builder::GraphBuilder;
use crate::graph::error::GraphError;
use crate::graph::limits::{check_binding_limit, check_buffer_limit};
use crate::graph::memory::MemoryReport;
use crate::graph::param_buffers::ParamBuffers;
use crate::graph::steps::{staging_buffer, Step};
use crate::graph::timestamps::PassTimer;
use crate::ops::UpdateRule;
use std::ops::Range;
use std::sync::Arc;

/// A compiled training graph: forward, loss, backward and update pre-built, run as one
/// submit per step.
pub struct TrainPlan {
    pub(super) device: wgpu::Device,
    pub(super) queue: wgpu::Queue,
    pub(super) params: Arc<ParamBuffers>,
    pub(super) input_shape: Vec<usize>,
    pub(super) output_shape: Vec<usize>,
    pub(super) input: wgpu::Buffer,
    pub(super) output: wgpu::Buffer,
    pub(super) labels: wgpu::Buffer,
    pub(super) loss: wgpu::Buffer,
    pub(super) output_grad: wgpu::Buffer,
    pub(super) input_grad: Option<wgpu::Buffer>,
    pub(super) param_grads: Vec<NamedBuffer>,
    pub(super) opt_state: Vec<NamedBuffer>,
    pub(super) update_rule: Option<UpdateRule>,
    pub(super) hyper: wgpu::Buffer,
    pub(super) steps: Vec<Step>,
    pub(super) forward: Range<usize>,
    pub(super) loss_steps: Range<usize>,
    pub(super) backward: Range<usize>,
    pub(super) update: Range<usize>,
    /// What data-parallel steps need beyond a single process's.
    pub(super) replication: Option<Replication>,
    pub(super) staging: wgpu::Buffer,
    pub(super) timer: Option<PassTimer>,
    pub(super) memory: MemoryReport,
    pub(super) metrics: wgpu::Buffer,
    /// The last submission of `step_queued`, waited for before the next one is queued.
    pub(super) in_flight: std::sync::Mutex<Option<wgpu::SubmissionIndex>>,
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
        check_fits(gpu, graph, &layout, config)?;
        let buffers = Buffers::allocate(gpu, graph, &layout, config);
        let phases = build_phases(gpu, graph, &layout, &buffers, &params, config)?;
        let replication = replication(gpu, graph, &layout, &buffers, &params, &phases, config)?;
        let batch = layout.batch() as u64;
        let output_len = layout.output_shape.iter().product::<usize>() as u64;
        let staging = staging_buffer(gpu.device(), "step readback", (batch + output_len) * 4);
        let memory = memory_report(
            &layout,
            &buffers,
            &params,
            &phases,
            replication.as_ref(),
            &staging,
        );
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

    /// Every dispatch in execution order, as `<op> <shader>:<entry> [<kernel>]` (`<op>+<op>`
    /// where a batch norm's finalize stage runs beside another op's weight sums): which
    /// kernel each layer runs (the bracket names the one chosen among alternatives).
    pub fn kernels(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.label().to_string()).collect()
    }
}

/// Refuses batches whose tensors exceed the adapter's limits, and sync-BN over chunked
/// tensors (its exchanges assume one set of partial sums per node).
fn check_fits(
    gpu: &Gpu,
    graph: &GraphBuilder,
    layout: &Layout,
    config: &TrainConfig,
) -> Result<(), GraphError> {
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
    Ok(())
}

/// What data-parallel steps need, where the config asks for them; sync-BN without
/// gradient buckets is refused.
fn replication(
    gpu: &Gpu,
    graph: &GraphBuilder,
    layout: &Layout,
    buffers: &Buffers,
    params: &ParamBuffers,
    phases: &Phases,
    config: &TrainConfig,
) -> Result<Option<Replication>, GraphError> {
    match config.gradient_bucket_bytes {
        Some(cap) => Ok(Some(Replication::new(
            gpu, graph, layout, buffers, params, phases, cap,
        ))),
        None if phases.bn_exchanges.is_empty() => Ok(None),
        None => Err(GraphError::Replicas(
            "sync-BN (synced_replicas > 1) exchanges statistics between replicas; \
             set gradient_bucket_bytes as well"
                .into(),
        )),
    }
}

fn memory_report(
    layout: &Layout,
    buffers: &Buffers,
    params: &ParamBuffers,
    phases: &Phases,
    replication: Option<&Replication>,
    staging: &wgpu::Buffer,
) -> MemoryReport {
    let activation_bytes: u64 = buffers.acts.values().map(|b| b.size()).sum();
    MemoryReport {
        activations: activation_bytes,
        activations_unshared: activation_bytes,
        // Backward reads every forward activation, so all of them are live at once.
        activations_live_peak: activation_bytes,
        params: params.bytes(),
        training: buffers.training_bytes(layout) + replication.map_or(0, Replication::bytes),
        other: phases.uniform_bytes + staging.size() + buffers.small_bytes(),
    }
}
