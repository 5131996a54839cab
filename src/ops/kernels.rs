//! The kernels that can compute one dispatch: an op emits a dispatch, and here it gets the
//! alternatives that give the same result another way (other tiles, subgroups, scalar
//! instead of vec4 accesses), for the tuner to time on the adapter (see
//! `graph::kernel_choice`).

use super::gemm_kernels::{
    narrow_subgroup_gemm_dispatch, subgroup_gemm_dispatch, tall_subgroup_gemm_dispatch,
    tiled_gemm_dispatch, wide_subgroup_gemm_dispatch, TileRows,
};
use super::int8_ops::{
    subgroup_int8_gemm_dispatch, tall_subgroup_int8_gemm_dispatch, x16_int8_depthwise_dispatch,
    Int8Multiply,
};
use super::{linear_grid, Dispatch};
use crate::gpu::{
    Gpu, Shader, ACCESS_KERNELS, GEMM_KERNELS, INT8_GEMM_KERNELS, PORTABILITY, WORDS64_KERNEL,
};

/// What the adapter can run, as far as the choice of kernels goes.
#[derive(Clone, Copy, Debug)]
pub struct KernelCaps {
    /// The 8-lane subgroup GEMM may run (see `Gpu::subgroup_gemm`).
    pub subgroup_gemm: bool,
    /// The device has 64-bit integers: the `words64` depthwise and batch-norm kernels and
    /// update may run.
    pub int64: bool,
    pub max_invocations_per_workgroup: u32,
    pub max_workgroup_storage_bytes: u32,
    /// The adapter's API: a kernel naga cannot translate for it is never offered there
    /// (`gpu::PORTABILITY`, which tests/portability.rs generates).
    pub backend: wgpu::Backend,
}

impl KernelCaps {
    /// The capabilities of an open device.
    pub fn of(gpu: &Gpu) -> KernelCaps {
        let limits = gpu.limits();
        KernelCaps {
            subgroup_gemm: gpu.subgroup_gemm(),
            int64: gpu.has_features(wgpu::Features::SHADER_INT64),
            max_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_workgroup_storage_bytes: limits.max_compute_workgroup_storage_size,
            backend: gpu.backend(),
        }
    }

    /// Whether a kernel can run here: its entry point translates for this back end, and
    /// its workgroup fits the adapter's limits (both read from the portability table).
    fn runs(&self, dispatch: &Dispatch) -> bool {
        PORTABILITY.runs_on(dispatch.shader, dispatch.entry, self.backend)
            && PORTABILITY
                .entry(dispatch.shader, dispatch.entry)
                .is_none_or(|e| {
                    e.invocations <= self.max_invocations_per_workgroup
                        && e.workgroup_bytes <= self.max_workgroup_storage_bytes
                })
    }
}

/// One way to run a dispatch.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub name: &'static str,
    pub dispatch: Dispatch,
    /// Whether the tuner times it on this adapter. Kernels measured to lose everywhere on
    /// such adapters are left out of the timing (they still run when forced, which is how
    /// the tests check them on every adapter).
    pub timed: bool,
}

/// The kernels that compute one dispatch, the default first.
#[derive(Clone, Debug)]
pub struct Alternatives {
    /// The kernel family, entry point and full shape (every uniform word): what a choice is
    /// cached by.
    pub key: String,
    pub candidates: Vec<Candidate>,
}

impl Alternatives {
    /// The candidates the tuner times on this adapter, the default first.
    pub fn timed(&self) -> impl Iterator<Item = &Candidate> {
        self.candidates.iter().filter(|c| c.timed)
    }
}

