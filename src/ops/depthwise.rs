//! Depthwise convolution: one KxK filter per channel, weights [KH, KW, C]; a bias and
//! activation only when batchnorm is folded in for inference.

use super::{
    chunks, fused_bias, fused_bias_slot, fused_words, linear_grid, linear_grid_of, nhwc,
    sum_partials, Activation, Dispatch, Fused, Padding, ParamRole, ParamSpec, ScratchSpec, Slot,
    Window, LINEAR_WORKGROUP, REDUCE_CHUNK,
};
use crate::gpu::Shader;

/// depthwise.wgsl's uniform block `DepthwiseParams`, field for field (a test checks the
/// names and offsets against the shader); the passes below read and change a depthwise
/// dispatch through it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct DepthwiseWords {
    pub batch: u32,
    pub in_h: u32,
    pub in_w: u32,
    pub channels: u32,
    pub out_h: u32,
    pub out_w: u32,
    pub kernel: u32,
    pub stride: u32,
    pub pad_top: u32,
    pub pad_left: u32,
    pub pixels_per_chunk: u32,
    /// The chunks of output pixels.
    pub chunks: u32,
    pub has_bias: u32,
    pub act: u32,
    /// 0: the input as stored; else 1 + the activation code of its batch norm
    /// (`with_input_prologue`).
    pub prologue: u32,
    /// 1: the 3x3 backward also sums its input batch norm's backward partials
    /// (`with_depthwise_input_sums`).
    pub input_sums: u32,
    /// 0: dY as stored; else 1 + the activation code of the batch norm after this layer
    /// (`with_depthwise_output_grad`).
    pub output_grad: u32,
    /// Consecutive chunks per invocation of the 3x3 backward (`chunk_span`).
    pub chunk_span: u32,
    /// Images per invocation of the 3x3 forward (`forward_images`).
    pub images: u32,
    /// Output rows per invocation of the 3x3 forward (`strip_rows`).
    pub strip_rows: u32,
}

impl DepthwiseWords {
    /// The words of a depthwise dispatch (either access form); `None` for any other.
    pub(super) fn of(dispatch: &Dispatch) -> Option<DepthwiseWords> {
        if !matches!(dispatch.shader, Shader::Depthwise | Shader::DepthwiseVec4) {
            return None;
        }
        bytemuck::try_pod_read_unaligned(&dispatch.uniform).ok()
    }

    fn uniform(&self) -> Vec<u8> {
        bytemuck::bytes_of(self).to_vec()
    }
}

/// The word `with_input_prologue` sets, which it shares with other shaders' blocks.
pub(super) const PROLOGUE_WORD: usize = std::mem::offset_of!(DepthwiseWords, prologue) / 4;

