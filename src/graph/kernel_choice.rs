//! Which kernel a dispatch runs on this device: the default, a forced one, or the fastest
//! of its candidates as measured here (once per shape; `gpu::Tuner` remembers).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::buffer_range::BufferRange;
use super::error::GraphError;
use crate::gpu::{storage_buffer, CompiledEntry, Gpu, KernelChoice, Shader, TunedKernel};
use crate::ops::{Alternatives, Candidate, Dispatch, KernelCaps, Slot};

/// A candidate taking this many times the best so far is not timed further.
const HOPELESS: u32 = 3;
/// How much faster than the default a kernel must be to replace it (timings on a shared
/// machine vary by several percent from run to run).
const CLEAR_WIN: f64 = 1.1;

/// The dispatch to build and, where there were alternatives, the chosen kernel's name.
pub(crate) fn choose(
    gpu: &Gpu,
    label: &str,
    dispatch: &Dispatch,
    resolve: &dyn Fn(Slot) -> Option<BufferRange>,
) -> Result<(Dispatch, Option<&'static str>), GraphError> {
    let Some(alternatives) = crate::ops::alternatives(dispatch, &KernelCaps::of(gpu)) else {
        return Ok((dispatch.clone(), None));
    };
    let lookup = |key: &str| gpu.tuner().lookup(key);
    let chosen = match decide(gpu, &alternatives, &lookup) {
        Decision::Take(candidate) => candidate,
        Decision::Measure => measure(gpu, label, &alternatives, resolve)?,
    };
    Ok((chosen.dispatch.clone(), Some(chosen.name)))
}

/// The entry points `choose` will compile for `dispatch`: the one it takes, or every
/// candidate it times (an untimed default cannot win a measurement).
pub(crate) fn entries_to_compile(gpu: &Gpu, dispatch: &Dispatch) -> Vec<(Shader, &'static str)> {
    let Some(alternatives) = crate::ops::alternatives(dispatch, &KernelCaps::of(gpu)) else {
        return vec![(dispatch.shader, dispatch.entry)];
    };
    let entry = |c: &Candidate| (c.dispatch.shader, c.dispatch.entry);
    let peek = |key: &str| gpu.tuner().peek(key);
    match decide(gpu, &alternatives, &peek) {
        Decision::Take(candidate) => vec![entry(candidate)],
        Decision::Measure => alternatives.timed().map(entry).collect(),
    }
}

/// What `choose` does with a dispatch's alternatives on this device.
enum Decision<'a> {
    Take(&'a Candidate),
    /// Time the candidates (nothing known for this shape yet).
    Measure,
}

/// `lookup` reads the tuner's choice for a shape (`Tuner::lookup`, which counts it as reused,
/// or `Tuner::peek`).
fn decide<'a>(
    gpu: &Gpu,
    alternatives: &'a Alternatives,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Decision<'a> {
    let named = |name: &str| alternatives.candidates.iter().find(|c| c.name == name);
    let default = &alternatives.candidates[0];
    let cached = || lookup(&alternatives.key).as_deref().and_then(named);
    Decision::Take(match gpu.kernel_choice() {
        KernelChoice::Defaults => default,
        KernelChoice::Force(name) => named(&name).unwrap_or(default),
        KernelChoice::Cached => cached().unwrap_or(default),
        KernelChoice::Measure if alternatives.timed().count() < 2 => default,
        KernelChoice::Measure => match cached() {
            Some(candidate) => candidate,
            None => return Decision::Measure,
        },
    })
}

/// Times every candidate on the plan's buffers, those it may write replaced by scratch (so
/// that no result, parameter or running statistic of the plan is touched), and records the
/// fastest. Each candidate is timed once; those near the fastest (the ones the choice is
/// between) are timed again, in turn, `ROUNDS` times in all, each keeping its fastest time:
/// one slow minute on a shared machine would otherwise decide for its owner until the cache
/// is rebuilt.
fn measure<'a>(
    gpu: &Gpu,
    label: &str,
    alternatives: &'a Alternatives,
    resolve: &dyn Fn(Slot) -> Option<BufferRange>,
) -> Result<&'a Candidate, GraphError> {
    let start = Instant::now();
    // One scratch buffer per written binding, shared by the candidates.
    let mut scratch: BTreeMap<u32, wgpu::Buffer> = BTreeMap::new();
    let mut times: Vec<(Duration, &Candidate)> = Vec::new();
    for candidate in alternatives.timed() {
        let give_up = times.iter().map(|(time, _)| *time * HOPELESS).min();
        let timing = Timing::First { give_up };
        let time = time_candidate(gpu, &mut scratch, label, candidate, resolve, timing)?;
        times.push((time, candidate));
    }
    for _ in 1..ROUNDS {
        let timed: Vec<Duration> = times.iter().map(|(time, _)| *time).collect();
        for i in contenders(&timed) {
            let timing = Timing::Again { before: timed[i] };
            let time = time_candidate(gpu, &mut scratch, label, times[i].1, resolve, timing)?;
            times[i].0 = times[i].0.min(time);
        }
    }
    let micros = times
        .iter()
        .map(|(time, candidate)| (candidate.name.to_string(), time.as_secs_f64() * 1e6))
        .collect();
    let best = times.iter().min_by_key(|(time, _)| *time).copied();
    let winner = clear_winner(alternatives, best, &micros);
    let tuned = TunedKernel {
        kernel: winner.name.to_string(),
        micros,
    };
    gpu.tuner()
        .record(&alternatives.key, tuned, start.elapsed());
    Ok(winner)
}