/// The alternatives for a dispatch, or `None` where there is only one kernel (or none the
/// adapter can run).
pub fn alternatives(dispatch: &Dispatch, caps: &KernelCaps) -> Option<Alternatives> {
    let words: &[u32] = bytemuck::try_cast_slice(&dispatch.uniform).ok()?;
    let (family, mut candidates) = match dispatch.shader {
        Shader::Gemm | Shader::GemmVec4 => ("gemm", gemm_candidates(dispatch, caps)),
        Shader::GemmInt8 => ("gemm-int8", int8_gemm_candidates(dispatch, caps)),
        // 16 channels per invocation (vec4s of packed words) or the base kernel's 4.
        Shader::DepthwiseInt8 => ("depthwise-int8", int8_depthwise_candidates(dispatch)?),
        Shader::DepthwiseVec4 => ("depthwise", depthwise_candidates(dispatch, caps)),
        Shader::Optim if caps.int64 => ("update", update_candidates(dispatch)),
        // One grid serves both of its jobs; only the vec4 form is offered.
        Shader::BnActVec4 if dispatch.entry == super::BatchNorm::FINALIZE_WITH_WEIGHT_SUMS => {
            return None
        }
        Shader::BnActVec4 => {
            // The scalar kernel takes one channel per invocation: 4 times the invocations
            // (the kernels skip those past the tensor, so covering more is harmless).
            let [x, y, _] = dispatch.workgroups;
            let invocations = x as usize * y as usize * super::LINEAR_WORKGROUP;
            let grid = linear_grid(4 * invocations);
            ("batchnorm", batchnorm_candidates(dispatch, grid, caps))
        }
        _ => return None,
    };
    candidates.retain(|c| caps.runs(&c.dispatch));
    if candidates.is_empty() {
        return None;
    }
    let words: Vec<String> = words.iter().map(u32::to_string).collect();
    Some(Alternatives {
        key: format!("{family} {} {}", dispatch.entry, words.join(",")),
        candidates,
    })
}

/// The vec4 dispatch and its scalar form.
fn access_candidates(vec4: &Dispatch, scalar: Shader, workgroups: [u32; 3]) -> [Candidate; 2] {
    [
        Candidate {
            name: ACCESS_KERNELS[0],
            dispatch: vec4.clone(),
            timed: true,
        },
        Candidate {
            name: ACCESS_KERNELS[1],
            dispatch: Dispatch {
                shader: scalar,
                workgroups,
                ..vec4.clone()
            },
            timed: true,
        },
    ]
}

/// The vec4 depthwise kernel, its scalar form (the same grid: both handle 4 channels per
/// invocation) and, where the device has 64-bit integers, the vec4 kernel moving its
/// activations as 64-bit words, which then comes first: on lavapipe on an AVX2 CPU the
/// depthwise steps of a 32/32 training step took 23.9 ms with it against 32.9
/// (performance.md, 2026-12-07, morning).
///
/// On CPU adapters (those that run the subgroup GEMMs) the scalar form is not timed: on
/// lavapipe it loads each channel on its own, lane by lane, and lost every shape of the
/// default job's plans by 1.1-3.6x in two cold runs, while its entry points are the
/// slowest depthwise ones to compile (performance.md, "First use: compiling the
/// kernels"): timing it only lengthened the first run.
fn depthwise_candidates(vec4: &Dispatch, caps: &KernelCaps) -> Vec<Candidate> {
    let [vec4_form, mut scalar] = access_candidates(vec4, Shader::Depthwise, vec4.workgroups);
    scalar.timed = !caps.subgroup_gemm;
    let mut candidates = vec![vec4_form, scalar];
    if caps.int64 {
        candidates.insert(0, words64_candidate(vec4, Shader::DepthwiseWords64));
    }
    candidates
}

/// The vec4 batch-norm dispatch, its scalar form on `scalar_grid` and, for the entry points
/// that move activations or gradients where the device has 64-bit integers, the vec4
/// kernel moving those as 64-bit words, then first. The finalize stages, which touch only
/// per-channel planes, keep the two forms.
fn batchnorm_candidates(
    vec4: &Dispatch,
    scalar_grid: [u32; 3],
    caps: &KernelCaps,
) -> Vec<Candidate> {
    let mut candidates = access_candidates(vec4, Shader::BnAct, scalar_grid).to_vec();
    if caps.int64 && super::BatchNorm::passes_over_activations(vec4.entry) {
        candidates.insert(0, words64_candidate(vec4, Shader::BnActWords64));
    }
    candidates
}

/// `vec4`'s dispatch run by its 64-bit-word form `words`.
fn words64_candidate(vec4: &Dispatch, words: Shader) -> Candidate {
    Candidate {
        name: WORDS64_KERNEL,
        dispatch: Dispatch {
            shader: words,
            ..vec4.clone()
        },
        timed: true,
    }
}

