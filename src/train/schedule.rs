//! Learning-rate schedules, evaluated per step from the step index alone (so a resumed
//! run continues the same curve).

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// The paper's (Inception V3's) step decay: x `factor` every `every_epochs` epochs.
    StepDecay {
        factor: f64,
        every_epochs: f64,
    },
    /// Cosine from the base rate down to `min_lr` over the whole run.
    Cosine {
        min_lr: f64,
    },
    Constant,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub base_lr: f64,
    /// Linear warm-up from ~0 to the base rate over this many epochs (fractions allowed).
    pub warmup_epochs: f64,
}

impl Schedule {
    /// The paper's recipe: 0.045, x0.94 every 2 epochs.
    pub fn paper() -> Self {
        Schedule {
            kind: ScheduleKind::StepDecay {
                factor: 0.94,
                every_epochs: 2.0,
            },
            base_lr: 0.045,
            warmup_epochs: 0.0,
        }
    }

    /// The learning rate at `step` (0-based) of a run of `total_epochs` epochs.
    pub fn lr_at(&self, step: usize, steps_per_epoch: usize, total_epochs: usize) -> f64 {
        let per_epoch = steps_per_epoch.max(1) as f64;
        let epoch = step as f64 / per_epoch;
        let warmup_steps = self.warmup_epochs * per_epoch;
        if (step as f64) < warmup_steps {
            return self.base_lr * (step as f64 + 1.0) / (warmup_steps + 1.0);
        }
        match self.kind {
            ScheduleKind::StepDecay {
                factor,
                every_epochs,
            } => self.base_lr * factor.powf((epoch / every_epochs.max(1e-9)).floor()),
            ScheduleKind::Cosine { min_lr } => {
                let total = (total_epochs.max(1) as f64 * per_epoch - warmup_steps).max(1.0);
                let progress = ((step as f64 - warmup_steps) / total).clamp(0.0, 1.0);
                min_lr
                    + 0.5
                        * (self.base_lr - min_lr)
                        * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            ScheduleKind::Constant => self.base_lr,
        }
    }
}

/// The schedule names the CLI accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleName {
    Step,
    Cosine,
    Constant,
}

impl FromStr for ScheduleName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "step" | "exponential" => Ok(ScheduleName::Step),
            "cosine" => Ok(ScheduleName::Cosine),
            "constant" => Ok(ScheduleName::Constant),
            other => Err(format!(
                "unknown schedule {other:?}; expected step, cosine or constant"
            )),
        }
    }
}

impl fmt::Display for ScheduleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScheduleName::Step => "step",
            ScheduleName::Cosine => "cosine",
            ScheduleName::Constant => "constant",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_schedule_decays_every_two_epochs() {
        let s = Schedule::paper();
        assert_eq!(s.lr_at(0, 100, 10), 0.045);
        assert_eq!(s.lr_at(199, 100, 10), 0.045);
        assert!((s.lr_at(200, 100, 10) - 0.045 * 0.94).abs() < 1e-12);
        assert!((s.lr_at(450, 100, 10) - 0.045 * 0.94 * 0.94).abs() < 1e-12);
    }

    #[test]
    fn cosine_ends_at_min_and_warmup_ramps() {
        let s = Schedule {
            kind: ScheduleKind::Cosine { min_lr: 0.001 },
            base_lr: 0.1,
            warmup_epochs: 1.0,
        };
        assert!(s.lr_at(0, 10, 5) < 0.02);
        assert!(s.lr_at(9, 10, 5) < 0.1 && s.lr_at(9, 10, 5) > 0.08);
        assert!((s.lr_at(10, 10, 5) - 0.1).abs() < 1e-9);
        assert!((s.lr_at(49, 10, 5) - 0.001).abs() < 1e-3);
        assert!(s.lr_at(30, 10, 5) < s.lr_at(20, 10, 5));
    }
}
