//! The adapter's size limits, checked before a plan allocates anything, so that a batch
//! too large fails with the largest batch that would fit.

use super::error::GraphError;
use crate::gpu::Gpu;

/// The workspace as a `check_binding_limit` entry.
pub(crate) fn workspace_entry(bytes: u64) -> (String, Vec<usize>, u64) {
    (
        "forward workspace".into(),
        vec![(bytes / 4) as usize],
        bytes,
    )
}

/// Refuses tensors larger than one storage binding may be, naming the largest batch
/// that would fit.
pub(crate) fn check_binding_limit(
    gpu: &Gpu,
    batch: usize,
    buffers: impl Iterator<Item = (String, Vec<usize>, u64)>,
) -> Result<(), GraphError> {
    let limit = (gpu.binding_limit(), "max_storage_buffer_binding_size");
    check_tensor_limit(batch, buffers, limit)
}

/// Refuses tensors larger than the adapter's largest buffer, naming the largest batch that
/// would fit: the bound for tensors that ops may bind in chunks.
pub(crate) fn check_buffer_limit(
    gpu: &Gpu,
    batch: usize,
    buffers: impl Iterator<Item = (String, Vec<usize>, u64)>,
) -> Result<(), GraphError> {
    let limit = (gpu.limits().max_buffer_size, "max_buffer_size");
    check_tensor_limit(batch, buffers, limit)
}

/// Refuses tensors larger than `limit` bytes, naming the largest batch that would fit.
fn check_tensor_limit(
    batch: usize,
    buffers: impl Iterator<Item = (String, Vec<usize>, u64)>,
    (limit, limit_name): (u64, &'static str),
) -> Result<(), GraphError> {
    for (name, shape, bytes) in buffers {
        if bytes > limit {
            let per_sample = (bytes / batch.max(1) as u64).max(1);
            return Err(GraphError::TooLarge {
                tensor: name,
                shape,
                bytes,
                limit,
                limit_name,
                max_batch: (limit / per_sample) as usize,
            });
        }
    }
    Ok(())
}
