//! How `mobilenet train` was started: on its own, or as one rank of an MPI job
//! (`mpirun -np N mobilenet train ...`), and which adapter each rank takes.

use crate::graph::{Replicas, Solo};
use crate::Gpu;

/// Variables the MPI launchers set in every rank's environment (Open MPI, MPICH/Hydra,
/// PMIx, Slurm's PMI).
const LAUNCHER_VARIABLES: [&str; 4] = [
    "OMPI_COMM_WORLD_SIZE",
    "PMI_SIZE",
    "PMIX_RANK",
    "MPI_LOCALNRANKS",
];

/// The processes of this run.
pub enum Launch {
    /// Started on its own.
    Solo(Solo),
    /// One rank of an MPI job.
    #[cfg(feature = "mpi")]
    Mpi(super::mpi::MpiReplicas),
}

impl Launch {
    /// Joins the MPI job when a launcher started this process, otherwise runs alone.
    pub fn join() -> anyhow::Result<Launch> {
        let launcher = LAUNCHER_VARIABLES
            .iter()
            .find(|v| std::env::var_os(v).is_some());
        match launcher {
            None => Ok(Launch::Solo(Solo)),
            #[cfg(feature = "mpi")]
            Some(_) => Ok(Launch::Mpi(super::mpi::MpiReplicas::join()?)),
            #[cfg(not(feature = "mpi"))]
            Some(variable) => anyhow::bail!(
                "this process was started by an MPI launcher ({variable} is set), but this \
                 mobilenet was built without MPI, so every rank would train alone; rebuild with \
                 `cargo build --release --features mpi` (scripts/setup.sh installs Open MPI)"
            ),
        }
    }

    pub fn replicas(&self) -> &dyn Replicas {
        match self {
            Launch::Solo(solo) => solo,
            #[cfg(feature = "mpi")]
            Launch::Mpi(mpi) => mpi,
        }
    }

    /// This rank's adapter: `adapter_index` when given, otherwise the local rank's among
    /// the machine's compute adapters (the best adapter for a run alone).
    pub fn gpu(&self, adapter_index: Option<usize>) -> anyhow::Result<Gpu> {
        let local_rank: Option<(usize, usize)> = match self {
            Launch::Solo(_) => None,
            #[cfg(feature = "mpi")]
            Launch::Mpi(mpi) => Some((mpi.local_rank(), mpi.local_count())),
        };
        let gpu = match (adapter_index, local_rank) {
            (Some(index), _) => Gpu::with_adapter_index(index)?,
            (None, None) => Gpu::new()?,
            (None, Some((rank, ranks))) => {
                let adapters = Gpu::adapter_count();
                if ranks > adapters && rank == 0 {
                    say(&format!(
                        "warning: {ranks} ranks on this machine share {adapters} adapter(s); \
                         ranks on one adapter take turns and run no faster than one"
                    ));
                }
                Gpu::with_adapter_index(rank % adapters.max(1))?
            }
        };
        Ok(gpu)
    }

    /// Ends a failed run. In an MPI job the message names the rank, and every other rank
    /// is stopped too (a rank left waiting in a collective would hang).
    pub fn fail(&self, error: &anyhow::Error) -> ! {
        match self {
            Launch::Solo(_) => {
                eprintln!("error: {error:#}");
                std::process::exit(1)
            }
            #[cfg(feature = "mpi")]
            Launch::Mpi(mpi) => {
                say(&format!(
                    "error: rank {} of {} failed: {error:#}\nerror: stopping all ranks",
                    mpi.rank(),
                    mpi.count()
                ));
                mpi.abort(1)
            }
        }
    }
}

/// Prints a message on stderr in one write: ranks share mpirun's stderr, and the pieces of
/// an `eprintln!` can interleave with another rank's into lines that belong to neither.
pub fn say(message: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("{message}\n").as_bytes());
}
