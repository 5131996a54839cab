//! Batch normalisation fused with the activation that follows it.

use super::{
    chunks, linear_grid, nhwc, uniform_words, Activation, Dispatch, ParamRole, ParamSpec,
    ScratchSpec, Slot, TrainSettings, REDUCE_CHUNK, SUM_PARTIALS_ACCUMULATE_WORD,
    SUM_PARTIALS_BINDINGS,
};
use crate::gpu::Shader;

/// The layout of batch norm's per-chunk partial sums: `chunks x 2 x channels` floats, each
/// chunk's two partials side by side. The forward pass leaves each chunk's mean and sum of
/// squared deviations, the backward pass its sums of dz and dz * xhat; chunk `s` covers
/// rows `s * rows_per_chunk ..` up to `rows`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BnPartials {
    pub channels: usize,
    pub rows: usize,
    pub rows_per_chunk: usize,
    pub chunks: usize,
}

impl BnPartials {
    /// Chunk `chunk`'s two partials of channel `channel` in `values`, laid out as this
    /// describes.
    pub fn pair(&self, values: &[f32], chunk: usize, channel: usize) -> (f32, f32) {
        let at = 2 * chunk * self.channels + channel;
        (values[at], values[at + self.channels])
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm {
    pub eps: f32,
    pub activation: Activation,
}

/// bn_act.wgsl's bindings; Scratch(0) holds per-channel statistics kept for the backward
/// pass, Scratch(1) the reduction partials.
const BINDINGS: [(u32, Slot); 12] = [
    (1, Slot::Input),
    (2, Slot::Param(0)),
    (3, Slot::Param(1)),
    (4, Slot::Param(2)),
    (5, Slot::Param(3)),
    (6, Slot::Output),
    (7, Slot::Scratch(0)),
    (8, Slot::Scratch(1)),
    (9, Slot::GradOutput),
    (10, Slot::GradInput),
    (11, Slot::ParamGrad(0)),
    (12, Slot::ParamGrad(1)),
];

/// Rows of one channel each element-wise training invocation handles (ROWS_PER_INVOCATION
/// in bn_act.wgsl).
const ROWS_PER_INVOCATION: usize = 32;

/// Invocations of the element-wise training passes: one per channel and block of rows.
fn row_block_threads(input: &[usize]) -> usize {
    let rows = input[0] * input[1] * input[2];
    rows.div_ceil(ROWS_PER_INVOCATION) * input[3]
}

impl BatchNorm {
    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        nhwc(input)?;
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(format!(
                "epsilon must be positive and finite, got {}",
                self.eps
            ));
        }
        Ok(input.to_vec())
    }

    pub fn params(&self, input: &[usize]) -> Vec<ParamSpec> {
        let c = vec![input[3]];
        vec![
            ParamSpec::new("gamma", c.clone(), ParamRole::Gamma),
            ParamSpec::new("beta", c.clone(), ParamRole::Beta),
            ParamSpec::new("running_mean", c.clone(), ParamRole::RunningMean),
            ParamSpec::new("running_var", c, ParamRole::RunningVar),
        ]
    }

    /// Not counted: the paper's mult-add totals cover convolutions and the classifier.
    pub fn mult_adds(&self, _input: &[usize], _output: &[usize]) -> u64 {
        0
    }

    fn rows(input: &[usize]) -> usize {
        input[0] * input[1] * input[2]
    }

    fn dispatch(
        &self,
        entry: &'static str,
        input: &[usize],
        momentum: f32,
        threads: usize,
    ) -> Dispatch {
        let rows = Self::rows(input);
        self.dispatch_over(
            entry,
            input,
            momentum,
            threads,
            (rows, REDUCE_CHUNK, chunks(rows)),
        )
    }

    /// `dispatch` with the rows the statistics stages see given as (rows, rows per chunk,
    /// chunks): the pooled finalize stages of sync-BN see the replicas' merged partials as
    /// one chunk of all their rows.
    fn dispatch_over(
        &self,
        entry: &'static str,
        input: &[usize],
        momentum: f32,
        threads: usize,
        (rows, rows_per_chunk, chunks): (usize, usize, usize),
    ) -> Dispatch {
        let words = [
            rows as u32,
            input[3] as u32,
            self.activation.shader_code(),
            self.eps.to_bits(),
            rows_per_chunk as u32,
            chunks as u32,
            momentum.to_bits(),
            0,
            // backward_finalize_with_weight_sums's words (`finalize_beside`).
            0,
            0,
            0,
            0,
        ];
        // Every thread count is a multiple of the channel count; the vec4 form of the
        // shader takes 4 channels per invocation.
        let (shader, channels_per_invocation) = if input[3].is_multiple_of(4) {
            (Shader::BnActVec4, 4)
        } else {
            (Shader::BnAct, 1)
        };
        Dispatch {
            shader,
            entry,
            uniform: uniform_words(&words),
            bindings: BINDINGS.to_vec(),
            workgroups: linear_grid(threads / channels_per_invocation),
        }
    }

