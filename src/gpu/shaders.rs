//! The WGSL sources, compiled into the binary and validated with naga.

use std::borrow::Cow;
use std::fmt;

/// Prepended to every shader file: WGSL has no include mechanism.
const COMMON: &str = include_str!("../../shaders/common.wgsl");

const DEPTHWISE: &str = include_str!("../../shaders/depthwise.wgsl");
const OPTIM: &str = include_str!("../../shaders/optim.wgsl");
const DEPTHWISE_VEC4: &str = include_str!("../../shaders/depthwise_vec4.wgsl");
const BN_ACT: &str = include_str!("../../shaders/bn_act.wgsl");
const BN_ACT_VEC4: &str = include_str!("../../shaders/bn_act_vec4.wgsl");
const GEMM: &str = include_str!("../../shaders/gemm.wgsl");
const GEMM_SUBGROUP: &str = include_str!("../../shaders/gemm_subgroup.wgsl");
const GEMM_VEC4: &str = include_str!("../../shaders/gemm_vec4.wgsl");
const GEMM_TILED: &str = include_str!("../../shaders/gemm_tiled.wgsl");
/// Prepended (after COMMON) to the int8 shaders: exact conversion and requantization.
const INT8_COMMON: &str = include_str!("../../shaders/int8_common.wgsl");
const GEMM_INT8: &str = include_str!("../../shaders/gemm_int8.wgsl");
const DEPTHWISE_INT8: &str = include_str!("../../shaders/depthwise_int8.wgsl");
const ACCESS_BEGIN: &str = "// ACCESS BEGIN";
const ACCESS_END: &str = "// ACCESS END";

/// `base` with its element-access block (the lines from ACCESS_BEGIN to ACCESS_END)
/// replaced by `access`: the same kernels with vec4 memory accesses. Splicing text keeps
/// one copy of each kernel while every entry point sees each binding through one type
/// only (WGSL lets no entry point use two views of one binding).
fn splice_access(base: &str, access: &str) -> String {
    splice(base, ACCESS_BEGIN, ACCESS_END, access)
}

/// `base` with the lines from `begin` to `end` replaced by `block`.
fn splice(base: &str, begin: &str, end: &str, block: &str) -> String {
    let start = base.find(begin).expect("the shader marks its block");
    let stop = base[start..]
        .find(end)
        .map(|offset| start + offset + end.len())
        .expect("the shader ends its block");
    format!("{}{block}{}", &base[..start], &base[stop..])
}

/// A vec4 module or access block with its words block (WORDS BEGIN to WORDS END) replaced
/// by `words` after words64.wgsl: the same accesses moved as 64-bit words.
fn words64(vec4: &str, words: &str) -> String {
    let block = format!("{}{words}", include_str!("../../shaders/words64.wgsl"));
    splice(vec4, "// WORDS BEGIN", "// WORDS END", &block)
}

/// gemm_tiled.wgsl appended to a GEMM module, with its tile height and rows per invocation.
fn tiled_gemm(base: &str, tile_rows: u32, thread_rows: u32) -> String {
    format!(
        "{base}\nconst TILE_M: u32 = {tile_rows}u;\nconst THREAD_ROWS: u32 = {thread_rows}u;\n{GEMM_TILED}"
    )
}

/// An int8 shader file after the int8 prelude.
fn int8(body: &str) -> Cow<'static, str> {
    Cow::Owned(format!("{INT8_COMMON}\n{body}"))
}

/// What one compute entry point binds.
#[derive(Clone, Debug)]
pub struct EntryBindings {
    pub entry: String,
    /// The bindings of group 0 it uses.
    pub bindings: Vec<u32>,
    /// Those of them it may write (read_write storage).
    pub writable: Vec<u32>,
    /// Those of them it does store to: entry points of one module share declarations, so
    /// a `read_write` binding may be only read by this one.
    pub stored: Vec<u32>,
}

