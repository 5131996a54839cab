//! The collective pieces the training loop calls in a data-parallel run: sharing the
//! starting point, agreeing on the steps of an epoch, pooling metrics and evaluation, and
//! checking that the replicas still hold the same weights. With one process (`Solo`) every
//! one of them is the identity.

use super::evaluate::EvalResult;
use super::network::Network;
use crate::gpu::{Gpu, KernelChoice, TunedKernel};
use crate::graph::{ParamStore, Replicas, RunningMetrics};
use anyhow::bail;

/// The settings once lived here; kept reachable at their old path.
pub use super::parallel::{ParallelOptions, DEFAULT_BUCKET_BYTES};

/// Rank 0's values on every rank.
pub(crate) fn from_rank0(replicas: &dyn Replicas, values: &[f64]) -> anyhow::Result<Vec<f64>> {
    let all = replicas.all_gather(values)?;
    Ok(all[..values.len()].to_vec())
}

/// Runs `build` (which compiles plans) on every rank with rank 0's kernels: ranks timing
/// candidates for themselves could pick different ones, whose different orders of summation
/// would set the replicas apart. Rank 0 builds first, choosing as it was told to; the others
/// then follow its setting and its choices, timing nothing.
pub(crate) fn build_with_rank0_kernels<T>(
    gpu: &Gpu,
    replicas: &dyn Replicas,
    build: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if replicas.count() == 1 {
        return build();
    }
    if replicas.rank() == 0 {
        let built = build()?;
        rank0_kernels(gpu, replicas)?;
        return Ok(built);
    }
    let rank0 = rank0_kernels(gpu, replicas)?;
    let choice = match rank0.choice.as_str() {
        "on" | "cached" => KernelChoice::Cached,
        "off" => KernelChoice::Defaults,
        name => KernelChoice::Force(name.to_string()),
    };
    gpu.follow_tuning(choice, rank0.choices);
    build()
}

/// Rank 0's kernel setting and choices, on every rank.
fn rank0_kernels(gpu: &Gpu, replicas: &dyn Replicas) -> anyhow::Result<RankZeroKernels> {
    let local = RankZeroKernels {
        choice: gpu.kernel_choice().to_string(),
        choices: gpu.tuned_kernels(),
    };
    let bytes = broadcast_bytes(replicas, serde_json::to_vec(&local)?)?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Rank 0's kernel setting (as MOBILENET_TUNE spells it) and its choices.
#[derive(serde::Serialize, serde::Deserialize)]
struct RankZeroKernels {
    choice: String,
    choices: std::collections::BTreeMap<String, TunedKernel>,
}

/// Rank 0's bytes on every rank, carried as f32s (exact for values below 2^24).
fn broadcast_bytes(replicas: &dyn Replicas, bytes: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let mut len = [bytes.len() as f32];
    replicas.broadcast(&mut len)?;
    let mut values: Vec<f32> = bytes.iter().map(|&b| b as f32).collect();
    values.resize(len[0] as usize, 0.0);
    replicas.broadcast(&mut values)?;
    Ok(values.into_iter().map(|v| v as u8).collect())
}

/// Every replica starts from rank 0's weights and optimizer state (its initialisation or
/// the checkpoint it resumed).
pub(crate) fn share_state(network: &Network, replicas: &dyn Replicas) -> anyhow::Result<()> {
    if replicas.count() == 1 {
        return Ok(());
    }
    let mut flat = network.flat_state()?;
    replicas.broadcast(&mut flat)?;
    if replicas.rank() != 0 {
        network.load_flat_state(&flat)?;
    }
    Ok(())
}

/// The steps every replica takes this epoch: the fewest any of them has batches for, as
/// collectives pair up step by step.
pub(crate) fn common_steps(replicas: &dyn Replicas, batches: usize) -> anyhow::Result<usize> {
    let all = replicas.all_gather(&[batches as f64])?;
    Ok(all.iter().fold(batches as f64, |a, &b| a.min(b)) as usize)
}

/// The replicas' running metrics summed; a non-finite loss names the ranks it came from.
pub(crate) fn pooled_metrics(
    replicas: &dyn Replicas,
    local: RunningMetrics,
) -> anyhow::Result<(RunningMetrics, Vec<usize>)> {
    let all = replicas.all_gather(&[local.loss_sum, local.correct as f64, local.samples as f64])?;
    let mut total = RunningMetrics::default();
    let mut diverged = Vec::new();
    for (rank, part) in all.chunks(3).enumerate() {
        if !part[0].is_finite() {
            diverged.push(rank);
        }
        total += RunningMetrics {
            loss_sum: part[0],
            correct: part[1] as usize,
            samples: part[2] as usize,
        };
    }
    Ok((total, diverged))
}

/// An evaluation sharded over the replicas, pooled into the whole split's figures.
pub(crate) fn pooled_eval(
    replicas: &dyn Replicas,
    local: EvalResult,
) -> anyhow::Result<EvalResult> {
    if replicas.count() == 1 {
        return Ok(local);
    }
    let n = local.count as f64;
    let mut mine = vec![local.loss * n, local.top1 * n, local.top5 * n, n];
    mine.extend(local.confusion.iter().flatten().map(|&v| v as f64));
    let total = replicas.sum(&mine)?;
    let count = total[3].max(1.0);
    let classes = local.confusion.len();
    Ok(EvalResult {
        loss: total[0] / count,
        top1: total[1] / count,
        top5: total[2] / count,
        count: total[3] as usize,
        confusion: total[4..]
            .chunks(classes.max(1))
            .map(|row| row.iter().map(|&v| v as u64).collect())
            .take(classes)
            .collect(),
        bad_files: local.bad_files,
        // Per-image predictions stay on their rank: the pooled figures have none.
        predictions: Vec::new(),
    })
}

/// FNV-1a over the bits of each tensor, as two exact halves (collectives move f64s).
fn tensor_checksums(weights: &ParamStore) -> Vec<f64> {
    weights
        .iter()
        .flat_map(|(_, _, values)| {
            let hash = values.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
                (h ^ v.to_bits() as u64).wrapping_mul(0x0100_0000_01b3)
            });
            [(hash >> 32) as f64, (hash & 0xffff_ffff) as f64]
        })
        .collect()
}

/// Stops the run when a replica's weights are not bit for bit rank 0's: the replicas
/// would go on training different networks.
pub(crate) fn check_replicas_agree(
    replicas: &dyn Replicas,
    weights: &ParamStore,
    epoch: usize,
) -> anyhow::Result<()> {
    if replicas.count() == 1 {
        return Ok(());
    }
    let mine = tensor_checksums(weights);
    let all = replicas.all_gather(&mine)?;
    let reference = &all[..mine.len()];
    for (rank, theirs) in all.chunks(mine.len().max(1)).enumerate().skip(1) {
        if let Some(at) = theirs.iter().zip(reference).position(|(a, b)| a != b) {
            let name = weights.iter().nth(at / 2).map_or("?", |(n, _, _)| n);
            bail!(
                "the replicas' weights differ after epoch {epoch}: rank {rank}'s {name} is not \
                 rank 0's; the data-parallel run stopped (ranks on different kinds of adapter or \
                 driver round differently; run every rank on the same kind)"
            );
        }
    }
    Ok(())
}
