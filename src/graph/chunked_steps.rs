//! A training node's dispatches over the chunks of the batch its tensors are split into
//! (see `chunks`). Per-sample passes run once per chunk on that chunk's part of each
//! tensor. Batch norm's statistics and gradient sums are partial sums per 256 rows: each
//! chunk writes its own partials where the whole batch would, and the stage that merges
//! them runs once. Weight gradients are computed per chunk, later chunks adding theirs.

use std::ops::Range;

use super::buffer_range::BufferRange;
use super::chunks::BatchChunks;
use super::error::GraphError;
use super::shapes::{tensor_bytes, with_batch};
use super::steps::StepBuilder;
use crate::ops::{
    accumulating, with_input_prologue, with_input_sums, with_output_grad_prologue,
    with_output_stats, Activation, BatchNorm, Conv2d, Dispatch, OpKind, Slot, TrainSettings,
    REDUCE_CHUNK,
};

/// One node as the emitters see it.
pub(crate) struct ChunkedNode<'a> {
    pub name: &'a str,
    pub kind: &'a OpKind,
    pub input: &'a [usize],
    pub output: &'a [usize],
    pub chunks: &'a BatchChunks,
    /// The node's bindings for the whole batch (batch tensors are whole buffers;
    /// parameters and their gradients are parts of flat ones).
    pub slot: &'a dyn Fn(Slot) -> Option<BufferRange>,
    /// The activation of the batch norm before this node, when this node applies that
    /// batch norm as it loads its input (`Slot::Input` is then the batch norm's input).
    pub prologue: Option<Activation>,
    /// A batch norm whose normalisation the next node applies: its forward pass stops
    /// after the statistics.
    pub normalised_by_next: bool,
    /// Its backward also sums the backward partials of the batch norm before it
    /// (`ops::with_input_sums`).
    pub input_sums: bool,
    /// A batch norm whose backward partial sums the next node's backward computes: its
    /// backward pass starts at the merge.
    pub summed_by_next: bool,
    /// Its forward also leaves the statistics partials of the batch norm after it
    /// (`ops::with_output_stats`).
    pub output_stats: bool,
    /// A batch norm whose statistics partials the node before it leaves: its forward pass
    /// starts at the merge.
    pub stats_by_previous: bool,
    /// The activation of the batch norm after this node, when this node's backward applies
    /// that batch norm's input gradient as it loads dY (`Slot::GradOutput` is then the
    /// batch norm's output gradient).
    pub output_grad: Option<Activation>,
    /// A batch norm whose input gradient the node before it applies: its backward pass
    /// stops after the merge.
    pub grad_by_previous: bool,
    /// A convolution whose forward's patches are still in the workspace when its backward
    /// runs: the backward reads them instead of unfolding its input again.
    pub patches_kept: bool,
}

/// `dispatches` with `fuse` applied where it applies, when `wanted`.
fn with_each(
    dispatches: Vec<Dispatch>,
    wanted: bool,
    fuse: impl Fn(&Dispatch) -> Option<Dispatch>,
) -> Vec<Dispatch> {
    if !wanted {
        return dispatches;
    }
    dispatches
        .iter()
        .map(|d| fuse(d).unwrap_or_else(|| d.clone()))
        .collect()
}

/// After which of a batch-norm pass's dispatches its partial sums are complete: before the
/// first where a neighbour left them.
fn sync_after(partials_from_neighbour: bool) -> usize {
    if partials_from_neighbour {
        0
    } else {
        BatchNorm::SYNC_AFTER
    }
}

/// Which part of a batch-norm pass: the partial sums per chunk, the merge once, the
/// per-element pass per chunk.
const PARTIAL: usize = 0;
const MERGE: usize = 1;
const ELEMENTWISE: usize = 2;

