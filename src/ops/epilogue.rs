//! Batch norm's reductions in its neighbours' epilogues, in training: the layer before a
//! batch norm can leave the per-chunk statistics of what it stores as it stores it, and
//! the layer after it the per-chunk backward sums of the input gradient it writes, so that
//! the batch norm's `stats_partial` and `backward_partial` passes need not read those
//! tensors again.

use super::depthwise::{with_depthwise_input_sums, with_depthwise_output_stats};
use super::gemm::{with_gemm_input_sums, with_gemm_output_stats};
use super::pool::with_pool_input_sums;
use super::{Activation, Dispatch};

/// `dispatch` also leaving the statistics partials of its output for the batch norm after
/// it, in `Slot::OutputPartials`, laid out as that batch norm's `stats_partial` leaves them
/// (`BatchNorm::partials`): the 3x3 depthwise forward, or a forward GEMM (pointwise, the
/// stem after im2col) whose output is stored as computed. `None` for any other dispatch.
pub fn with_output_stats(dispatch: &Dispatch) -> Option<Dispatch> {
    with_depthwise_output_stats(dispatch).or_else(|| with_gemm_output_stats(dispatch))
}

/// `dispatch` (a backward dispatch that writes the input gradient of a layer after a batch
/// norm with `activation`) also summing that batch norm's backward partials over the
/// gradient it writes, into `Slot::InputPartials`, laid out as the batch norm's own
/// `backward_partial` leaves them: the 3x3 depthwise backward or the pooling backward
/// (both need the input prologue applied first: `with_input_prologue`), or the dX GEMM of a
/// pointwise layer. `None` for any other dispatch.
pub fn with_input_sums(dispatch: &Dispatch, activation: Activation) -> Option<Dispatch> {
    with_depthwise_input_sums(dispatch)
        .or_else(|| with_gemm_input_sums(dispatch, activation))
        .or_else(|| with_pool_input_sums(dispatch))
}
