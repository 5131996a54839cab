//! What a training plan needs from the other replicas of a data-parallel run: the same
//! network training on other parts of each batch, one per process (rank). The collective
//! engine behind it (MPI, see `train::distributed`) is not the graph's business; a single
//! process is `Solo`, for which every collective is the identity.

use std::time::Instant;

/// A collective failed (a peer died, the engine reported an error).
#[derive(Debug, thiserror::Error)]
#[error("collective operation failed: {0}")]
pub struct ReplicaError(pub String);

/// A sum over all replicas that was started and may still be on its way.
pub trait PendingSum {
    /// Whether it has finished; drives the engine's progress.
    fn test(&mut self) -> Result<bool, ReplicaError>;
    /// Waits for it and returns the element-wise sum over all replicas.
    fn wait(self: Box<Self>) -> Result<Vec<f32>, ReplicaError>;
}

/// The replicas of a data-parallel run, seen from one of them. Every method is collective:
/// all replicas call the same methods in the same order, or the run deadlocks. The
/// blocking methods and the started sums may use separate channels, so a blocking call
/// may come while sums are on their way.
pub trait Replicas {
    /// This replica's index, 0 for the one that writes the run's files.
    fn rank(&self) -> usize;
    /// How many replicas train together.
    fn count(&self) -> usize;
    /// Every replica's `local` (all equally long), concatenated in rank order.
    fn all_gather(&self, local: &[f64]) -> Result<Vec<f64>, ReplicaError>;
    /// Replaces `values` on every replica by rank 0's.
    fn broadcast(&self, values: &mut [f32]) -> Result<(), ReplicaError>;
    /// Starts summing `values` over all replicas without waiting for it.
    fn start_sum(&self, values: Vec<f32>) -> Result<Box<dyn PendingSum>, ReplicaError>;

    /// The element-wise sum over the replicas, added in rank order, so that it is the
    /// same bits on every replica.
    fn sum(&self, local: &[f64]) -> Result<Vec<f64>, ReplicaError> {
        let all = self.all_gather(local)?;
        let mut total = vec![0.0; local.len()];
        for part in all.chunks(local.len().max(1)) {
            for (t, v) in total.iter_mut().zip(part) {
                *t += v;
            }
        }
        Ok(total)
    }
}

/// A run of one process: nothing to exchange.
#[derive(Clone, Copy, Debug, Default)]
pub struct Solo;

struct Finished(Vec<f32>);

impl PendingSum for Finished {
    fn test(&mut self) -> Result<bool, ReplicaError> {
        Ok(true)
    }

    fn wait(self: Box<Self>) -> Result<Vec<f32>, ReplicaError> {
        Ok(self.0)
    }
}

impl Replicas for Solo {
    fn rank(&self) -> usize {
        0
    }

    fn count(&self) -> usize {
        1
    }

    fn all_gather(&self, local: &[f64]) -> Result<Vec<f64>, ReplicaError> {
        Ok(local.to_vec())
    }

    fn broadcast(&self, _values: &mut [f32]) -> Result<(), ReplicaError> {
        Ok(())
    }

    fn start_sum(&self, values: Vec<f32>) -> Result<Box<dyn PendingSum>, ReplicaError> {
        Ok(Box::new(Finished(values)))
    }
}

/// Where the time of one replicated step went, measured on the host.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepTiming {
    /// From the step's start until the GPU had finished the last gradient bucket
    /// (forward, loss, backward and, under sync-BN, its exchanges).
    pub compute: std::time::Duration,
    /// Time during which at least one gradient sum was on its way.
    pub communication: std::time::Duration,
    /// The part of `communication` that overlapped the backward pass.
    pub hidden: std::time::Duration,
    /// Gradient bytes this replica sent into the sums.
    pub gradient_bytes: u64,
}

impl std::ops::AddAssign for StepTiming {
    fn add_assign(&mut self, other: StepTiming) {
        self.compute += other.compute;
        self.communication += other.communication;
        self.hidden += other.hidden;
        self.gradient_bytes += other.gradient_bytes;
    }
}

impl StepTiming {
    /// Times from the step's start, the instant the backward pass finished, and each
    /// gradient sum's (start, end).
    pub(crate) fn measure(
        start: Instant,
        compute_end: Instant,
        sums: &[(Instant, Instant)],
        gradient_bytes: u64,
    ) -> StepTiming {
        let mut intervals = sums.to_vec();
        intervals.sort_by_key(|&(from, _)| from);
        let (mut busy, mut hidden) = (0.0, 0.0);
        let mut open: Option<(Instant, Instant)> = None;
        let mut close = |(from, to): (Instant, Instant)| {
            busy += to.duration_since(from).as_secs_f64();
            let overlap_end = to.min(compute_end);
            if overlap_end > from {
                hidden += overlap_end.duration_since(from).as_secs_f64();
            }
        };
        for (from, to) in intervals {
            open = match open {
                Some((a, b)) if from <= b => Some((a, b.max(to))),
                Some(done) => {
                    close(done);
                    Some((from, to))
                }
                None => Some((from, to)),
            };
        }
        if let Some(done) = open {
            close(done);
        }
        StepTiming {
            compute: compute_end.duration_since(start),
            communication: std::time::Duration::from_secs_f64(busy),
            hidden: std::time::Duration::from_secs_f64(hidden),
            gradient_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn overlapping_sums_count_once_and_hide_up_to_the_end_of_compute() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Sums 10..40 and 30..60 overlap (50 ms busy); 80..90 is apart; compute ends at 50.
        let sums = [(at(30), at(60)), (at(10), at(40)), (at(80), at(90))];
        let timing = StepTiming::measure(t0, at(50), &sums, 12);
        assert_eq!(timing.compute, Duration::from_millis(50));
        assert_eq!(timing.communication.as_millis(), 60);
        assert_eq!(timing.hidden.as_millis(), 40);
        assert_eq!(timing.gradient_bytes, 12);
    }

    #[test]
    fn solo_sums_are_its_own_values() {
        let solo = Solo;
        assert_eq!(solo.sum(&[1.5, -2.0]).unwrap(), vec![1.5, -2.0]);
        let pending = solo.start_sum(vec![3.0]).unwrap();
        assert_eq!(pending.wait().unwrap(), vec![3.0]);
    }
}
