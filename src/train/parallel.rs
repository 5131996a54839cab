//! The data-parallel settings of a run (`mpirun -np N mobilenet train ...`).

/// Data-parallel settings of a run (`mpirun -np N mobilenet train ...`).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ParallelOptions {
    /// Batch statistics over all ranks' batches (sync-BN) instead of each rank's own.
    #[serde(default)]
    pub sync_bn: bool,
    /// Gradients travel in buckets of about this many bytes (speed only; not part of a
    /// run's identity).
    #[serde(skip, default = "default_bucket_bytes")]
    pub bucket_bytes: u64,
}

/// PyTorch DDP's default is 25 MB, more than all of MobileNet 1.0's gradients (16.9 MB):
/// one bucket, sent only after the whole backward pass. 1 MiB splits 1.0 into 10 buckets
/// and 0.25 (1.9 MB) into 2, so the last layers' sums leave while the first layers'
/// gradients are computed. (On 2 shared cores every size from 0.1 to 2 MiB gave the same
/// step time; see docs/distributed.md.)
pub const DEFAULT_BUCKET_BYTES: u64 = 1 << 20;

fn default_bucket_bytes() -> u64 {
    DEFAULT_BUCKET_BYTES
}

impl Default for ParallelOptions {
    fn default() -> Self {
        ParallelOptions {
            sync_bn: false,
            bucket_bytes: DEFAULT_BUCKET_BYTES,
        }
    }
}