/// Rounds of timing for the contenders (see `measure`).
const ROUNDS: usize = 3;
/// A candidate within this factor of the fastest is a contender.
const CONTENDER: f64 = 1.3;

/// The indices of the candidates timed within `CONTENDER` of the fastest, if there are two
/// or more of them (one alone has won).
fn contenders(times: &[Duration]) -> Vec<usize> {
    let Some(fastest) = times.iter().min() else {
        return Vec::new();
    };
    let near: Vec<usize> = (0..times.len())
        .filter(|&i| times[i].as_secs_f64() <= fastest.as_secs_f64() * CONTENDER)
        .collect();
    if near.len() < 2 {
        return Vec::new();
    }
    near
}

/// A candidate's first timing (not repeated past `give_up`), or a later one of a candidate
/// first timed at `before`.
#[derive(Clone, Copy)]
enum Timing {
    First { give_up: Option<Duration> },
    Again { before: Duration },
}

/// One timing of `candidate` on the plan's buffers, its writes to scratch.
fn time_candidate(
    gpu: &Gpu,
    scratch: &mut BTreeMap<u32, wgpu::Buffer>,
    label: &str,
    candidate: &Candidate,
    resolve: &dyn Fn(Slot) -> Option<BufferRange>,
    timing: Timing,
) -> Result<Duration, GraphError> {
    let dispatch = &candidate.dispatch;
    let compiled = gpu.pipeline(dispatch.shader, dispatch.entry)?;
    let buffers = bind_writes_to_scratch(gpu, scratch, label, dispatch, &compiled, resolve)?;
    let refs: Vec<(u32, wgpu::BufferBinding)> = buffers
        .iter()
        .map(|(b, range)| (*b, range.binding()))
        .collect();
    let (uniform, workgroups) = (&dispatch.uniform, dispatch.workgroups);
    Ok(match timing {
        Timing::First { give_up } => {
            gpu.time_dispatch(&compiled, uniform, &refs, workgroups, give_up)?
        }
        Timing::Again { before } => {
            gpu.time_dispatch_again(&compiled, uniform, &refs, workgroups, before)?
        }
    })
}

/// The buffers of `dispatch` as the plan binds them, but each one it may write replaced by
/// a scratch buffer of the same size (one per binding, kept in `scratch` for the next
/// candidate).
fn bind_writes_to_scratch(
    gpu: &Gpu,
    scratch: &mut BTreeMap<u32, wgpu::Buffer>,
    label: &str,
    dispatch: &Dispatch,
    compiled: &CompiledEntry,
    resolve: &dyn Fn(Slot) -> Option<BufferRange>,
) -> Result<Vec<(u32, BufferRange)>, GraphError> {
    let mut buffers = bind(label, dispatch, compiled, resolve)?;
    for (binding, range) in &mut buffers {
        if compiled.writable.contains(binding) {
            let size = range.bytes();
            let buffer = scratch
                .entry(*binding)
                .or_insert_with(|| storage_buffer(gpu, "tuning scratch", size))
                .clone();
            *range = buffer.into();
        }
    }
    Ok(buffers)
}

/// The fastest candidate if it is clearly faster than the default, else the default:
/// near-ties are timing noise, and a kernel timed alone can lose a few percent inside the
/// plan.
fn clear_winner<'a>(
    alternatives: &'a Alternatives,
    fastest: Option<(Duration, &'a Candidate)>,
    micros: &BTreeMap<String, f64>,
) -> &'a Candidate {
    let default = &alternatives.candidates[0];
    let default_time = micros.get(default.name).copied().unwrap_or(f64::INFINITY);
    match fastest {
        Some((time, candidate)) if time.as_secs_f64() * 1e6 * CLEAR_WIN < default_time => candidate,
        _ => default,
    }
}

/// The buffer of every binding the compiled entry point reads, besides the uniform block.
pub(crate) fn bind(
    label: &str,
    dispatch: &Dispatch,
    compiled: &CompiledEntry,
    resolve: &dyn Fn(Slot) -> Option<BufferRange>,
) -> Result<Vec<(u32, BufferRange)>, GraphError> {
    compiled
        .bindings
        .iter()
        .filter(|&&b| b != 0)
        .map(|&binding| {
            let slot = dispatch
                .bindings
                .iter()
                .find(|(b, _)| *b == binding)
                .map(|(_, slot)| *slot);
            let buffer = slot.and_then(resolve).ok_or_else(|| GraphError::Binding {
                op: label.to_string(),
                entry: format!("{}:{}", dispatch.shader, dispatch.entry),
                binding,
                slot: slot.map(|s| format!("{s:?}")),
            })?;
            Ok((binding, buffer))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn candidates_near_the_fastest_are_timed_again() {
        // 15 ms against 19 (as 16x32 and 32x32 were once timed on a busy host): the one timed
        // slower may only have been unlucky, so both get their rounds.
        assert_eq!(contenders(&ms(&[60, 15, 19])), vec![1, 2]);
        assert_eq!(contenders(&ms(&[100, 129, 131, 200])), vec![0, 1]);
    }

    #[test]
    fn a_clear_winner_is_not_timed_again() {
        assert!(contenders(&ms(&[10, 14, 40])).is_empty());
        assert!(contenders(&ms(&[7])).is_empty());
        assert!(contenders(&[]).is_empty());
    }
}
