//! Ops whose batch tensors are larger than one storage binding may be run over chunks of
//! the batch, each chunk's part of every batch tensor bound at its offset. Inference
//! plans do: every op there works sample by sample (batch norm with running statistics),
//! so a chunked op computes exactly what the whole one would.

use std::ops::Range;

use super::buffer_range::BufferRange;
use super::builder::GraphBuilder;
use super::error::GraphError;
use super::node::Node;
use super::shapes::{tensor_bytes, with_batch};
use crate::gpu::Gpu;

/// How one op splits the batch.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BatchChunks {
    pub ranges: Vec<Range<usize>>,
}

/// The chunks of `batch` samples such that none of the op's batch tensors (`per_sample`:
/// bytes per sample of each) exceeds `limit` bytes in one binding, every chunk starting at
/// an offset that is a multiple of `alignment` in each of them, and at a multiple of
/// `modulus` in every `(count per sample, modulus)` of `steps` (rows that a reduction
/// groups, say). `Err` carries the fewest samples a chunk may hold and their bytes in the
/// largest tensor, when even those exceed the limit.
pub(crate) fn batch_chunks(
    batch: usize,
    per_sample: &[u64],
    steps: &[(u64, u64)],
    limit: u64,
    alignment: u64,
) -> Result<BatchChunks, (usize, u64)> {
    let largest = per_sample.iter().copied().max().unwrap_or(0);
    if batch as u64 * largest <= limit {
        return Ok(BatchChunks::whole(batch));
    }
    // Samples per aligned step: the least n with n * bytes a multiple of the alignment,
    // for every tensor at once.
    let unit = per_sample
        .iter()
        .map(|&bytes| (bytes, alignment))
        .chain(steps.iter().copied())
        .filter(|&(count, _)| count > 0)
        .map(|(count, modulus)| modulus / gcd(count, modulus))
        .fold(1, lcm);
    let per_chunk = (limit / largest) / unit * unit;
    if per_chunk == 0 {
        return Err((unit as usize, unit * largest));
    }
    let per_chunk = per_chunk as usize;
    Ok(BatchChunks {
        ranges: (0..batch)
            .step_by(per_chunk)
            .map(|start| start..(start + per_chunk).min(batch))
            .collect(),
    })
}

impl BatchChunks {
    /// The whole batch of `batch` samples in one chunk.
    pub fn whole(batch: usize) -> BatchChunks {
        BatchChunks {
            ranges: std::iter::once(0..batch).collect(),
        }
    }

    pub fn is_chunked(&self) -> bool {
        self.ranges.len() > 1
    }

    /// The part of `buffer` that holds samples `range` of a tensor of `per_sample` bytes
    /// per sample. Never the whole of a buffer that several tensors share (gradients,
    /// sized for the largest): the binding says which bytes the dispatch touches, and the
    /// plan's traffic counts are read off it.
    pub fn bind(
        &self,
        buffer: &wgpu::Buffer,
        range: &Range<usize>,
        per_sample: u64,
    ) -> BufferRange {
        let offset = range.start as u64 * per_sample;
        // Whole vec4s, as the buffers are allocated (vec4 kernels read the last one whole).
        let size = (range.len() as u64 * per_sample)
            .next_multiple_of(16)
            .min(buffer.size() - offset);
        BufferRange {
            buffer: buffer.clone(),
            offset,
            size: Some(size),
        }
    }
}

/// How each of `nodes` splits the batch so that no binding exceeds the device's limit, and
/// the workspace the largest chunk needs. In training (`batch_norm_partials`), batch
/// norm's chunks start where its partial sums (one per 256 rows) start, at aligned
/// offsets of its partials buffer.
pub(crate) fn node_chunks(
    gpu: &Gpu,
    graph: &GraphBuilder,
    nodes: &[Node],
    batch_norm_partials: bool,
) -> Result<(Vec<BatchChunks>, u64), GraphError> {
    let limit = gpu.binding_limit();
    let alignment = gpu.limits().min_storage_buffer_offset_alignment as u64;
    let mut workspace = 4;
    let mut all = Vec::new();
    for node in nodes {
        let (input, output) = (
            graph.tensors[node.input.0].shape.as_slice(),
            graph.tensors[node.output.0].shape.as_slice(),
        );
        let (one_in, one_out) = (with_batch(input, 1), with_batch(output, 1));
        let workspace_per_sample = node.kind.workspace(&one_in, &one_out) as u64 * 4;
        let per_sample = [
            tensor_bytes(&one_in),
            tensor_bytes(&one_out),
            workspace_per_sample,
        ];
        let mut steps = Vec::new();
        if let Some(partials) = node
            .kind
            .bn_partials(&one_in)
            .filter(|_| batch_norm_partials)
        {
            let entry = 2 * partials.channels as u64 * 4;
            let rows = partials.rows_per_chunk as u64 * (alignment / gcd(entry, alignment));
            steps.push((partials.rows as u64, rows));
        }
        let chunks = batch_chunks(input[0], &per_sample, &steps, limit, alignment).map_err(
            |(samples, bytes)| GraphError::ChunkTooLarge {
                op: node.name.clone(),
                samples,
                bytes,
                limit,
            },
        )?;
        let largest = chunks.ranges.iter().map(|r| r.len()).max().unwrap_or(0);
        workspace = workspace.max(largest as u64 * workspace_per_sample);
        all.push(chunks);
    }
    Ok((all, workspace))
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_batches_are_one_chunk() {
        let chunks = batch_chunks(8, &[1000, 4000], &[], 1 << 20, 256).expect("fits");
        assert_eq!(chunks.ranges.len(), 1);
        assert_eq!(chunks.ranges[0], 0..8);
        assert!(!chunks.is_chunked());
    }

    #[test]
    fn chunks_fit_the_limit_and_start_aligned() {
        // 3136 bytes per sample (28x28 floats) and 1600 (20x20): steps of 4 samples keep
        // both at multiples of 256 bytes.
        let per_sample = [3136, 1600];
        let chunks = batch_chunks(50, &per_sample, &[], 40_000, 256).expect("chunks");
        assert!(chunks.is_chunked());
        assert_eq!(chunks.ranges.first(), Some(&(0..12)));
        assert_eq!(chunks.ranges.last(), Some(&(48..50)));
        for range in &chunks.ranges {
            for bytes in per_sample {
                assert_eq!(range.start as u64 * bytes % 256, 0);
                assert!(range.len() as u64 * bytes <= 40_000);
            }
        }
        let covered: usize = chunks.ranges.iter().map(|r| r.len()).sum();
        assert_eq!(covered, 50);
    }

    #[test]
    fn steps_of_rows_set_where_chunks_may_start() {
        // 196 rows per sample, grouped by 256: chunks start every 64 samples.
        let chunks = batch_chunks(200, &[784], &[(196, 256)], 60_000, 256).expect("chunks");
        assert!(chunks.ranges.iter().all(|r| r.start * 196 % 256 == 0));
        assert_eq!(chunks.ranges[0], 0..64);
    }

    #[test]
    fn a_sample_beyond_the_limit_is_refused_with_its_size() {
        // 5000 bytes: 32 samples make the first multiple of 256.
        assert_eq!(batch_chunks(4, &[5000], &[], 4096, 256), Err((32, 160_000)));
        assert_eq!(batch_chunks(4, &[8192], &[], 4096, 256), Err((1, 8192)));
    }
}
