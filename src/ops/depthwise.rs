//! Depthwise convolution: one KxK filter per channel, weights [KH, KW, C]; a bias and
//! activation only when batchnorm is folded in for inference.

use super::{
    chunks, fused_bias, fused_bias_slot, fused_words, linear_grid, nhwc, sum_partials,
    uniform_words, Activation, Dispatch, Fused, Padding, ParamRole, ParamSpec, ScratchSpec, Slot,
    Window, REDUCE_CHUNK,
};
use crate::gpu::Shader;

/// depthwise.wgsl's uniform words: the channel count and the chunks of output pixels
/// (`uniform_params`), and the input batch norm's prologue (0: off, else 1 + the activation
/// code; `with_input_prologue`).
const CHANNELS_WORD: usize = 3;
const CHUNKS_WORD: usize = 11;
pub(super) const PROLOGUE_WORD: usize = 14;

/// depthwise.wgsl's uniform word that makes the 3x3 backward sum its input batch norm's
/// backward partials (`input_sums`).
const INPUT_SUMS_WORD: usize = 15;

fn is_fused_backward(dispatch: &Dispatch) -> bool {
    matches!(dispatch.shader, Shader::Depthwise | Shader::DepthwiseVec4)
        && matches!(dispatch.entry, "backward_3x3" | "backward_3x3_s2")
}

/// `dispatch` (a 3x3 backward that runs dX) also summing the backward partials of the
/// batch norm whose raw output is its input, into `Slot::InputPartials`, laid out as that
/// batch norm's own `backward_partial` leaves them (`BatchNorm::partials`); that pass is
/// then not needed. It needs the input prologue's statistics, so apply
/// `with_input_prologue` first. `None` for any other dispatch.
pub(super) fn with_depthwise_input_sums(dispatch: &Dispatch) -> Option<Dispatch> {
    if !is_fused_backward(dispatch) || !dispatch.bindings.contains(&(8, Slot::InputNorm)) {
        return None;
    }
    let mut words: Vec<u32> = bytemuck::pod_collect_to_vec(&dispatch.uniform);
    words[INPUT_SUMS_WORD] = 1;
    let mut bindings = dispatch.bindings.clone();
    bindings.retain(|&(binding, _)| binding != INPUT_PARTIALS_BINDING);
    bindings.push((INPUT_PARTIALS_BINDING, Slot::InputPartials));
    Some(Dispatch {
        uniform: uniform_words(&words),
        bindings,
        ..dispatch.clone()
    })
}

/// `dispatch` (a 3x3 forward) as training runs it when a batch norm comes next: one
/// invocation per chunk of output pixels and 4-channel group, leaving that chunk's mean and
/// sum of squared deviations of the output in `Slot::OutputPartials`, laid out as the batch
/// norm's own `stats_partial` leaves them (`BatchNorm::partials`); that pass is then not
/// needed. `None` for any other dispatch.
pub(super) fn with_depthwise_output_stats(dispatch: &Dispatch) -> Option<Dispatch> {
    if !matches!(dispatch.shader, Shader::Depthwise | Shader::DepthwiseVec4) {
        return None;
    }
    let entry = match dispatch.entry {
        "forward_3x3" => "forward_3x3_stats",
        "forward_3x3_s2" => "forward_3x3_s2_stats",
        _ => return None,
    };
    let [channels, chunks] =
        [CHANNELS_WORD, CHUNKS_WORD].map(|i| dispatch.uniform_word(i) as usize);
    let mut bindings = dispatch.bindings.clone();
    bindings.push((10, Slot::OutputPartials));
    Some(Dispatch {
        entry,
        bindings,
        workgroups: linear_grid(chunks * channels.div_ceil(CHANNELS_PER_THREAD)),
        ..dispatch.clone()
    })
}