/// One WGSL file per layer type (the GEMM file serves both pointwise and dense).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Conv2d,
    Depthwise,
    /// depthwise.wgsl with whole-vec4 loads and stores, for channel counts divisible by 4.
    DepthwiseVec4,
    /// DepthwiseVec4 moving its activations and gradients as 64-bit words
    /// (depthwise_words64.wgsl): the `words64` kernel.
    DepthwiseWords64,
    Gemm,
    /// gemm.wgsl with whole-vec4 accesses, for operands contiguous along K or N.
    GemmVec4,
    /// The GEMM for 8-lane subgroups (see `Gpu::subgroup_gemm`).
    GemmSubgroup,
    /// gemm_subgroup.wgsl with whole-vec4 accesses moved as 64-bit words
    /// (gemm_words64.wgsl), plus its kernel for transposed A and its wide tile
    /// (gemm_subgroup_at.wgsl, gemm_subgroup_wide.wgsl).
    GemmSubgroupVec4,
    /// gemm_tiled.wgsl with 64x64 tiles (4x4 per invocation), scalar accesses.
    GemmTiled64,
    /// The 64x64 tiled GEMM with whole-vec4 accesses.
    GemmTiled64Vec4,
    /// gemm_tiled.wgsl with 128x64 tiles (8x4 per invocation), scalar accesses.
    GemmTiled128,
    /// The 128x64 tiled GEMM with whole-vec4 accesses.
    GemmTiled128Vec4,
    BnAct,
    /// bn_act.wgsl on vec4s of 4 channels, for channel counts divisible by 4.
    BnActVec4,
    /// BnActVec4 moving its activations and gradients as 64-bit words
    /// (bn_act_words64.wgsl): the `words64` batch-norm kernel.
    BnActWords64,
    Pool,
    Softmax,
    Reduce,
    Optim,
    /// optim.wgsl moving parameters, gradients and state as 64-bit words
    /// (optim_words64.wgsl): the `words64` update.
    OptimWords64,
    /// The int8 GEMM (pointwise, dense, the stem after im2col; logits for the classifier).
    GemmInt8,
    /// The int8 GEMM for 8-lane subgroups (gemm_int8_subgroup.wgsl after gemm_int8.wgsl).
    GemmInt8Subgroup,
    /// Int8 depthwise convolution.
    DepthwiseInt8,
    /// depthwise_int8.wgsl loading 16 channels at a time, for channel counts divisible by
    /// 16 (depthwise_int8_x16.wgsl in its access block).
    DepthwiseInt8X16,
    /// Int8 global average pooling.
    PoolInt8,
    /// The int8 stem's im2col.
    Conv2dInt8,
}