/// The optimizer's update moving its vectors as 64-bit words, and the vec4 form (not timed:
/// it runs where forced, so the tests check it on every adapter). The update is one
/// dispatch over every parameter, whose table would make a long cache key; the 64-bit
/// words won where timed (performance.md, 2026-12-07, morning).
fn update_candidates(vec4: &Dispatch) -> Vec<Candidate> {
    vec![
        words64_candidate(vec4, Shader::OptimWords64),
        Candidate {
            name: ACCESS_KERNELS[0],
            dispatch: vec4.clone(),
            timed: false,
        },
    ]
}

fn gemm_candidates(dispatch: &Dispatch, caps: &KernelCaps) -> Vec<Candidate> {
    GEMM_KERNELS
        .iter()
        .filter_map(|&name| {
            let dispatch = match name {
                "subgroup-16x32" if caps.subgroup_gemm => subgroup_gemm_dispatch(dispatch)?,
                "subgroup-32x32" if caps.subgroup_gemm => tall_subgroup_gemm_dispatch(dispatch)?,
                "subgroup-32x64" if caps.subgroup_gemm => wide_subgroup_gemm_dispatch(dispatch)?,
                "subgroup-rows" if caps.subgroup_gemm => narrow_subgroup_gemm_dispatch(dispatch)?,
                "blocked-8x8" => dispatch.clone(),
                // Whether their workgroups fit the adapter is `KernelCaps::runs`'s to say.
                "tiled-64x64" => tiled_gemm_dispatch(dispatch, TileRows::R64)?,
                "tiled-128x64" => tiled_gemm_dispatch(dispatch, TileRows::R128)?,
                _ => return None,
            };
            // On CPU adapters (those that run the subgroup kernels) the workgroup-memory
            // tiles lost every shape by 2.6-29x on lavapipe, where a barrier is a thread
            // switch; timing them there only lengthened the first run.
            let timed = !(caps.subgroup_gemm && name.starts_with("tiled-"));
            Some(Candidate {
                name,
                dispatch,
                timed,
            })
        })
        .collect()
}

/// The 16-channel int8 depthwise kernel (the default: vec4s of packed words) and the base
/// kernel's 4 channels (one word) per invocation.
fn int8_depthwise_candidates(dispatch: &Dispatch) -> Option<Vec<Candidate>> {
    let x16 = x16_int8_depthwise_dispatch(dispatch)?;
    let forms = [
        (ACCESS_KERNELS[0], x16),
        (ACCESS_KERNELS[1], dispatch.clone()),
    ];
    Some(
        forms
            .into_iter()
            .map(|(name, dispatch)| Candidate {
                name,
                dispatch,
                timed: true,
            })
            .collect(),
    )
}

