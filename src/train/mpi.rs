//! The replicas of a data-parallel run as the ranks of an MPI job (Open MPI or MPICH,
//! through the `mpi` crate). Built with the `mpi` cargo feature.

use crate::graph::{PendingSum, ReplicaError, Replicas};
use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::raw::AsRaw;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;

/// This process's place in an MPI job.
pub struct MpiReplicas {
    /// Blocking collectives: metrics, batch-norm statistics, weights.
    world: SimpleCommunicator,
    /// Gradient sums on their way during the backward pass. Collectives on one
    /// communicator must come in the same order on every rank; on their own communicator
    /// the sums keep their order whatever blocking collective comes between.
    gradients: SimpleCommunicator,
    local_rank: usize,
    local_count: usize,
    /// Finalises MPI when dropped, so it comes last: fields drop in order, and the
    /// communicators must be freed before.
    _universe: mpi::environment::Universe,
}

impl MpiReplicas {
    /// Joins the job mpirun started this process in.
    pub fn join() -> anyhow::Result<MpiReplicas> {
        // wgpu and the loader run threads of their own; only this one calls MPI.
        let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Funneled)
            .ok_or_else(|| anyhow::anyhow!("MPI was already initialised in this process"))?;
        abort_job_on_panic();
        let world = universe.world();
        let gradients = world.duplicate();
        // Ranks that share this machine's memory share its adapters.
        let local = world.split_shared(world.rank());
        Ok(MpiReplicas {
            local_rank: local.rank() as usize,
            local_count: local.size() as usize,
            _universe: universe,
            world,
            gradients,
        })
    }

    /// This rank's index among the ranks on its machine.
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// How many ranks run on this machine.
    pub fn local_count(&self) -> usize {
        self.local_count
    }

    /// Stops every rank of the job (mpirun kills the others).
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

/// A panicking rank would otherwise unwind into MPI_Finalize and wait there for ranks
/// that wait for it: print the panic as usual, then stop the whole job.
fn abort_job_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("error: a rank panicked; stopping all ranks");
        // SAFETY: MPI is initialised (this hook is set right after) and not finalised
        // while the universe lives; MPI_Abort does not return.
        unsafe {
            mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, 101);
        }
    }));
}

fn check(code: std::os::raw::c_int, what: &str) -> Result<(), ReplicaError> {
    if code == mpi::ffi::MPI_SUCCESS as std::os::raw::c_int {
        Ok(())
    } else {
        Err(ReplicaError(format!("{what} returned MPI error {code}")))
    }
}

/// An MPI_Iallreduce on its way. The buffers are owned here and never reallocated while
/// the request lives; dropping it waits for the request.
struct MpiSum {
    send: Vec<f32>,
    recv: Vec<f32>,
    request: mpi::ffi::MPI_Request,
    done: bool,
}

impl PendingSum for MpiSum {
    fn test(&mut self) -> Result<bool, ReplicaError> {
        if !self.done {
            let mut flag = 0;
            // SAFETY: `request` came from MPI_Iallreduce and has not completed yet.
            let code = unsafe {
                mpi::ffi::MPI_Test(&mut self.request, &mut flag, mpi::ffi::RSMPI_STATUS_IGNORE)
            };
            check(code, "MPI_Test")?;
            self.done = flag != 0;
        }
        Ok(self.done)
    }

    fn wait(mut self: Box<Self>) -> Result<Vec<f32>, ReplicaError> {
        self.finish()?;
        Ok(std::mem::take(&mut self.recv))
    }
}

impl MpiSum {
    fn finish(&mut self) -> Result<(), ReplicaError> {
        if !self.done {
            // SAFETY: as in `test`; after MPI_Wait the request is freed.
            let code =
                unsafe { mpi::ffi::MPI_Wait(&mut self.request, mpi::ffi::RSMPI_STATUS_IGNORE) };
            self.done = true;
            check(code, "MPI_Wait")?;
        }
        Ok(())
    }
}

impl Drop for MpiSum {
    fn drop(&mut self) {
        // MPI still writes into `recv` until the request completes.
        let _ = self.finish();
    }
}

impl Replicas for MpiReplicas {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn count(&self) -> usize {
        self.world.size() as usize
    }

    fn all_gather(&self, local: &[f64]) -> Result<Vec<f64>, ReplicaError> {
        let mut all = vec![0.0; local.len() * self.count()];
        self.world.all_gather_into(local, &mut all[..]);
        Ok(all)
    }

    fn broadcast(&self, values: &mut [f32]) -> Result<(), ReplicaError> {
        self.world.process_at_rank(0).broadcast_into(values);
        Ok(())
    }

    fn start_sum(&self, values: Vec<f32>) -> Result<Box<dyn PendingSum>, ReplicaError> {
        let mut sum = Box::new(MpiSum {
            recv: vec![0.0; values.len()],
            send: values,
            // SAFETY: a plain handle, overwritten by MPI_Iallreduce below.
            request: unsafe { mpi::ffi::RSMPI_REQUEST_NULL },
            done: false,
        });
        let count = std::os::raw::c_int::try_from(sum.send.len())
            .map_err(|_| ReplicaError("a gradient bucket over 2^31 values".into()))?;
        // SAFETY: both buffers live in the box, which MPI_Wait (in `finish`) outlives.
        let code = unsafe {
            mpi::ffi::MPI_Iallreduce(
                sum.send.as_ptr().cast(),
                sum.recv.as_mut_ptr().cast(),
                count,
                f32::equivalent_datatype().as_raw(),
                SystemOperation::sum().as_raw(),
                self.gradients.as_raw(),
                &mut sum.request,
            )
        };
        if let Err(e) = check(code, "MPI_Iallreduce") {
            sum.done = true;
            return Err(e);
        }
        Ok(sum)
    }
}
