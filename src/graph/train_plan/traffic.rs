//! What one training step dispatches, reads and writes, per phase, counted from the
//! plan's bindings (see `graph::traffic` for the rule).

use super::build::TrainPlan;
use crate::graph::steps::Step;
use crate::graph::traffic::{PhaseTraffic, TrainTraffic};
use std::ops::Range;

impl TrainPlan {
    /// Dispatches and bytes of one `step`: forward, loss, backward and update (empty
    /// without an update rule), counted when the plan was built, not measured.
    pub fn traffic(&self) -> TrainTraffic {
        let phase = |range: &Range<usize>| {
            PhaseTraffic::total(self.steps[range.clone()].iter().map(Step::traffic))
        };
        TrainTraffic::new(
            phase(&self.forward),
            phase(&self.loss_steps),
            phase(&self.backward),
            phase(&self.update),
        )
    }
}