/// depthwise.wgsl's uniform word that makes the backward apply the input gradient of the
/// batch norm after it as it loads dY (0: off, else 1 + the activation code), and the
/// bindings of that batch norm's input (this layer's raw output) and statistics.
const OUTPUT_GRAD_WORD: usize = 16;
const RAW_OUTPUT_BINDING: u32 = 11;
const OUTPUT_NORM_BINDING: u32 = 12;

/// `dispatch` (a backward dispatch that reads dY) reading instead the output gradient of
/// the batch norm after this layer, with `activation`, and applying that batch norm's
/// input gradient as it loads each value (from this layer's raw output and the batch
/// norm's sums), so the batch norm's `backward_input` pass is not needed. `None` for a
/// dispatch of another shader.
pub(super) fn with_depthwise_output_grad(
    dispatch: &Dispatch,
    activation: Activation,
) -> Option<Dispatch> {
    if !matches!(dispatch.shader, Shader::Depthwise | Shader::DepthwiseVec4) {
        return None;
    }
    let mut words: Vec<u32> = bytemuck::pod_collect_to_vec(&dispatch.uniform);
    words[OUTPUT_GRAD_WORD] = activation.shader_code() + 1;
    let mut bindings = dispatch.bindings.clone();
    bindings
        .retain(|&(binding, _)| binding != RAW_OUTPUT_BINDING && binding != OUTPUT_NORM_BINDING);
    bindings.push((RAW_OUTPUT_BINDING, Slot::Output));
    bindings.push((OUTPUT_NORM_BINDING, Slot::OutputNorm));
    Some(Dispatch {
        uniform: uniform_words(&words),
        bindings,
        ..dispatch.clone()
    })
}

/// Where the 3x3 backward writes its input batch norm's partials. Without them it aliases
/// the dW partials (`Slot::Scratch(0)`), which it never stores to through this binding: a
/// placeholder there would be bound for reading and writing at once.
const INPUT_PARTIALS_BINDING: u32 = 9;

#[derive(Clone, Debug, PartialEq)]
pub struct Depthwise {
    pub kernel: usize,
    pub stride: usize,
    pub padding: Padding,
    pub fused: Fused,
}

const BINDINGS: [(u32, Slot); 6] = [
    (1, Slot::Input),
    (2, Slot::Param(0)),
    (3, Slot::Output),
    (4, Slot::GradOutput),
    (5, Slot::GradInput),
    (6, Slot::Scratch(0)),
];

/// Channels each invocation handles (one vec4 in depthwise.wgsl).
const CHANNELS_PER_THREAD: usize = 4;

/// Invocations for an NHWC tensor processed 4 channels at a time.
fn vec4_threads(shape: &[usize]) -> usize {
    shape[0] * shape[1] * shape[2] * shape[3].div_ceil(CHANNELS_PER_THREAD)
}

/// depthwise.wgsl's uniform word that gives the 3x3 backward's invocations several chunks.
const CHUNK_SPAN_WORD: usize = 17;

/// Chunks of REDUCE_CHUNK input pixels per invocation of the 3x3 backward for images
/// `width` pixels wide: enough for strips of about 8 rows, which load each dY row once for
/// 3 input rows after 2 rows of start-up (a chunk of a 112-pixel-wide image is 2.3 rows),
/// and at most 4, so that invocations stay many.
fn chunk_span(width: usize) -> usize {
    (8 * width).div_ceil(REDUCE_CHUNK).clamp(1, 4)
}

/// Output rows each invocation of the 3x3 forward computes (depthwise.wgsl's FORWARD_ROWS).
const FORWARD_ROWS: usize = 8;

/// depthwise.wgsl's uniform word that gives the 3x3 forward's invocations several images.
const IMAGES_WORD: usize = 18;

/// Images per invocation of the 3x3 forward for outputs of `shape`.
fn forward_images(shape: &[usize]) -> usize {
    let per_image = shape[1].div_ceil(FORWARD_ROWS) * four_pixel_groups(shape);
    images_per_invocation(shape[0], shape[1] * shape[2], per_image)
}

