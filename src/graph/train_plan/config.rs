//! What to train and how: the options a training plan is compiled with.

use crate::ops::{TrainSettings, UpdateRule};
use std::collections::HashMap;

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