fn int8_gemm_candidates(dispatch: &Dispatch, caps: &KernelCaps) -> Vec<Candidate> {
    INT8_GEMM_KERNELS
        .iter()
        .filter_map(|&name| {
            let dispatch = match name {
                "subgroup-16x32-widened" if caps.subgroup_gemm => {
                    subgroup_int8_gemm_dispatch(dispatch, Int8Multiply::Widened)?
                }
                "subgroup-16x32-dot4" if caps.subgroup_gemm => {
                    subgroup_int8_gemm_dispatch(dispatch, Int8Multiply::Dot4)?
                }
                "subgroup-32x32-widened" if caps.subgroup_gemm => {
                    tall_subgroup_int8_gemm_dispatch(dispatch, Int8Multiply::Widened)?
                }
                "subgroup-32x32-dot4" if caps.subgroup_gemm => {
                    tall_subgroup_int8_gemm_dispatch(dispatch, Int8Multiply::Dot4)?
                }
                "subgroup-32x32-widened-f32" if caps.subgroup_gemm => {
                    tall_subgroup_int8_gemm_dispatch(dispatch, Int8Multiply::WidenedF32)?
                }
                "blocked-8x8" => dispatch.clone(),
                _ => return None,
            };
            Some(Candidate {
                name,
                dispatch,
                timed: true,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gemm::Gemm;
    use crate::ops::Slot;

    fn caps(subgroup_gemm: bool) -> KernelCaps {
        KernelCaps {
            subgroup_gemm,
            int64: false,
            max_invocations_per_workgroup: 256,
            max_workgroup_storage_bytes: 16384,
            backend: wgpu::Backend::Vulkan,
        }
    }

    fn gemm(m: usize, n: usize, k: usize) -> Dispatch {
        Gemm::plain(m, n, k).dispatch(Slot::Input, Slot::Param(0), Slot::Unused, Slot::Output)
    }

    fn names(alternatives: &Alternatives) -> Vec<&'static str> {
        alternatives.candidates.iter().map(|c| c.name).collect()
    }

    /// Every GEMM kernel but `subgroup-rows`, which takes only narrow chunk walks.
    fn plain_gemm_kernels() -> Vec<&'static str> {
        GEMM_KERNELS
            .into_iter()
            .filter(|&name| name != "subgroup-rows")
            .collect()
    }

    #[test]
    fn the_default_is_the_fixed_rule_of_before() {
        let cpu = alternatives(&gemm(100, 64, 32), &caps(true)).expect("a GEMM");
        assert_eq!(names(&cpu), plain_gemm_kernels());
        let gpu = alternatives(&gemm(100, 64, 32), &caps(false)).expect("a GEMM");
        assert_eq!(names(&gpu), ["blocked-8x8", "tiled-64x64", "tiled-128x64"]);
    }

    #[test]
    fn narrow_statistics_gemms_also_offer_whole_row_lanes() {
        let narrow = crate::ops::with_output_stats(&gemm(2048, 16, 8)).expect("a forward");
        let cpu = alternatives(&narrow, &caps(true)).expect("a GEMM");
        assert_eq!(
            names(&cpu),
            [
                "subgroup-32x32",
                "subgroup-16x32",
                "subgroup-rows",
                "blocked-8x8"
            ]
        );
        let gpu = alternatives(&narrow, &caps(false)).expect("a GEMM");
        assert_eq!(names(&gpu), ["blocked-8x8"]);
    }

    #[test]
    fn cpu_adapters_do_not_time_the_workgroup_memory_tiles() {
        let timed = |caps: &KernelCaps| -> Vec<&'static str> {
            let offered = alternatives(&gemm(100, 64, 32), caps).expect("a GEMM");
            offered.timed().map(|c| c.name).collect()
        };
        assert_eq!(
            timed(&caps(true)),
            [
                "subgroup-32x32",
                "subgroup-16x32",
                "subgroup-32x64",
                "blocked-8x8"
            ]
        );
        assert_eq!(
            timed(&caps(false)),
            ["blocked-8x8", "tiled-64x64", "tiled-128x64"]
        );
    }

    #[test]
    fn small_workgroup_limits_leave_out_the_tiled_kernels() {
        let with_bytes = |bytes: u32| {
            let small = KernelCaps {
                max_workgroup_storage_bytes: bytes,
                ..caps(false)
            };
            names(&alternatives(&gemm(100, 64, 32), &small).expect("a GEMM"))
        };
        // The 64-row tile's two slabs of A and of B take 8 KiB, the 128-row tile's 12 KiB.
        assert_eq!(with_bytes(8191), ["blocked-8x8"]);
        assert_eq!(with_bytes(8192), ["blocked-8x8", "tiled-64x64"]);
        let few_lanes = KernelCaps {
            max_invocations_per_workgroup: 128,
            ..caps(false)
        };
        let only = alternatives(&gemm(100, 64, 32), &few_lanes).expect("a GEMM");
        assert_eq!(names(&only), ["blocked-8x8"]);
    }

    #[test]
    fn kernels_are_offered_only_where_they_translate() {
        // wgpu's GL back end has no subgroup operations, so the table runs the subgroup
        // GEMMs on the other three APIs only.
        for backend in crate::gpu::TABLE_BACKENDS {
            let on = KernelCaps {
                backend,
                ..caps(true)
            };
            let offered = names(&alternatives(&gemm(100, 64, 32), &on).expect("a GEMM"));
            let subgroups = offered.iter().any(|name| name.starts_with("subgroup-"));
            assert_eq!(
                subgroups,
                backend != wgpu::Backend::Gl,
                "{backend:?}: {offered:?}"
            );
        }
        // Back ends the table does not cover keep every kernel.
        let browser = KernelCaps {
            backend: wgpu::Backend::BrowserWebGpu,
            ..caps(true)
        };
        let offered = alternatives(&gemm(100, 64, 32), &browser).expect("a GEMM");
        assert_eq!(names(&offered), plain_gemm_kernels());
    }

    #[test]
    fn shapes_have_their_own_keys_and_other_kernels_none() {
        let a = alternatives(&gemm(100, 64, 32), &caps(false)).expect("a GEMM");
        let b = alternatives(&gemm(100, 64, 36), &caps(false)).expect("a GEMM");
        assert_ne!(a.key, b.key);
        let reduce = crate::ops::sum_partials(Slot::Scratch(0), Slot::Output, 2, 8);
        assert!(alternatives(&reduce, &caps(true)).is_none());
    }

    #[test]
    fn depthwise_and_batchnorm_offer_their_scalar_form_where_vec4_runs() {
        use crate::ops::{Activation, BatchNorm, Depthwise, Padding};
        let depthwise = Depthwise {
            kernel: 3,
            stride: 1,
            padding: Padding::Symmetric,
            fused: None,
        };
        let shape = [2, 8, 8, 16];
        let forward = depthwise.forward(&shape, &shape).remove(0);
        let offered = alternatives(&forward, &caps(false)).expect("vec4 depthwise");
        assert_eq!(names(&offered), ACCESS_KERNELS);
        let scalar = &offered.candidates[1].dispatch;
        assert_eq!(scalar.shader, Shader::Depthwise);
        assert_eq!(scalar.workgroups, forward.workgroups);
        // With 64-bit integers the 64-bit-word form comes first, on the same grid.
        let int64 = KernelCaps {
            int64: true,
            ..caps(false)
        };
        let offered = alternatives(&forward, &int64).expect("vec4 depthwise");
        assert_eq!(names(&offered), [WORDS64_KERNEL, "vec4", "scalar"]);
        let words = &offered.candidates[0].dispatch;
        assert_eq!(words.shader, Shader::DepthwiseWords64);
        assert_eq!(
            (words.entry, words.workgroups),
            (forward.entry, forward.workgroups)
        );
        // CPU adapters (the subgroup GEMMs') time the vec4 forms only; forced, the scalar
        // one still runs.
        let cpu = KernelCaps {
            subgroup_gemm: true,
            ..int64
        };
        let offered = alternatives(&forward, &cpu).expect("vec4 depthwise");
        assert_eq!(names(&offered), [WORDS64_KERNEL, "vec4", "scalar"]);
        let timed: Vec<&str> = offered.timed().map(|c| c.name).collect();
        assert_eq!(timed, [WORDS64_KERNEL, "vec4"]);
        // 13 channels: only the scalar kernel applies.
        let odd = [2, 8, 8, 13];
        assert!(alternatives(&depthwise.forward(&odd, &odd)[0], &caps(false)).is_none());

        let bn = BatchNorm {
            eps: 1e-5,
            activation: Activation::Relu,
        };
        let pass = bn.forward(&shape, &shape).remove(0);
        let offered = alternatives(&pass, &caps(false)).expect("vec4 batch norm");
        let scalar = &offered.candidates[1].dispatch;
        assert_eq!(scalar.shader, Shader::BnAct);
        // 2 x 8 x 8 x 16 elements, one per scalar invocation: 32 workgroups of 64.
        assert!(scalar.workgroups[0] * scalar.workgroups[1] * 64 >= 2 * 8 * 8 * 16);
        // With 64-bit integers the passes over the activations add their 64-bit-word form,
        // first, on the vec4 grid; the finalize stage (per-channel planes only) does not.
        let train = bn.forward_train(&shape, &crate::ops::TrainSettings::default());
        let [partial, finalize, normalise] = [&train[0], &train[1], &train[2]];
        for pass in [partial, normalise] {
            let offered = alternatives(pass, &int64).expect("vec4 batch norm");
            assert_eq!(names(&offered), [WORDS64_KERNEL, "vec4", "scalar"]);
            let words = &offered.candidates[0].dispatch;
            assert_eq!(words.shader, Shader::BnActWords64);
            assert_eq!(words.workgroups, pass.workgroups);
        }
        assert_eq!(finalize.entry, "stats_finalize");
        let offered = alternatives(finalize, &int64).expect("vec4 batch norm");
        assert_eq!(names(&offered), ACCESS_KERNELS);
    }

    #[test]
    fn int8_depthwise_loads_16_channels_where_the_count_allows() {
        use crate::ops::{Int8Depthwise, Int8Output, Int8Window, Padding};
        let dispatch = |channels: usize, kernel: usize, stride: usize| {
            let window = Int8Window {
                kernel,
                stride,
                padding: Padding::Symmetric,
                input_zero: 0,
            };
            let output = Int8Output::linear(0);
            Int8Depthwise { window, output }
                .forward(&[2, 17, 19, channels])
                .expect("a valid shape")
        };
        for (stride, entry) in [(1, "forward_3x3"), (2, "forward_3x3_s2")] {
            let offered = alternatives(&dispatch(32, 3, stride), &caps(false)).expect("3x3");
            assert_eq!(names(&offered), ACCESS_KERNELS);
            let x16 = &offered.candidates[0].dispatch;
            assert_eq!((x16.shader, x16.entry), (Shader::DepthwiseInt8X16, entry));
            // A quarter of the invocations: 16 channels each instead of 4.
            let base = &offered.candidates[1].dispatch;
            let invocations = |d: &Dispatch| d.workgroups.iter().product::<u32>();
            assert!(
                invocations(x16) * 4 >= invocations(base) && invocations(x16) < invocations(base)
            );
        }
        assert!(alternatives(&dispatch(24, 3, 1), &caps(false)).is_none());
        assert!(alternatives(&dispatch(32, 5, 1), &caps(false)).is_none());
    }

    #[test]
    fn int8_gemms_offer_every_kernel_where_subgroups_run() {
        use crate::ops::{int8_pointwise, Int8Output};
        let offered = |k: usize, caps: &KernelCaps| {
            let dispatch = int8_pointwise(&[1, 3, 3, k], 10, Int8Output::linear(0));
            names(&alternatives(&dispatch, caps).expect("an int8 GEMM"))
        };
        // The widened kernels sum in i32 as dot4I8Packed does: any K. Their f32 form is
        // exact up to K = 1024.
        assert_eq!(offered(1024, &caps(true)), INT8_GEMM_KERNELS);
        let in_i32: Vec<_> = INT8_GEMM_KERNELS
            .into_iter()
            .filter(|name| *name != "subgroup-32x32-widened-f32")
            .collect();
        assert_eq!(offered(1028, &caps(true)), in_i32);
        assert_eq!(offered(4100, &caps(true)), in_i32);
        assert_eq!(offered(64, &caps(false)), ["blocked-8x8"]);
        // The 32x32 tiles: 70 rows in 3 row tiles, 40 columns in 2.
        let dispatch = int8_pointwise(&[1, 7, 10, 16], 40, Int8Output::linear(0));
        let offered = alternatives(&dispatch, &caps(true)).expect("an int8 GEMM");
        let tall: Vec<_> = offered
            .candidates
            .iter()
            .filter(|c| c.name.starts_with("subgroup-32x32"))
            .map(|c| (c.name, c.dispatch.entry, c.dispatch.workgroups))
            .collect();
        assert_eq!(
            tall,
            [
                (
                    "subgroup-32x32-widened",
                    "forward_subgroup_32_widened",
                    [3, 2, 1]
                ),
                (
                    "subgroup-32x32-widened-f32",
                    "forward_subgroup_32_widened_f32",
                    [3, 2, 1]
                ),
                ("subgroup-32x32-dot4", "forward_subgroup_32_dot4", [3, 2, 1])
            ]
        );
        // The classifier's logits have the same candidates, on entry points of their own.
        let logits = crate::ops::Int8Gemm {
            rows: 2,
            k: 64,
            n: 10,
        }
        .logits(Slot::Input, Slot::Output);
        let offered = alternatives(&logits, &caps(true)).expect("an int8 GEMM");
        let entries: Vec<&str> = offered
            .candidates
            .iter()
            .map(|c| c.dispatch.entry)
            .collect();
        assert_eq!(
            entries,
            [
                "logits_subgroup_widened",
                "logits_subgroup_dot4",
                "logits_f32"
            ]
        );
    }

    #[test]
    fn tiled_grids_cover_the_output() {
        let tiled = tiled_gemm_dispatch(&gemm(130, 70, 64), TileRows::R64).expect("a GEMM");
        assert_eq!((tiled.shader, tiled.entry), (Shader::GemmTiled64, "tiled"));
        assert_eq!(tiled.workgroups, [2, 3, 1]);
        let tall = tiled_gemm_dispatch(&gemm(130, 64, 64), TileRows::R128).expect("a GEMM");
        assert_eq!(tall.shader, Shader::GemmTiled128Vec4);
        assert_eq!(tall.workgroups, [1, 2, 1]);
    }
}
