//! Timing helpers every benchmark shares: warm-up then timed runs of a plan, random
//! inputs, per-dispatch profiles.

use super::report::{ms, BenchOptions, ProfileRow};
use rand::Rng;
use std::time::Duration;

pub(super) fn profile_rows(rows: Vec<(String, Duration)>) -> Vec<ProfileRow> {
    rows.into_iter()
        .map(|(step, time)| ProfileRow { step, ms: ms(time) })
        .collect()
}

/// Normalised-looking input for timing: uniform in [-1, 1).
pub(super) fn random_input(rng: &mut impl Rng, shape: &[usize]) -> Vec<f32> {
    (0..shape.iter().product::<usize>())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect()
}

/// Wall-clock and GPU times (ms) of `options.iters` runs after `options.warmup` untimed ones.
pub(super) fn time_plan(
    plan: &crate::graph::Plan,
    input: &[f32],
    options: &BenchOptions,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    for _ in 0..options.warmup {
        plan.run(input)?;
    }
    let mut wall = Vec::new();
    let mut device = Vec::new();
    for _ in 0..options.iters {
        let (_, timing) = plan.run_timed(input)?;
        wall.push(ms(timing.wall));
        if let Some(t) = timing.gpu {
            device.push(ms(t));
        }
    }
    Ok((wall, device))
}