impl Shader {
    pub const ALL: [Shader; 26] = [
        Shader::Conv2d,
        Shader::Depthwise,
        Shader::DepthwiseVec4,
        Shader::DepthwiseWords64,
        Shader::Gemm,
        Shader::GemmVec4,
        Shader::GemmSubgroup,
        Shader::GemmSubgroupVec4,
        Shader::GemmTiled64,
        Shader::GemmTiled64Vec4,
        Shader::GemmTiled128,
        Shader::GemmTiled128Vec4,
        Shader::BnAct,
        Shader::BnActVec4,
        Shader::BnActWords64,
        Shader::Pool,
        Shader::Softmax,
        Shader::Reduce,
        Shader::Optim,
        Shader::OptimWords64,
        Shader::GemmInt8,
        Shader::GemmInt8Subgroup,
        Shader::DepthwiseInt8,
        Shader::DepthwiseInt8X16,
        Shader::PoolInt8,
        Shader::Conv2dInt8,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Shader::Conv2d => "conv2d.wgsl",
            Shader::Depthwise => "depthwise.wgsl",
            Shader::DepthwiseVec4 => "depthwise_vec4.wgsl",
            Shader::DepthwiseWords64 => "depthwise_vec4.wgsl+depthwise_words64.wgsl",
            Shader::Gemm => "gemm.wgsl",
            Shader::GemmSubgroup => "gemm_subgroup.wgsl",
            Shader::GemmVec4 => "gemm_vec4.wgsl",
            // Names what the module is made of: profiles list entry points by it.
            Shader::GemmSubgroupVec4 => "gemm_subgroup.wgsl+gemm_vec4.wgsl+gemm_words64.wgsl",
            Shader::GemmTiled64 => "gemm_tiled.wgsl(64x64)",
            Shader::GemmTiled64Vec4 => "gemm_tiled.wgsl(64x64)+gemm_vec4.wgsl",
            Shader::GemmTiled128 => "gemm_tiled.wgsl(128x64)",
            Shader::GemmTiled128Vec4 => "gemm_tiled.wgsl(128x64)+gemm_vec4.wgsl",
            Shader::BnAct => "bn_act.wgsl",
            Shader::BnActVec4 => "bn_act_vec4.wgsl",
            Shader::BnActWords64 => "bn_act_vec4.wgsl+bn_act_words64.wgsl",
            Shader::Pool => "pool.wgsl",
            Shader::Softmax => "softmax_xent.wgsl",
            Shader::Reduce => "reduce.wgsl",
            Shader::Optim => "optim.wgsl",
            Shader::OptimWords64 => "optim.wgsl+optim_words64.wgsl",
            Shader::GemmInt8 => "gemm_int8.wgsl",
            Shader::GemmInt8Subgroup => "gemm_int8.wgsl+gemm_int8_subgroup.wgsl",
            Shader::DepthwiseInt8 => "depthwise_int8.wgsl",
            Shader::DepthwiseInt8X16 => "depthwise_int8.wgsl+depthwise_int8_x16.wgsl",
            Shader::PoolInt8 => "pool_int8.wgsl",
            Shader::Conv2dInt8 => "conv2d_int8.wgsl",
        }
    }

    fn body(self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Shader::Conv2d => include_str!("../../shaders/conv2d.wgsl"),
            Shader::Depthwise => DEPTHWISE,
            Shader::DepthwiseVec4 => return Cow::Owned(splice_access(DEPTHWISE, DEPTHWISE_VEC4)),
            Shader::DepthwiseWords64 => {
                let words = include_str!("../../shaders/depthwise_words64.wgsl");
                return Cow::Owned(splice_access(DEPTHWISE, &words64(DEPTHWISE_VEC4, words)));
            }
            Shader::Gemm => GEMM,
            Shader::GemmSubgroup => return Cow::Owned(format!("{GEMM}{GEMM_SUBGROUP}")),
            Shader::GemmVec4 => return Cow::Owned(splice_access(GEMM, GEMM_VEC4)),
            Shader::GemmSubgroupVec4 => {
                let at = include_str!("../../shaders/gemm_subgroup_at.wgsl");
                let wide = include_str!("../../shaders/gemm_subgroup_wide.wgsl");
                return Cow::Owned(format!(
                    "{}{GEMM_SUBGROUP}{at}{wide}",
                    splice_access(
                        GEMM,
                        &words64(GEMM_VEC4, include_str!("../../shaders/gemm_words64.wgsl"))
                    )
                ));
            }
            Shader::GemmTiled64 => return Cow::Owned(tiled_gemm(GEMM, 64, 4)),
            Shader::GemmTiled64Vec4 => {
                return Cow::Owned(tiled_gemm(&splice_access(GEMM, GEMM_VEC4), 64, 4))
            }
            Shader::GemmTiled128 => return Cow::Owned(tiled_gemm(GEMM, 128, 8)),
            Shader::GemmTiled128Vec4 => {
                return Cow::Owned(tiled_gemm(&splice_access(GEMM, GEMM_VEC4), 128, 8))
            }
            Shader::BnAct => BN_ACT,
            Shader::BnActVec4 => return Cow::Owned(splice_access(BN_ACT, BN_ACT_VEC4)),
            Shader::BnActWords64 => {
                let words = include_str!("../../shaders/bn_act_words64.wgsl");
                return Cow::Owned(words64(&splice_access(BN_ACT, BN_ACT_VEC4), words));
            }
            Shader::Pool => include_str!("../../shaders/pool.wgsl"),
            Shader::Softmax => include_str!("../../shaders/softmax_xent.wgsl"),
            Shader::Reduce => include_str!("../../shaders/reduce.wgsl"),
            Shader::Optim => OPTIM,
            Shader::OptimWords64 => {
                let words = include_str!("../../shaders/optim_words64.wgsl");
                return Cow::Owned(words64(OPTIM, words));
            }
            Shader::GemmInt8 => return int8(GEMM_INT8),
            Shader::GemmInt8Subgroup => {
                return int8(&format!(
                    "{GEMM_INT8}{}",
                    include_str!("../../shaders/gemm_int8_subgroup.wgsl")
                ))
            }
            Shader::DepthwiseInt8 => return int8(DEPTHWISE_INT8),
            Shader::DepthwiseInt8X16 => {
                let access = include_str!("../../shaders/depthwise_int8_x16.wgsl");
                return int8(&splice_access(DEPTHWISE_INT8, access));
            }
            Shader::PoolInt8 => return int8(include_str!("../../shaders/pool_int8.wgsl")),
            Shader::Conv2dInt8 => return int8(include_str!("../../shaders/conv2d_int8.wgsl")),
        })
    }

    /// The full source handed to the driver: the shared prelude, then the file.
    pub fn source(self) -> String {
        format!("{COMMON}\n{}", self.body())
    }

    /// The optional device features the module needs: subgroup operations for the
    /// subgroup GEMMs, and 64-bit integers for the modules that move vec4s as 64-bit words
    /// (words64.wgsl).
    pub fn needs_features(self) -> wgpu::Features {
        match self {
            Shader::GemmSubgroup | Shader::GemmInt8Subgroup => wgpu::Features::SUBGROUP,
            Shader::GemmSubgroupVec4 => wgpu::Features::SUBGROUP | wgpu::Features::SHADER_INT64,
            Shader::DepthwiseWords64 | Shader::BnActWords64 | Shader::OptimWords64 => {
                wgpu::Features::SHADER_INT64
            }
            _ => wgpu::Features::empty(),
        }
    }

    /// Parses and validates the source with naga, returning each compute entry point with
    /// the bindings (of group 0) it actually uses and those of them it may write. wgpu
    /// derives a pipeline's bind-group layout from exactly those, so the plan binds exactly
    /// those.
    pub fn reflect(self) -> Result<Vec<EntryBindings>, String> {
        let source = self.source();
        let module = naga::front::wgsl::parse_str(&source)
            .map_err(|e| format!("{}: {}", self.file_name(), e.emit_to_string(&source)))?;
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map_err(|e| format!("{}: {}", self.file_name(), e.emit_to_string(&source)))?;
        Ok(module
            .entry_points
            .iter()
            .enumerate()
            .filter(|(_, ep)| ep.stage == naga::ShaderStage::Compute)
            .map(|(index, ep)| {
                let uses = info.get_entry_point(index);
                let used = module
                    .global_variables
                    .iter()
                    .filter(|(handle, _)| !uses[*handle].is_empty());
                let mut bindings = Vec::new();
                let mut writable = Vec::new();
                let mut stored = Vec::new();
                for (handle, var) in used {
                    let Some(binding) = var.binding.as_ref().map(|b| b.binding) else {
                        continue;
                    };
                    bindings.push(binding);
                    if uses[handle].contains(naga::valid::GlobalUse::WRITE) {
                        stored.push(binding);
                    }
                    if let naga::AddressSpace::Storage { access } = var.space {
                        if access.contains(naga::StorageAccess::STORE) {
                            writable.push(binding);
                        }
                    }
                }
                // A binding may be declared twice, as scalars and as vec4s.
                for list in [&mut bindings, &mut writable, &mut stored] {
                    list.sort_unstable();
                    list.dedup();
                }
                EntryBindings {
                    entry: ep.name.clone(),
                    bindings,
                    writable,
                    stored,
                }
            })
            .collect())
    }

    /// The compute entry points, after naga validation.
    pub fn validate(self) -> Result<Vec<String>, String> {
        Ok(self.reflect()?.into_iter().map(|e| e.entry).collect())
    }
}

impl fmt::Display for Shader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}