fn is_fused_backward(dispatch: &Dispatch) -> bool {
    matches!(dispatch.shader, Shader::Depthwise | Shader::DepthwiseVec4)
        && matches!(
            dispatch.entry,
            "backward_3x3" | "backward_3x3_s2" | "backward_3x3_wg16" | "backward_3x3_s2_wg16"
        )
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
    let words = DepthwiseWords {
        input_sums: 1,
        ..DepthwiseWords::of(dispatch)?
    };
    let mut bindings = dispatch.bindings.clone();
    bindings.retain(|&(binding, _)| binding != INPUT_PARTIALS_BINDING);
    bindings.push((INPUT_PARTIALS_BINDING, Slot::InputPartials));
    Some(Dispatch {
        uniform: words.uniform(),
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
    let words = DepthwiseWords::of(dispatch)?;
    let (wide, narrow) = match dispatch.entry {
        "forward_3x3" | "forward_3x3_small" => ("forward_3x3_stats", "forward_3x3_stats_wg16"),
        "forward_3x3_s2" | "forward_3x3_small_s2" => {
            ("forward_3x3_s2_stats", "forward_3x3_s2_stats_wg16")
        }
        _ => return None,
    };
    let [channels, chunks] = [words.channels, words.chunks].map(|v| v as usize);
    let (entry, workgroups) = chunk_grid(
        chunks * channels.div_ceil(CHANNELS_PER_THREAD),
        wide,
        narrow,
    );
    let mut bindings = dispatch.bindings.clone();
    bindings.push((10, Slot::OutputPartials));
    Some(Dispatch {
        entry,
        bindings,
        workgroups,
        ..dispatch.clone()
    })
}

/// The bindings of the batch norm after the layer, for the backward's dY loads: its input
/// (this layer's raw output) and its statistics.
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
    let words = DepthwiseWords {
        output_grad: activation.shader_code() + 1,
        ..DepthwiseWords::of(dispatch)?
    };
    let mut bindings = dispatch.bindings.clone();
    bindings
        .retain(|&(binding, _)| binding != RAW_OUTPUT_BINDING && binding != OUTPUT_NORM_BINDING);
    bindings.push((RAW_OUTPUT_BINDING, Slot::Output));
    bindings.push((OUTPUT_NORM_BINDING, Slot::OutputNorm));
    Some(Dispatch {
        uniform: words.uniform(),
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

/// Chunks of REDUCE_CHUNK input pixels per invocation of the 3x3 backward for images
/// `width` pixels wide: enough for strips of about 8 rows, which load each dY row once for
/// 3 input rows after 2 rows of start-up (a chunk of a 112-pixel-wide image is 2.3 rows),
/// and at most 4, so that invocations stay many.
fn chunk_span(width: usize) -> usize {
    (8 * width).div_ceil(REDUCE_CHUNK).clamp(1, 4)
}

/// Below this many invocations the 3x3 kernels that walk chunks of pixels (the forward
/// with statistics and the backward) run in workgroups of NARROW_WORKGROUP (depthwise.wgsl's
/// `*_wg16` entry points): their invocations are few and long (a chunk of 256 pixels each),
/// and lavapipe hands whole workgroups to its threads, so 196 of them (the default job's
/// first backward) were 4 workgroups of 64, one nearly empty, for 2 threads, and the
/// statistics of its layers at 4x4 pixels one workgroup, on one thread. Larger grids keep
/// 64, which fill a GPU's SIMD units.
const NARROW_GRID_BELOW: usize = 1024;
/// Must match depthwise.wgsl's NARROW_WG_SIZE, the `*_wg16` entry points' workgroup size.
const NARROW_WORKGROUP: usize = 16;

/// The entry point (`wide`, or `narrow` for a grid under NARROW_GRID_BELOW) and the
/// workgroups for `threads` invocations of a kernel that walks chunks of pixels.
fn chunk_grid(
    threads: usize,
    wide: &'static str,
    narrow: &'static str,
) -> (&'static str, [u32; 3]) {
    if threads < NARROW_GRID_BELOW {
        (narrow, linear_grid_of(threads, NARROW_WORKGROUP))
    } else {
        (wide, linear_grid_of(threads, LINEAR_WORKGROUP))
    }
}

/// Output rows each invocation of the 3x3 forward computes for outputs of `shape` (the
/// strip in depthwise.wgsl's `forward_3x3`): a strip of r rows loads r + 2 input rows at
/// stride 1 (2r + 1 at stride 2), so long strips load fewer rows per output, and 32 rows
/// it is, or 16, where that leaves the grid MIN_TALL_STRIP_INVOCATIONS; else 8, as all
/// strips were before (images of at most 8 rows take one strip either way). On lavapipe
/// at 224/8 the 13 depthwise forwards took 26.5, 22.2 and 21.2 ms at 8, 16 and 32 rows
/// (performance.md, 2026-12-06, forenoon).
fn strip_rows(shape: &[usize]) -> usize {
    let per_strip = shape[0] * four_pixel_groups(shape);
    [32, 16]
        .into_iter()
        .find(|&rows| {
            shape[1] > 8 && shape[1].div_ceil(rows) * per_strip >= MIN_TALL_STRIP_INVOCATIONS
        })
        .unwrap_or(8)
}

/// The fewest invocations strip_rows leaves a 3x3 forward when it lengthens its strips:
/// enough for any CPU's threads, and a GPU keeps at least this many threads busy.
const MIN_TALL_STRIP_INVOCATIONS: usize = 1024;

/// Whether the 3x3 forward takes whole images (depthwise.wgsl's `forward_3x3_small`): at
/// most 2x2 pixels in and out.
pub(super) fn small_images(input: &[usize], output: &[usize]) -> bool {
    [input[1], input[2], output[1], output[2]]
        .iter()
        .all(|&side| side <= 2)
}

/// Images per invocation of the 3x3 forward for outputs of `shape`.
fn forward_images(shape: &[usize]) -> usize {
    let per_image = shape[1].div_ceil(strip_rows(shape)) * four_pixel_groups(shape);
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
    pub(super) fn is_3x3(&self) -> bool {
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
    fn uniform_params(&self, input: &[usize], output: &[usize]) -> DepthwiseWords {
        let window = Window::of(input, self.kernel, self.stride, self.padding);
        let pixels = output[0] * output[1] * output[2];
        let [has_bias, act] = fused_words(self.fused).map(|v| v as u32);
        let [batch, in_h, in_w, channels] = [0, 1, 2, 3].map(|d| input[d] as u32);
        DepthwiseWords {
            batch,
            in_h,
            in_w,
            channels,
            out_h: output[1] as u32,
            out_w: output[2] as u32,
            kernel: self.kernel as u32,
            stride: self.stride as u32,
            pad_top: window.pad_top as u32,
            pad_left: window.pad_left as u32,
            pixels_per_chunk: REDUCE_CHUNK as u32,
            chunks: chunks(pixels) as u32,
            has_bias,
            act,
            chunk_span: 1,
            images: 1,
            strip_rows: 8,
            ..DepthwiseWords::default()
        }
    }

    fn dispatch(
        &self,
        entry: &'static str,
        input: &[usize],
        output: &[usize],
        threads: usize,
    ) -> Dispatch {
        self.dispatch_with(entry, self.uniform_params(input, output), threads)
    }

    /// `dispatch` with its uniform words given.
    fn dispatch_with(
        &self,
        entry: &'static str,
        words: DepthwiseWords,
        threads: usize,
    ) -> Dispatch {
        // Whole vec4 accesses when every 4-channel group is aligned (depthwise_vec4.wgsl).
        let shader = if words.channels.is_multiple_of(4) {
            Shader::DepthwiseVec4
        } else {
            Shader::Depthwise
        };
        Dispatch {
            shader,
            entry,
            uniform: words.uniform(),
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
        if self.is_3x3() && small_images(input, output) {
            let groups = output[3].div_ceil(CHANNELS_PER_THREAD);
            let images = images_per_invocation(output[0], output[1] * output[2], groups);
            let entry = self.per_stride("forward_3x3_small", "forward_3x3_small_s2");
            let words = DepthwiseWords {
                images: images as u32,
                ..self.uniform_params(input, output)
            };
            return vec![self.dispatch_with(entry, words, output[0].div_ceil(images) * groups)];
        }
        if self.is_3x3() {
            // Strips of `rows` output rows per invocation, of `images` images.
            let rows = strip_rows(output);
            let images = forward_images(output);
            let threads =
                output[0].div_ceil(images) * output[1].div_ceil(rows) * four_pixel_groups(output);
            let entry = self.per_stride("forward_3x3", "forward_3x3_s2");
            let words = DepthwiseWords {
                images: images as u32,
                strip_rows: rows as u32,
                ..self.uniform_params(input, output)
            };
            return vec![self.dispatch_with(entry, words, threads)];
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
                let span = chunk_span(input[2]);
                let words = DepthwiseWords {
                    chunk_span: span as u32,
                    ..self.uniform_params(input, output)
                };
                let threads = parts.div_ceil(span) * groups;
                let (entry, workgroups) = chunk_grid(
                    threads,
                    self.per_stride("backward_3x3", "backward_3x3_s2"),
                    self.per_stride("backward_3x3_wg16", "backward_3x3_s2_wg16"),
                );
                dispatches.push(Dispatch {
                    workgroups,
                    ..self.dispatch_with(entry, words, threads)
                });
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
    use crate::ops::Activation;

    fn depthwise(kernel: usize, stride: usize) -> Depthwise {
        Depthwise {
            kernel,
            stride,
            padding: Padding::Symmetric,
            fused: None,
        }
    }

    /// 1024 invocations or more (here 4 chunks of 256 pixels times 256 channel groups) run
    /// in workgroups of 64; one chunk fewer, in workgroups of 16: the backward and the
    /// forward with statistics alike.
    #[test]
    fn only_small_grids_of_the_3x3_chunk_kernels_take_narrow_workgroups() {
        let grids = |rows: usize| {
            let input = [1, rows, 32, 1024];
            let backward = depthwise(3, 1).backward(&input, &input, true).remove(0);
            let forward = depthwise(3, 1).forward(&input, &input).remove(0);
            let stats = with_depthwise_output_stats(&forward).expect("a 3x3 forward");
            [backward, stats].map(|d| (d.entry, d.workgroups.iter().product::<u32>()))
        };
        // The shader's workgroup sizes, as naga reads them (gpu::PORTABILITY), are the
        // ones the grids are sized by.
        for (entry, width) in [
            ("backward_3x3", LINEAR_WORKGROUP),
            ("backward_3x3_s2", LINEAR_WORKGROUP),
            ("backward_3x3_wg16", NARROW_WORKGROUP),
            ("backward_3x3_s2_wg16", NARROW_WORKGROUP),
            ("forward_3x3_stats", LINEAR_WORKGROUP),
            ("forward_3x3_s2_stats", LINEAR_WORKGROUP),
            ("forward_3x3_stats_wg16", NARROW_WORKGROUP),
            ("forward_3x3_s2_stats_wg16", NARROW_WORKGROUP),
        ] {
            for shader in [Shader::Depthwise, Shader::DepthwiseVec4] {
                let table = crate::gpu::PORTABILITY.entry(shader, entry);
                assert_eq!(
                    table.map(|e| e.invocations as usize),
                    Some(width),
                    "{entry}"
                );
            }
        }
        let wide = 1024 / LINEAR_WORKGROUP as u32;
        let narrow = 768 / NARROW_WORKGROUP as u32;
        assert_eq!(
            grids(32),
            [("backward_3x3", wide), ("forward_3x3_stats", wide)]
        );
        assert_eq!(
            grids(24),
            [
                ("backward_3x3_wg16", narrow),
                ("forward_3x3_stats_wg16", narrow)
            ]
        );
    }

    #[test]
    fn the_3x3_backward_is_one_pass_over_chunks_of_input_pixels() {
        let (input, output) = ([2, 9, 9, 12], [2, 5, 5, 12]);
        let dispatches = depthwise(3, 2).backward(&input, &output, true);
        let entries: Vec<_> = dispatches.iter().map(|d| d.entry).collect();
        // So few invocations take the 16-wide workgroups.
        assert_eq!(entries, ["backward_3x3_s2_wg16", "sum_partials4"]);
        // One invocation per chunk of input pixels and 4-channel group, each leaving dW's
        // partials of its chunk, which sum_partials4 adds up.
        let input_chunks = chunks(2 * 9 * 9);
        let workgroups: usize = dispatches[0]
            .workgroups
            .iter()
            .map(|&w| w as usize)
            .product();
        assert_eq!(
            workgroups * NARROW_WORKGROUP,
            (input_chunks * 3).next_multiple_of(NARROW_WORKGROUP)
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
        assert_eq!(DepthwiseWords::of(&summing).map(|w| w.input_sums), Some(1));
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
            let output_grad = |d: &Dispatch| DepthwiseWords::of(d).map(|w| w.output_grad);
            assert_eq!(output_grad(&backward), Some(0));
            assert!(backward
                .bindings
                .contains(&(RAW_OUTPUT_BINDING, Slot::GradOutput)));
            assert_eq!(output_grad(&applied), Some(3));
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

    /// depthwise.wgsl's `DepthwiseParams` and `DepthwiseWords` name the same words in the
    /// same places.
    #[test]
    fn the_words_match_the_shaders_uniform_block() {
        use super::super::dispatch::{check_words_against_shader, field_offsets};
        let fields = field_offsets!(DepthwiseWords;
            batch, in_h, in_w, channels, out_h, out_w, kernel, stride, pad_top, pad_left,
            pixels_per_chunk, chunks, has_bias, act, prologue, input_sums, output_grad,
            chunk_span, images, strip_rows);
        for shader in [Shader::Depthwise, Shader::DepthwiseVec4] {
            let size = std::mem::size_of::<DepthwiseWords>();
            check_words_against_shader(shader, "DepthwiseParams", &fields, size);
        }
    }

    #[test]
    fn the_3x3_forward_takes_long_strips_while_the_grid_stays_wide() {
        // MobileNet at 224, batch 8: 32 rows down to the 14x14 layers; 7x7 in one strip.
        assert_eq!(strip_rows(&[8, 112, 112, 32]), 32);
        assert_eq!(strip_rows(&[8, 14, 14, 512]), 32);
        assert_eq!(strip_rows(&[8, 7, 7, 1024]), 8);
        // Batch 1: 16 rows at 112x112; at 28x28 longer strips would leave too few.
        assert_eq!(strip_rows(&[1, 112, 112, 32]), 16);
        assert_eq!(strip_rows(&[1, 28, 28, 256]), 8);
        // 32x32, batch 32: the 16x16 layer whole; 8x8 and smaller as before.
        assert_eq!(strip_rows(&[32, 16, 16, 32]), 32);
        assert_eq!(strip_rows(&[32, 8, 8, 128]), 8);
        // The outputs of the cases tests/golden_forward.rs adds for it.
        assert_eq!(strip_rows(&[2, 40, 4, 1024]), 32);
        assert_eq!(strip_rows(&[4, 17, 4, 512]), 16);
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
        assert_eq!(DepthwiseWords::of(forward).map(|w| w.images), Some(2));
        // 3 groups of images, whole, by 250 channel groups.
        assert_eq!(forward.entry, "forward_3x3_small");
        assert_eq!(forward.workgroups, linear_grid(3 * 250));
    }

    #[test]
    fn images_of_at_most_2x2_pixels_in_and_out_take_the_whole_image_kernel() {
        let entry = |stride: usize, input: [usize; 4], output: [usize; 4]| {
            depthwise(3, stride).forward(&input, &output)[0].entry
        };
        assert_eq!(entry(1, [4, 2, 1, 8], [4, 2, 1, 8]), "forward_3x3_small");
        assert_eq!(entry(2, [4, 2, 2, 8], [4, 1, 1, 8]), "forward_3x3_small_s2");
        // A 2x2 output of a 4x4 input: the strips.
        assert_eq!(entry(2, [4, 4, 4, 8], [4, 2, 2, 8]), "forward_3x3_s2");
        assert_eq!(entry(1, [4, 3, 2, 8], [4, 3, 2, 8]), "forward_3x3");
        // Training's forward with statistics takes them in chunks of pixels, as any other.
        let small = &depthwise(3, 2).forward(&[4, 2, 2, 8], &[4, 1, 1, 8])[0];
        let stats = with_depthwise_output_stats(small).expect("a 3x3 forward");
        assert_eq!(stats.entry, "forward_3x3_s2_stats_wg16");
    }

    #[test]
    fn the_3x3_forward_leaves_its_batch_norms_statistics_one_invocation_per_chunk() {
        let (input, output) = ([2, 15, 19, 12], [2, 8, 10, 12]);
        let forward = &depthwise(3, 2).forward(&input, &output)[0];
        let stats = with_depthwise_output_stats(forward).expect("a 3x3 forward");
        assert_eq!(stats.entry, "forward_3x3_s2_stats_wg16");
        assert!(stats.bindings.contains(&(10, Slot::OutputPartials)));
        // One invocation per chunk of 256 output pixels and group of 4 channels (so few
        // that they run in workgroups of 16).
        let workgroups: usize = stats.workgroups.iter().map(|&w| w as usize).product();
        assert_eq!(
            workgroups * NARROW_WORKGROUP,
            (chunks(2 * 8 * 10) * 3).next_multiple_of(NARROW_WORKGROUP)
        );
        // The general kernel and the backward have no such form.
        let five = &depthwise(5, 1).forward(&input, &[2, 15, 19, 12])[0];
        assert!(with_depthwise_output_stats(five).is_none());
        let backward = &depthwise(3, 2).backward(&input, &output, true)[0];
        assert!(with_depthwise_output_stats(backward).is_none());
    }
}