/// Images per invocation of a 3x3 depthwise forward (float or int8) over `batch` images of
/// `plane` output pixels, `per_image` invocations covering one image. On images of
/// IMAGES_BUDGET pixels or fewer (MobileNet's last layers at 32x32: 4x4, 2x2, 1x1) several,
/// so that the 9 taps, the bias and the index arithmetic an invocation loads or computes
/// before its outputs serve more of them; halved while the grid would fall under
/// MIN_FORWARD_INVOCATIONS, so that every core still has work.
pub(super) fn images_per_invocation(batch: usize, plane: usize, per_image: usize) -> usize {
    let mut images = (IMAGES_BUDGET / plane.max(1)).clamp(1, batch.max(1));
    while images > 1 && batch.div_ceil(images) * per_image < MIN_FORWARD_INVOCATIONS {
        images /= 2;
    }
    images
}

/// Output pixels an invocation of the 3x3 forward covers across its images, at most
/// (measured at 32x32, batch 32: budgets of 16, 32 and 64 took the 13 depthwise layers
/// from 3.5 ms to 2.9, 2.6 and 2.6 ms).
const IMAGES_BUDGET: usize = 32;

/// The fewest invocations images_per_invocation leaves a 3x3 forward.
const MIN_FORWARD_INVOCATIONS: usize = 256;

/// Invocations per image row for the 3x3 kernels: 4 pixels along x by 4 channels each.
fn four_pixel_groups(shape: &[usize]) -> usize {
    shape[2].div_ceil(4) * shape[3].div_ceil(CHANNELS_PER_THREAD)
}

impl Depthwise {
    /// MobileNet's case, with kernels that work on 4 adjacent pixels (depthwise.wgsl's
    /// `*_3x3` entry points).
    fn is_3x3(&self) -> bool {
        self.kernel == 3 && (1..=2).contains(&self.stride)
    }

