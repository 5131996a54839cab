//! Running a training step: writing its input, labels and learning rate, encoding the
//! phases and submitting them; one process or data-parallel, waited for or queued.

use super::build::TrainPlan;
use super::results::{Gradients, StepOutput};
use crate::gpu::{Gpu, GpuError};
use crate::graph::error::GraphError;
use crate::graph::params::ParamStore;
use crate::graph::plan::Plan;
use crate::graph::replicas::{Replicas, StepTiming};
use crate::graph::shapes::{check_input_len, tensor_bytes};
use crate::graph::steps::{encode, Step};
use crate::graph::timestamps::{profile_steps, PassTimer};
use std::ops::Range;
use std::time::Instant;

/// What the backward pass starts from: labels (through the loss) or a given output
/// gradient.
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

impl TrainPlan {
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
        self.read_gradients()
    }
}
