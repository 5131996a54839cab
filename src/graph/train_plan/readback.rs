//! Reading results back from the GPU: a step's loss and logits, the metrics queued steps
//! accumulated, gradients and optimizer state (which can also be restored).

use super::buffers::METRICS_BYTES;
use super::build::TrainPlan;
use super::results::{Gradients, RunningMetrics, StepOutput};
use crate::gpu::read_buffer_f32;
use crate::graph::buffer_range::BufferRange;
use crate::graph::error::GraphError;
use crate::graph::param_buffers::read_named;
use crate::graph::params::ParamStore;

impl TrainPlan {
    pub(super) fn read_step_output(&self) -> Result<StepOutput, GraphError> {
        let batch = self.batch();
        let total = batch + self.output_shape.iter().product::<usize>();
        let mut values = read_buffer_f32(&self.device, &self.staging, total)?;
        let logits = values.split_off(batch);
        Ok(StepOutput {
            loss: values,
            logits,
        })
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

    /// GPU time of the last submitted step's compute pass, where timestamps exist.
    pub fn last_gpu_time(&self) -> Result<Option<std::time::Duration>, GraphError> {
        match &self.timer {
            Some(timer) => Ok(Some(timer.elapsed(&self.device)?)),
            None => Ok(None),
        }
    }

    /// The forward output, the input gradient (where the plan computes it) and every
    /// parameter gradient of the step just run.
    pub(super) fn read_gradients(&self) -> Result<Gradients, GraphError> {
        let mut tensors = vec![(
            "output",
            self.output_shape.as_slice(),
            BufferRange::from(self.output.clone()),
        )];
        if let Some(input_grad) = &self.input_grad {
            tensors.push((
                "input",
                self.input_shape.as_slice(),
                input_grad.clone().into(),
            ));
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

    pub(super) fn read_param_grads(&self) -> Result<ParamStore, GraphError> {
        let tensors = self
            .param_grads
            .iter()
            .map(|g| (g.name.as_str(), g.shape.as_slice(), g.range.clone()));
        read_named(&self.device, &self.queue, tensors)
    }

    /// Optimizer state, named `<parameter>.<state>` (e.g. `stem.conv.weight.ms`).
    pub fn read_opt_state(&self) -> Result<ParamStore, GraphError> {
        let tensors = self
            .opt_state
            .iter()
            .map(|s| (s.name.as_str(), s.shape.as_slice(), s.range.clone()));
        read_named(&self.device, &self.queue, tensors)
    }

    /// Restores optimizer state saved by `read_opt_state`; every tensor must be present.
    pub fn load_opt_state(&self, store: &ParamStore) -> Result<(), GraphError> {
        let mut problems = Vec::new();
        for state in &self.opt_state {
            match (store.shape(&state.name), store.get(&state.name)) {
                (Some(shape), Some(values)) if shape == state.shape.as_slice() => {
                    let (buffer, offset) = (&state.range.buffer, state.range.offset);
                    self.queue
                        .write_buffer(buffer, offset, bytemuck::cast_slice(values));
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