    /// The 3x3 kernels have an entry point per stride (the stride a literal in each, so a
    /// kernel carries no loads of the other stride's path).
    fn per_stride(&self, stride_1: &'static str, stride_2: &'static str) -> &'static str {
        if self.stride == 2 {
            stride_2
        } else {
            stride_1
        }
    }

    pub fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let [n, _, _, c] = nhwc(input)?;
        if self.kernel == 0 || self.stride == 0 {
            return Err("kernel and stride must be positive".into());
        }
        let window = Window::of(input, self.kernel, self.stride, self.padding);
        Ok(vec![n, window.out_h, window.out_w, c])
    }

    pub fn params(&self, input: &[usize]) -> Vec<ParamSpec> {
        let k = self.kernel;
        let weight = ParamSpec::new(
            "weight",
            vec![k, k, input[3]],
            ParamRole::Weight {
                fan_in: k * k,
                depthwise: true,
            },
        );
        std::iter::once(weight)
            .chain(fused_bias(self.fused, input[3]))
            .collect()
    }

    pub fn mult_adds(&self, _input: &[usize], output: &[usize]) -> u64 {
        let k = self.kernel as u64;
        output.iter().map(|&d| d as u64).product::<u64>() * k * k
    }

    /// The uniform block of every depthwise entry point (depthwise.wgsl's
    /// `DepthwiseParams`): prologue, input sums and output gradient off, one chunk and one
    /// image per invocation, until the passes that use them set them.
    fn uniform_params(&self, input: &[usize], output: &[usize]) -> [u32; 19] {
        let window = Window::of(input, self.kernel, self.stride, self.padding);
        let pixels = output[0] * output[1] * output[2];
        let [has_bias, act] = fused_words(self.fused);
        [
            input[0],
            input[1],
            input[2],
            input[3],
            output[1],
            output[2],
            self.kernel,
            self.stride,
            window.pad_top,
            window.pad_left,
            REDUCE_CHUNK,
            chunks(pixels),
            has_bias,
            act,
            0,
            0,
            0,
            1,
            1,
        ]
        .map(|v| v as u32)
    }

    fn dispatch(
        &self,
        entry: &'static str,
        input: &[usize],
        output: &[usize],
        threads: usize,
    ) -> Dispatch {
        let words = self.uniform_params(input, output);
        // Whole vec4 accesses when every 4-channel group is aligned (depthwise_vec4.wgsl).
        let shader = if input[3].is_multiple_of(4) {
            Shader::DepthwiseVec4
        } else {
            Shader::Depthwise
        };
        Dispatch {
            shader,
            entry,
            uniform: uniform_words(&words),
            // Binding 8 (the input's batch norm) is bound by `with_input_prologue`, 11 and
            // 12 (the output's) by `with_depthwise_output_grad`.
            bindings: [
                &BINDINGS[..],
                &[
                    (7, fused_bias_slot(self.fused)),
                    (8, Slot::Unused),
                    (INPUT_PARTIALS_BINDING, Slot::Scratch(0)),
                    (RAW_OUTPUT_BINDING, Slot::GradOutput),
                    (OUTPUT_NORM_BINDING, Slot::Unused),
                ],
            ]
            .concat(),
            workgroups: linear_grid(threads),
        }
    }

    #[doc(hidden)]
    pub fn forward(&self, input: &[usize], output: &[usize]) -> Vec<Dispatch> {
        if self.is_3x3() {
            // FORWARD_ROWS output rows per invocation, of `images` images.
            let images = forward_images(output);
            let threads = output[0].div_ceil(images)
                * output[1].div_ceil(FORWARD_ROWS)
                * four_pixel_groups(output);
            let entry = self.per_stride("forward_3x3", "forward_3x3_s2");
            let mut dispatch = self.dispatch(entry, input, output, threads);
            dispatch.set_uniform_word(IMAGES_WORD, images as u32);
            return vec![dispatch];
        }
        vec![self.dispatch("forward", input, output, vec4_threads(output))]
    }

    #[doc(hidden)]
    pub fn scratch(&self, input: &[usize], output: &[usize]) -> Vec<ScratchSpec> {
        // dW's partials, per chunk of output pixels, or of input pixels where the 3x3
        // backward computes them with dX.
        let pixels = (output[0] * output[1] * output[2]).max(input[0] * input[1] * input[2]);
        vec![ScratchSpec {
            floats: chunks(pixels) * self.kernel * self.kernel * input[3],
            persistent: false,
        }]
    }

    #[doc(hidden)]
    pub fn backward(&self, input: &[usize], output: &[usize], input_grad: bool) -> Vec<Dispatch> {
        let mut parts = chunks(output[0] * output[1] * output[2]);
        let weights = self.kernel * self.kernel * input[3];
        let groups = input[3].div_ceil(CHANNELS_PER_THREAD);
        // dW's first stage: per chunk of output pixels, partial sums of every tap; the 3x3
        // kernels take all 9 taps per invocation, over sliding input windows.
        let (weight_entry, weight_threads) = if self.is_3x3() {
            let entry = self.per_stride(
                "backward_weight_partial_3x3",
                "backward_weight_partial_3x3_s2",
            );
            (entry, parts * groups)
        } else {
            (
                "backward_weight_partial",
                parts * self.kernel * self.kernel * groups,
            )
        };
        let mut dispatches = Vec::new();
        match (input_grad, self.is_3x3()) {
            // dX and dW's first stage in one pass (depthwise.wgsl's backward_3x3): one
            // invocation per chunk of input pixels (the chunks of the input batch norm's
            // partials) and channel group, dW's partials per chunk of input pixels.
            (true, true) => {
                parts = chunks(input[0] * input[1] * input[2]);
                let entry = self.per_stride("backward_3x3", "backward_3x3_s2");
                let span = chunk_span(input[2]);
                let mut dispatch =
                    self.dispatch(entry, input, output, parts.div_ceil(span) * groups);
                dispatch.set_uniform_word(CHUNK_SPAN_WORD, span as u32);
                dispatches.push(dispatch);
            }
            (true, false) => {
                let threads = vec4_threads(input);
                dispatches.push(self.dispatch("backward_input", input, output, threads));
                dispatches.push(self.dispatch(weight_entry, input, output, weight_threads));
            }
            (false, _) => {
                dispatches.push(self.dispatch(weight_entry, input, output, weight_threads));
            }
        }
        dispatches.push(sum_partials(
            Slot::Scratch(0),
            Slot::ParamGrad(0),
            parts,
            weights,
        ));
        dispatches
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::{Activation, LINEAR_WORKGROUP};

    fn depthwise(kernel: usize, stride: usize) -> Depthwise {
        Depthwise {
            kernel,
            stride,
            padding: Padding::Symmetric,
            fused: None,
        }
    }

    #[test]
    fn the_3x3_backward_is_one_pass_over_chunks_of_input_pixels() {
        let (input, output) = ([2, 9, 9, 12], [2, 5, 5, 12]);
        let dispatches = depthwise(3, 2).backward(&input, &output, true);
        let entries: Vec<_> = dispatches.iter().map(|d| d.entry).collect();
        assert_eq!(entries, ["backward_3x3_s2", "sum_partials4"]);
        // One invocation per chunk of input pixels and 4-channel group, each leaving dW's
        // partials of its chunk, which sum_partials4 adds up.
        let input_chunks = chunks(2 * 9 * 9);
        let invocations: usize = dispatches[0]
            .workgroups
            .iter()
            .map(|&w| w as usize)
            .product();
        assert_eq!(
            invocations * LINEAR_WORKGROUP,
            (input_chunks * 3).next_multiple_of(LINEAR_WORKGROUP)
        );
        assert_eq!(dispatches[1].uniform_word(0), input_chunks as u32);
        let scratch = depthwise(3, 2).scratch(&input, &output);
        assert_eq!(scratch[0].floats, input_chunks * 9 * 12);
        // Without an input gradient, or with another filter size, the passes stay apart.
        let alone = depthwise(3, 2).backward(&input, &[2, 5, 5, 12], false);
        assert_eq!(alone[0].entry, "backward_weight_partial_3x3_s2");
        let five = depthwise(5, 1).backward(&input, &output, true);
        let entries: Vec<_> = five.iter().map(|d| d.entry).collect();
        assert_eq!(
            entries,
            ["backward_input", "backward_weight_partial", "sum_partials4"]
        );
    }

    #[test]
    fn the_3x3_backward_takes_its_input_batch_norms_sums_only_after_its_prologue() {
        let (input, output) = ([2, 9, 9, 12], [2, 9, 9, 12]);
        let backward = &depthwise(3, 1).backward(&input, &output, true)[0];
        assert!(
            with_depthwise_input_sums(backward).is_none(),
            "needs the statistics"
        );
        let normalised = crate::ops::with_input_prologue(backward, Activation::Relu).unwrap();
        let summing = with_depthwise_input_sums(&normalised).expect("a 3x3 backward with dX");
        assert_eq!(summing.uniform_word(INPUT_SUMS_WORD), 1);
        assert!(summing
            .bindings
            .contains(&(INPUT_PARTIALS_BINDING, Slot::InputPartials)));
        // dW alone (no input gradient) has no dX to sum over.
        let weight_only = &depthwise(3, 1).backward(&input, &output, false)[0];
        let normalised = crate::ops::with_input_prologue(weight_only, Activation::Relu).unwrap();
        assert!(with_depthwise_input_sums(&normalised).is_none());
    }

    #[test]
    fn the_backward_reads_the_output_and_statistics_of_the_batch_norm_after_it() {
        let (input, output) = ([2, 9, 9, 12], [2, 9, 9, 12]);
        for backward in depthwise(5, 1).backward(&input, &output, true) {
            let applied = crate::ops::with_output_grad_prologue(&backward, Activation::Relu6)
                .expect("every backward dispatch takes it");
            if backward.shader == Shader::Reduce {
                // sum_partials reads no dY: unchanged.
                assert_eq!(applied.bindings, backward.bindings);
                continue;
            }
            assert_eq!(backward.uniform_word(OUTPUT_GRAD_WORD), 0);
            assert!(backward
                .bindings
                .contains(&(RAW_OUTPUT_BINDING, Slot::GradOutput)));
            assert_eq!(applied.uniform_word(OUTPUT_GRAD_WORD), 3);
            for pair in [
                (RAW_OUTPUT_BINDING, Slot::Output),
                (OUTPUT_NORM_BINDING, Slot::OutputNorm),
            ] {
                assert!(applied.bindings.contains(&pair), "{pair:?}");
            }
            let rebound = applied
                .bindings
                .iter()
                .filter(|(b, _)| *b == RAW_OUTPUT_BINDING || *b == OUTPUT_NORM_BINDING);
            assert_eq!(rebound.count(), 2);
        }
    }

    #[test]
    fn the_3x3_forward_gives_invocations_several_small_images_while_the_grid_stays_wide() {
        // MobileNet at 32x32, batch 32: 4x4, 2x2 and 1x1 outputs.
        assert_eq!(forward_images(&[32, 4, 4, 256]), 2);
        assert_eq!(forward_images(&[32, 2, 2, 512]), 8);
        assert_eq!(forward_images(&[32, 1, 1, 1024]), 32);
        // Larger images, or too few invocations left: one image each.
        assert_eq!(forward_images(&[32, 8, 8, 128]), 1);
        assert_eq!(forward_images(&[8, 7, 7, 1024]), 1);
        assert_eq!(forward_images(&[2, 1, 1, 64]), 1);
        // The cases tests/golden_forward.rs adds for it.
        assert_eq!(forward_images(&[5, 2, 2, 1000]), 2);
        assert_eq!(forward_images(&[6, 2, 2, 1000]), 3);
        assert_eq!(forward_images(&[7, 1, 1, 1030]), 7);

        let (input, output) = ([5, 2, 2, 1000], [5, 2, 2, 1000]);
        let forward = &depthwise(3, 1).forward(&input, &output)[0];
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&forward.uniform);
        assert_eq!(words[IMAGES_WORD], 2);
        // 3 groups of images, one strip of one quad of pixels, 250 channel groups.
        assert_eq!(forward.workgroups, linear_grid(3 * 250));
    }

    #[test]
    fn the_3x3_forward_leaves_its_batch_norms_statistics_one_invocation_per_chunk() {
        let (input, output) = ([2, 15, 19, 12], [2, 8, 10, 12]);
        let forward = &depthwise(3, 2).forward(&input, &output)[0];
        let stats = with_depthwise_output_stats(forward).expect("a 3x3 forward");
        assert_eq!(stats.entry, "forward_3x3_s2_stats");
        assert!(stats.bindings.contains(&(10, Slot::OutputPartials)));
        // One invocation per chunk of 256 output pixels and group of 4 channels.
        let invocations: usize = stats.workgroups.iter().map(|&w| w as usize).product();
        assert_eq!(
            invocations * LINEAR_WORKGROUP,
            (chunks(2 * 8 * 10) * 3).next_multiple_of(LINEAR_WORKGROUP)
        );
        // The general kernel and the backward have no such form.
        let five = &depthwise(5, 1).forward(&input, &[2, 15, 19, 12])[0];
        assert!(with_depthwise_output_stats(five).is_none());
        let backward = &depthwise(3, 2).backward(&input, &output, true)[0];
        assert!(with_depthwise_output_stats(backward).is_none());
    }
}