    #[doc(hidden)]
    pub fn forward(&self, input: &[usize], _output: &[usize]) -> Vec<Dispatch> {
        let total = input.iter().product();
        vec![self.dispatch("forward_inference", input, 0.0, total)]
    }

    /// bn_act.wgsl's uniform word with the rows the batch statistics cover, where a pass runs
    /// on a chunk of them (0: all of its own rows).
    const BATCH_ROWS_WORD: usize = 7;

    /// A per-element pass run on a chunk of the batch, told how many rows the batch
    /// statistics cover (the input gradient divides by them).
    #[doc(hidden)]
    pub fn over_batch_rows(dispatch: &Dispatch, batch_rows: usize) -> Dispatch {
        let mut over = dispatch.clone();
        over.set_uniform_word(Self::BATCH_ROWS_WORD, batch_rows as u32);
        over
    }

    /// bn_act.wgsl's first uniform word of `backward_finalize_with_weight_sums`: the weight
    /// gradient's vec4s, its partials, and the workgroups that finalize.
    const WEIGHT_SUMS_WORD: usize = 8;

    /// The entry point that runs `backward_finalize` and a weight gradient's sums.
    pub const FINALIZE_WITH_WEIGHT_SUMS: &'static str = "backward_finalize_with_weight_sums";

    /// Whether the entry point reads or writes activations or their gradients: all but the
    /// finalize stages, which touch only the per-channel planes.
    pub(crate) fn passes_over_activations(entry: &str) -> bool {
        !matches!(
            entry,
            "stats_finalize" | "backward_finalize" | Self::FINALIZE_WITH_WEIGHT_SUMS
        )
    }

    /// `finalize` (a batch norm's `backward_finalize`) and `sums` (`sum_partials4` of a
    /// weight gradient, not adding to it) as one dispatch, where the step runs them one
    /// after the other and neither reads what the other writes (the caller's to check):
    /// two one-workgroup reductions then share one start, and a CPU's two threads. The
    /// sums' partials and gradient are bound as `Slot::BesidePartials` and
    /// `Slot::BesideGrad`: returned with the slots of `sums` they stand for. `None` where
    /// the two are not such a pair.
    #[doc(hidden)]
    pub fn finalize_beside(
        finalize: &Dispatch,
        sums: &Dispatch,
    ) -> Option<(Dispatch, [(Slot, Slot); 2])> {
        let pair = matches!(finalize.shader, Shader::BnAct | Shader::BnActVec4)
            && finalize.entry == "backward_finalize"
            && sums.shader == Shader::Reduce
            && sums.entry == "sum_partials4"
            && sums.uniform_word(SUM_PARTIALS_ACCUMULATE_WORD) == 0;
        let one_row = |d: &Dispatch| d.workgroups[1] == 1 && d.workgroups[2] == 1;
        if !(pair && one_row(finalize) && one_row(sums)) {
            return None;
        }
        let mut merged = Dispatch {
            entry: Self::FINALIZE_WITH_WEIGHT_SUMS,
            workgroups: [finalize.workgroups[0] + sums.workgroups[0], 1, 1],
            ..finalize.clone()
        };
        merged
            .bindings
            .extend([(13, Slot::BesidePartials), (14, Slot::BesideGrad)]);
        let [parts, vec4s] = [0, 1].map(|i| sums.uniform_word(i));
        let words = [vec4s, parts, finalize.workgroups[0]];
        for (i, word) in words.into_iter().enumerate() {
            merged.set_uniform_word(Self::WEIGHT_SUMS_WORD + i, word);
        }
        let slot_of = |binding| {
            let (_, slot) = sums.bindings.iter().find(|(b, _)| *b == binding)?;
            Some(*slot)
        };
        let [partials, grad] = SUM_PARTIALS_BINDINGS.map(slot_of);
        let beside = [(Slot::BesidePartials, partials?), (Slot::BesideGrad, grad?)];
        Some((merged, beside))
    }

    /// Under sync-BN the replicas exchange the partial sums that the first dispatch of the
    /// forward and of the backward pass leave in `Slot::Scratch(1)` (see `partials`), and
    /// the finalize stage that follows reads the pooled values as a single chunk.
    pub const SYNC_AFTER: usize = 1;

    /// Where and how the partial sums lie in `Slot::Scratch(1)` after the first dispatch of
    /// each training pass.
    pub fn partials(&self, input: &[usize]) -> BnPartials {
        let rows = Self::rows(input);
        BnPartials {
            channels: input[3],
            rows,
            rows_per_chunk: REDUCE_CHUNK,
            chunks: chunks(rows),
        }
    }

