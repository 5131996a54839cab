//! What training hands back: a step's loss and logits, gradients, and the metrics that
//! queued steps accumulate on the GPU.

use crate::graph::params::ParamStore;

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