impl ChunkedNode<'_> {
    fn batch(&self) -> usize {
        self.input[0]
    }

    /// The input and output shapes of samples `range`.
    fn part_shapes(&self, range: &Range<usize>) -> (Vec<usize>, Vec<usize>) {
        (
            with_batch(self.input, range.len()),
            with_batch(self.output, range.len()),
        )
    }

    /// What `slot` binds for the samples `range`.
    fn bind(&self, range: &Range<usize>, slot: Slot) -> Option<BufferRange> {
        let whole = (self.slot)(slot)?;
        let per_sample = |shape: &[usize]| tensor_bytes(shape) / self.batch().max(1) as u64;
        Some(match slot {
            Slot::Input | Slot::GradInput => {
                self.chunks
                    .bind(&whole.buffer, range, per_sample(self.input))
            }
            Slot::Output | Slot::GradOutput => {
                self.chunks
                    .bind(&whole.buffer, range, per_sample(self.output))
            }
            Slot::Scratch(1) if self.is_chunked_bn() => {
                // Batch norm's partials, [chunk][2][channels]: this range's chunks.
                let rows_per_sample = self.input[1] * self.input[2];
                let entry = 2 * self.input[3] as u64 * 4;
                let first = (range.start * rows_per_sample / REDUCE_CHUNK) as u64;
                let count = (range.len() * rows_per_sample).div_ceil(REDUCE_CHUNK) as u64;
                BufferRange {
                    buffer: whole.buffer,
                    offset: first * entry,
                    size: Some(count * entry),
                }
            }
            _ => whole,
        })
    }

    fn is_chunked_bn(&self) -> bool {
        self.chunks.is_chunked() && matches!(self.kind, OpKind::BatchNorm(_))
    }

    fn add(
        &self,
        builder: &mut StepBuilder,
        range: &Range<usize>,
        dispatch: &Dispatch,
    ) -> Result<(), GraphError> {
        let label = if self.chunks.is_chunked() {
            format!("{}[{}..{}]", self.name, range.start, range.end)
        } else {
            self.name.to_string()
        };
        builder.add(&label, dispatch, |slot| self.bind(range, slot))
    }

    /// Adds the node's forward dispatches; returns the index, among the builder's steps,
    /// after which batch norm's partial sums are complete.
    pub fn forward(
        &self,
        builder: &mut StepBuilder,
        settings: &TrainSettings,
    ) -> Result<usize, GraphError> {
        let pass = |range: &Range<usize>| {
            let (x, y) = self.part_shapes(range);
            let mut dispatches = self.kind.forward_train(&x, &y, settings);
            if self.normalised_by_next {
                dispatches.truncate(ELEMENTWISE);
            }
            if self.stats_by_previous {
                dispatches.remove(PARTIAL);
            }
            let dispatches = self.with_prologue(dispatches)?;
            Ok(with_each(dispatches, self.output_stats, with_output_stats))
        };
        self.run(builder, pass, sync_after(self.stats_by_previous))
    }

    /// The dispatches as they read the input: through the prologue where there is one.
    fn with_prologue(&self, dispatches: Vec<Dispatch>) -> Result<Vec<Dispatch>, GraphError> {
        let Some(activation) = self.prologue else {
            return Ok(dispatches);
        };
        let fuse = |d: &Dispatch| with_input_prologue(d, activation);
        self.each_through(dispatches, fuse, "cannot normalise its input")
    }

    /// The backward dispatches as they read dY: through the next batch norm's input
    /// gradient where this node applies it.
    fn with_output_grad(&self, dispatches: Vec<Dispatch>) -> Result<Vec<Dispatch>, GraphError> {
        let Some(activation) = self.output_grad else {
            return Ok(dispatches);
        };
        let fuse = |d: &Dispatch| with_output_grad_prologue(d, activation);
        self.each_through(
            dispatches,
            fuse,
            "cannot apply a batch norm's input gradient",
        )
    }

    /// Every dispatch through `fuse`; an error saying what `cannot` do for one it refuses.
    fn each_through(
        &self,
        dispatches: Vec<Dispatch>,
        fuse: impl Fn(&Dispatch) -> Option<Dispatch>,
        cannot: &str,
    ) -> Result<Vec<Dispatch>, GraphError> {
        dispatches
            .iter()
            .map(|d| {
                fuse(d).ok_or_else(|| GraphError::Chunking {
                    op: self.name.to_string(),
                    reason: format!("{}:{} {cannot}", d.shader, d.entry),
                })
            })
            .collect()
    }

    /// Adds the node's backward dispatches (see `forward`).
    pub fn backward(
        &self,
        builder: &mut StepBuilder,
        input_grad: bool,
        settings: &TrainSettings,
    ) -> Result<usize, GraphError> {
        let pass = |range: &Range<usize>| {
            let (x, y) = self.part_shapes(range);
            let mut dispatches = self.kind.backward(&x, &y, input_grad, settings);
            if self.grad_by_previous {
                dispatches.truncate(ELEMENTWISE);
            }
            if self.summed_by_next {
                dispatches.remove(PARTIAL);
            }
            if self.patches_kept {
                dispatches.retain(|d| !Conv2d::unfolds(d));
            }
            let dispatches = self.with_prologue(dispatches)?;
            let dispatches = self.with_output_grad(dispatches)?;
            let sums = |d: &Dispatch| with_input_sums(d, self.prologue?);
            Ok(with_each(dispatches, self.input_sums, sums))
        };
        self.run(builder, pass, sync_after(self.summed_by_next))
    }

    fn run(
        &self,
        builder: &mut StepBuilder,
        pass: impl Fn(&Range<usize>) -> Result<Vec<Dispatch>, GraphError>,
        sync_after: usize,
    ) -> Result<usize, GraphError> {
        let first = builder.len();
        let ranges = &self.chunks.ranges;
        if !self.chunks.is_chunked() {
            for dispatch in pass(&ranges[0])? {
                self.add(builder, &ranges[0], &dispatch)?;
            }
            return Ok(first + sync_after);
        }
        if matches!(self.kind, OpKind::BatchNorm(_)) {
            for range in ranges {
                self.add(builder, range, &pass(range)?[PARTIAL])?;
            }
            let merged_after = builder.len();
            let whole = 0..self.batch();
            self.add(builder, &whole, &pass(&whole)?[MERGE])?;
            let batch_rows = self.batch() * self.input[1] * self.input[2];
            for range in ranges {
                if let Some(dispatch) = pass(range)?.get(ELEMENTWISE) {
                    let dispatch = BatchNorm::over_batch_rows(dispatch, batch_rows);
                    self.add(builder, range, &dispatch)?;
                }
            }
            return Ok(merged_after);
        }
        for (i, range) in ranges.iter().enumerate() {
            for dispatch in pass(range)? {
                let writes_param_grad = dispatch
                    .bindings
                    .iter()
                    .any(|(_, slot)| matches!(slot, Slot::ParamGrad(_)));
                let dispatch = match (i, writes_param_grad) {
                    (0, _) | (_, false) => dispatch,
                    _ => accumulating(&dispatch).ok_or_else(|| GraphError::Chunking {
                        op: self.name.to_string(),
                        reason: format!("{} cannot add into a parameter gradient", dispatch.entry),
                    })?,
                };
                self.add(builder, range, &dispatch)?;
            }
        }
        Ok(first + sync_after)
    }
}