    #[doc(hidden)]
    pub fn forward_train(&self, input: &[usize], train: &TrainSettings) -> Vec<Dispatch> {
        let channels = input[3];
        let parts = chunks(Self::rows(input)) * channels;
        let m = train.bn_momentum;
        let finalize = match train.synced_replicas {
            0 | 1 => self.dispatch("stats_finalize", input, m, channels),
            replicas => {
                let pooled_rows = replicas * Self::rows(input);
                let one_chunk = (pooled_rows, pooled_rows, 1);
                self.dispatch_over("stats_finalize", input, m, channels, one_chunk)
            }
        };
        vec![
            self.dispatch("stats_partial", input, m, parts),
            finalize,
            self.dispatch("forward_train", input, m, row_block_threads(input)),
        ]
    }

    #[doc(hidden)]
    pub fn scratch(&self, input: &[usize], _output: &[usize]) -> Vec<ScratchSpec> {
        let channels = input[3];
        vec![
            ScratchSpec {
                floats: 7 * channels,
                persistent: true,
            },
            ScratchSpec {
                floats: 2 * chunks(Self::rows(input)) * channels,
                persistent: false,
            },
        ]
    }

    #[doc(hidden)]
    pub fn backward(
        &self,
        input: &[usize],
        _output: &[usize],
        input_grad: bool,
        train: &TrainSettings,
    ) -> Vec<Dispatch> {
        let channels = input[3];
        let rows = Self::rows(input);
        let parts = chunks(rows) * channels;
        let finalize = match train.synced_replicas {
            0 | 1 => self.dispatch("backward_finalize", input, 0.0, channels),
            // The pooled sums, already divided by the replica count, as one chunk.
            _ => self.dispatch_over("backward_finalize", input, 0.0, channels, (rows, rows, 1)),
        };
        let mut dispatches = vec![
            self.dispatch("backward_partial", input, 0.0, parts),
            finalize,
        ];
        if input_grad {
            dispatches.push(self.dispatch("backward_input", input, 0.0, row_block_threads(input)));
        }
        dispatches
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{accumulating, sum_partials};

    fn batch_norm() -> BatchNorm {
        BatchNorm {
            eps: 1e-3,
            activation: Activation::Relu,
        }
    }

    #[test]
    fn a_finalize_takes_the_weight_sums_beside_it_in_workgroups_of_their_own() {
        let input = [2, 8, 8, 12];
        let finalize =
            batch_norm().backward(&input, &input, true, &TrainSettings::default())[1].clone();
        let sums = sum_partials(Slot::Scratch(0), Slot::ParamGrad(0), 3, 9 * 12);
        let (merged, beside) = BatchNorm::finalize_beside(&finalize, &sums).expect("a pair");
        assert_eq!(merged.entry, BatchNorm::FINALIZE_WITH_WEIGHT_SUMS);
        assert_eq!(merged.shader, finalize.shader);
        let [f, s] = [&finalize, &sums].map(|d| d.workgroups[0]);
        assert_eq!(merged.workgroups, [f + s, 1, 1]);
        // The finalize's words, then the sums' vec4s, partials and the finalize's workgroups.
        let words: Vec<u32> = (0..12).map(|i| merged.uniform_word(i)).collect();
        let own: Vec<u32> = (0..8).map(|i| finalize.uniform_word(i)).collect();
        assert_eq!(words[..8], own[..]);
        assert_eq!(words[8..11], [27, 3, f]);
        assert!(merged.bindings.contains(&(13, Slot::BesidePartials)));
        assert!(merged.bindings.contains(&(14, Slot::BesideGrad)));
        assert_eq!(
            beside,
            [
                (Slot::BesidePartials, Slot::Scratch(0)),
                (Slot::BesideGrad, Slot::ParamGrad(0))
            ]
        );
    }

    #[test]
    fn sums_that_add_to_a_gradient_or_other_stages_are_left_apart() {
        let input = [2, 8, 8, 12];
        let stages = batch_norm().backward(&input, &input, true, &TrainSettings::default());
        let sums = sum_partials(Slot::Scratch(0), Slot::ParamGrad(0), 3, 9 * 12);
        let adding = accumulating(&sums).expect("sums can add");
        assert!(BatchNorm::finalize_beside(&stages[1], &adding).is_none());
        // backward_partial and backward_input are not one-workgroup reductions.
        assert!(BatchNorm::finalize_beside(&stages[0], &sums).is_none());
        assert!(BatchNorm::finalize_beside(&stages[2], &sums).is_none());
        // Sums of a length that is no multiple of 4 run the scalar kernel.
        let scalar = sum_partials(Slot::Scratch(0), Slot::ParamGrad(0), 3, 9 * 13);
        assert!(BatchNorm::finalize_beside(&stages[1], &scalar).is_none());
    }
}
