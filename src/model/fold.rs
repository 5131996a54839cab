//! Batchnorm folding for inference: y = act(gamma * (conv(x) - mean) / sqrt(var + eps) + beta)
//! becomes y = act(conv'(x) + bias) with the scale multiplied into the convolution's weights.

use super::layers::{conv_bn_pair, CONV_LAYERS};
use super::{FoldError, MobileNetV1Config, ModelError};
use crate::gpu::Gpu;
use crate::graph::{ParamStore, Plan};

/// The parameters of `MobileNetV1Config::build_folded` (or a slice of it) from those of the
/// unfolded network: each convolution present in `params` gets its batchnorm's scale in its
/// weights and a `<conv>.bias`; batchnorm tensors are dropped and everything else (the
/// classifier) is copied. Computed in f64 so folding adds no error of its own beyond the
/// final rounding. Errors name every convolution whose batchnorm is missing or mis-shaped.
pub fn fold_batchnorm(params: &ParamStore, eps: f32) -> Result<ParamStore, FoldError> {
    let mut folded = ParamStore::new();
    let mut problems = Vec::new();
    let mut consumed = std::collections::HashSet::new();
    for layer in 0..CONV_LAYERS {
        let [conv, norm] = conv_bn_pair(layer);
        let weight_name = format!("{conv}.weight");
        let (Some(weight), Some(shape)) = (params.get(&weight_name), params.shape(&weight_name))
        else {
            continue;
        };
        let bn: Vec<Option<&[f32]>> = ["gamma", "beta", "running_mean", "running_var"]
            .iter()
            .map(|suffix| params.get(&format!("{norm}.{suffix}")))
            .collect();
        let channels = *shape.last().unwrap_or(&0);
        let [Some(gamma), Some(beta), Some(mean), Some(var)] = bn[..] else {
            problems.push(format!(
                "{norm}: batchnorm tensors missing for {weight_name}"
            ));
            continue;
        };
        if [gamma, beta, mean, var].iter().any(|t| t.len() != channels) {
            problems.push(format!(
                "{norm}: batchnorm tensors must have {channels} values, as {weight_name} has output channels"
            ));
            continue;
        }
        let (scaled, bias) = fold_one(weight, [gamma, beta, mean, var], eps);
        folded.insert(&weight_name, shape.to_vec(), scaled);
        folded.insert(&format!("{conv}.bias"), vec![channels], bias);
        consumed.insert(weight_name);
        for suffix in ["gamma", "beta", "running_mean", "running_var"] {
            consumed.insert(format!("{norm}.{suffix}"));
        }
    }
    for (name, shape, values) in params.iter() {
        if !consumed.contains(name) {
            folded.insert(name, shape.to_vec(), values.to_vec());
        }
    }
    if problems.is_empty() {
        Ok(folded)
    } else {
        Err(FoldError(problems))
    }
}

/// One convolution's weights scaled by its batch norm (`[gamma, beta, running mean,
/// running variance]`, one value per output channel) and the bias that norm leaves.
fn fold_one(
    weight: &[f32],
    [gamma, beta, mean, var]: [&[f32]; 4],
    eps: f32,
) -> (Vec<f32>, Vec<f32>) {
    let channels = gamma.len();
    let scale: Vec<f64> = gamma
        .iter()
        .zip(var)
        .map(|(&g, &v)| g as f64 / (v as f64 + eps as f64).sqrt())
        .collect();
    // Every weight layout here keeps the output channel on the last axis.
    let scaled: Vec<f32> = weight
        .iter()
        .enumerate()
        .map(|(i, &w)| (w as f64 * scale[i % channels]) as f32)
        .collect();
    let bias: Vec<f32> = (0..channels)
        .map(|c| (beta[c] as f64 - mean[c] as f64 * scale[c]) as f32)
        .collect();
    (scaled, bias)
}

impl MobileNetV1Config {
    /// The compiled inference form for `batch` images with unfolded `params` (as trained and
    /// stored) folded in: what predict, eval and the inference benchmark run.
    pub fn inference_plan(
        &self,
        gpu: &Gpu,
        params: &ParamStore,
        batch: usize,
    ) -> Result<Plan, ModelError> {
        let folded = fold_batchnorm(params, self.bn_eps)?;
        let plan = self.build_folded(batch)?.graph.compile(gpu)?;
        plan.load_params(&folded)?;
        Ok(plan)
    }
}
