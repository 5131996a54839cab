//! What a plan's dispatches read and write, counted from their bindings when the plan is
//! built (never measured), so that a change which merges dispatches can show what it saved.
//!
//! The rule, per dispatch: every storage binding its entry point uses counts once, at the
//! size bound; one the entry point stores to counts as written, any other as read.
//! Parameters, optimizer state and the running metrics are only ever updated in place, so
//! a written one counts as read as well; other written bindings (outputs, gradients,
//! partial sums, even a weight gradient that a later chunk adds into) count as written
//! only. Batch tensors are bound at their own size even where their buffer is shared and
//! larger (gradients: `Chunks::bind`), so the bound size is the tensor's. Uniform blocks
//! and placeholder bindings (`Slot::Unused`, never read) count nothing.

use super::buffer_range::BufferRange;
use crate::gpu::CompiledEntry;
use crate::ops::{Dispatch, Slot};
use std::fmt;

/// Bytes read and bytes written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Bytes {
    pub read: u64,
    pub written: u64,
}

impl std::ops::AddAssign for Bytes {
    fn add_assign(&mut self, other: Bytes) {
        self.read += other.read;
        self.written += other.written;
    }
}

/// What one dispatch reads and writes, by kind of buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StepTraffic {
    /// Tensors of the batch: activations, their gradients, labels, loss and metrics.
    pub activations: Bytes,
    /// Scratch (reduction partials, batch-norm statistics, also where the next op reads
    /// them to normalise its input) and the stem's workspace. Shared scratch is sized for
    /// its largest user, so this is an upper bound.
    pub scratch: Bytes,
    /// Parameters (batch norm's running statistics included), their gradients and the
    /// optimizer's state.
    pub params: Bytes,
}

impl std::ops::AddAssign<&StepTraffic> for StepTraffic {
    fn add_assign(&mut self, other: &StepTraffic) {
        self.activations += other.activations;
        self.scratch += other.scratch;
        self.params += other.params;
    }
}

impl StepTraffic {
    /// The traffic of `dispatch` bound to `buffers` (binding, range).
    pub(crate) fn of(
        dispatch: &Dispatch,
        compiled: &CompiledEntry,
        buffers: &[(u32, BufferRange)],
    ) -> StepTraffic {
        let mut traffic = StepTraffic::default();
        // What this entry point stores to, not what its module declares `read_write`:
        // batch norm's backward only reads the `output` its forward writes.
        let stores = &compiled.stored;
        let mut counted = Vec::new();
        for (binding, range) in buffers {
            let Some(slot) = dispatch
                .bindings
                .iter()
                .find(|(b, _)| b == binding)
                .map(|&(_, slot)| slot)
            else {
                continue;
            };
            // A buffer bound twice (a placeholder aliasing another binding) moves once.
            if counted.contains(&slot) {
                continue;
            }
            counted.push(slot);
            let bytes = range.bytes();
            let Some(class) = traffic.class(slot) else {
                continue;
            };
            if stores.contains(binding) {
                class.written += bytes;
                if matches!(slot, Slot::Param(_) | Slot::OptState(_) | Slot::Metrics) {
                    class.read += bytes;
                }
            } else {
                class.read += bytes;
            }
        }
        traffic
    }

    /// Where a binding of `slot` counts; `None` for uniform blocks and placeholders.
    fn class(&mut self, slot: Slot) -> Option<&mut Bytes> {
        match slot {
            Slot::Input
            | Slot::Output
            | Slot::GradOutput
            | Slot::GradInput
            | Slot::Labels
            | Slot::Loss
            | Slot::Metrics => Some(&mut self.activations),
            Slot::Scratch(_)
            | Slot::Workspace
            | Slot::InputNorm
            | Slot::InputPartials
            | Slot::OutputPartials
            | Slot::OutputNorm
            | Slot::BesidePartials => Some(&mut self.scratch),
            Slot::Param(_)
            | Slot::EpilogueParam(_)
            | Slot::ParamGrad(_)
            | Slot::OptState(_)
            | Slot::BesideGrad => Some(&mut self.params),
            Slot::Hyper | Slot::Unused => None,
        }
    }
}

/// The dispatches of a run of steps (a phase of a training step) and what they move.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PhaseTraffic {
    pub dispatches: usize,
    pub activations: Bytes,
    pub scratch: Bytes,
    pub params: Bytes,
}

impl PhaseTraffic {
    /// The sum over the steps' traffic.
    pub fn total<'a>(steps: impl IntoIterator<Item = &'a StepTraffic>) -> PhaseTraffic {
        let mut sum = StepTraffic::default();
        let mut dispatches = 0;
        for step in steps {
            sum += step;
            dispatches += 1;
        }
        PhaseTraffic {
            dispatches,
            activations: sum.activations,
            scratch: sum.scratch,
            params: sum.params,
        }
    }

    fn add(&mut self, other: &PhaseTraffic) {
        self.dispatches += other.dispatches;
        self.activations += other.activations;
        self.scratch += other.scratch;
        self.params += other.params;
    }
}

/// Dispatches and bytes of one training step, per phase and in all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TrainTraffic {
    pub forward: PhaseTraffic,
    /// Cross-entropy and the running metrics (none when training from an output gradient).
    pub loss: PhaseTraffic,
    pub backward: PhaseTraffic,
    pub update: PhaseTraffic,
    /// The four phases together.
    pub step: PhaseTraffic,
}

impl TrainTraffic {
    pub fn new(
        forward: PhaseTraffic,
        loss: PhaseTraffic,
        backward: PhaseTraffic,
        update: PhaseTraffic,
    ) -> TrainTraffic {
        let mut step = PhaseTraffic::default();
        for phase in [&forward, &loss, &backward, &update] {
            step.add(phase);
        }
        TrainTraffic {
            forward,
            loss,
            backward,
            update,
            step,
        }
    }
}

/// One line: "per step: N dispatches (forward .., loss .., backward .., update ..),
/// activations read .., written ..; scratch ..; parameters ..".
impl fmt::Display for TrainTraffic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let step = &self.step;
        write!(
            f,
            "per step: {} dispatches (forward {}, loss {}, backward {}, update {}), \
             activations read {}, written {}; scratch read {}, written {}; \
             parameters read {}, written {}",
            step.dispatches,
            self.forward.dispatches,
            self.loss.dispatches,
            self.backward.dispatches,
            self.update.dispatches,
            Size(step.activations.read),
            Size(step.activations.written),
            Size(step.scratch.read),
            Size(step.scratch.written),
            Size(step.params.read),
            Size(step.params.written),
        )
    }
}

/// Bytes in the largest binary unit that keeps the figure at 1 or more.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.2} {}", UNITS[unit])
    }
}
