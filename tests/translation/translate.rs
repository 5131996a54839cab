//! One entry point through naga's back end for one target, with the options and binding
//! maps wgpu-hal 30.0.2 passes when it builds a compute pipeline whose layout wgpu derived
//! from the shader (`layout: None`, as every pipeline of this crate has). Each function
//! cites the wgpu-hal source its options follow.

use super::targets::{Language, Target};
use naga::back::{glsl, hlsl, msl, spv};
use naga::{Module, ResourceBinding, ShaderStage};
use wgpu::Features;

/// What a back end wrote.
pub enum Output {
    /// MSL or HLSL: no compiler for them runs on Linux, so their translation is the check.
    Text,
    Glsl(String),
    Spirv(Vec<u32>),
}

/// How the derived bind-group layout binds a buffer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BufferKind {
    Uniform,
    ReadOnlyStorage,
    Storage,
}

/// The buffers of the layout wgpu derives for a single-entry module, in binding order (the
/// order wgpu-core sorts a derived layout's entries in, and so the order the back ends
/// number registers and slots in).
fn buffers(module: &Module) -> Result<Vec<(ResourceBinding, BufferKind)>, String> {
    let mut buffers = Vec::new();
    for (_, var) in module.global_variables.iter() {
        let Some(binding) = var.binding else { continue };
        let kind = match var.space {
            naga::AddressSpace::Uniform => BufferKind::Uniform,
            naga::AddressSpace::Storage { access }
                if access.contains(naga::StorageAccess::STORE) =>
            {
                BufferKind::Storage
            }
            naga::AddressSpace::Storage { .. } => BufferKind::ReadOnlyStorage,
            other => {
                return Err(format!(
                    "binding {binding:?} in {other:?}: only buffers are modelled"
                ))
            }
        };
        buffers.push((binding, kind));
    }
    buffers.sort_by_key(|(binding, _)| (binding.group, binding.binding));
    buffers.dedup_by_key(|(binding, _)| *binding);
    Ok(buffers)
}

/// `entry` of a module validated for a device with `features`, translated for `target`.
/// Like every wgpu-hal back end, first resolves overrides and keeps only that entry point
/// (`process_overrides`, e.g. vulkan/device.rs:770).
pub fn translate(
    module: &Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    target: &Target,
    features: Features,
) -> Result<Output, String> {
    let constants = naga::back::PipelineConstants::default();
    let (module, info) = naga::back::pipeline_constants::process_overrides(
        module,
        info,
        Some((ShaderStage::Compute, entry)),
        &constants,
    )
    .map_err(|e| format!("resolving overrides: {}", chain(&e)))?;
    let buffers = buffers(&module)?;
    match target.language {
        Language::Msl(major, minor) => msl(&module, &info, entry, (major, minor), &buffers),
        Language::Hlsl(model) => hlsl(&module, &info, entry, model, &buffers),
        Language::Spirv(major, minor) => {
            spirv(&module, &info, entry, (major, minor), features, &buffers)
        }
        Language::Glsl(version) => glsl(&module, &info, entry, version, &buffers),
    }
}

/// An error with its sources, the way naga nests them.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The bounds checks wgpu asks for with its default runtime checks (`ShaderRuntimeChecks::
/// checked()`): Restrict everywhere but binding arrays (metal/device.rs:185-189, 214-220;
/// vulkan/adapter.rs:2838-2851, where devices with robust buffer access skip the buffer
/// checks: Restrict is the stricter translation).
fn restricted() -> naga::proc::BoundsCheckPolicies {
    use naga::proc::BoundsCheckPolicy::{Restrict, Unchecked};
    naga::proc::BoundsCheckPolicies {
        index: Restrict,
        buffer: Restrict,
        image_load: Restrict,
        binding_array: Unchecked,
    }
}

/// metal/device.rs:191-253 (options) and :797-968 (binding map): buffers take slots in
/// layout order, and storage buffers make a sizes buffer follow them.
fn msl(
    module: &Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    lang_version: (u8, u8),
    buffers: &[(ResourceBinding, BufferKind)],
) -> Result<Output, String> {
    let mut resources = msl::BindingMap::new();
    for (slot, &(binding, kind)) in buffers.iter().enumerate() {
        let target = msl::BindTarget {
            buffer: Some(slot as msl::Slot),
            mutable: kind == BufferKind::Storage,
            ..Default::default()
        };
        resources.insert(binding, target);
    }
    let has_storage = buffers.iter().any(|&(_, kind)| kind != BufferKind::Uniform);
    let resources = msl::EntryPointResources {
        resources,
        immediates_buffer: None,
        sizes_buffer: has_storage.then_some(buffers.len() as msl::Slot),
    };
    let options = msl::Options {
        lang_version,
        per_entry_point_map: [(entry.to_string(), resources)].into(),
        fake_missing_bindings: false,
        bounds_check_policies: restricted(),
        ..Default::default()
    };
    let pipeline = msl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry.to_string())),
        allow_and_force_point_size: false,
        vertex_pulling_transform: true,
        vertex_buffer_mappings: Vec::new(),
        binding_array_length_map: Default::default(),
    };
    let (_, translation) =
        msl::write_string(module, info, &options, &pipeline).map_err(|e| chain(&e))?;
    match &translation.entry_point_names[..] {
        [Ok(_)] => Ok(Output::Text),
        [Err(e)] => Err(chain(e)),
        other => Err(format!(
            "{} entry points written instead of one",
            other.len()
        )),
    }
}

/// dx12/device.rs:1481-1500 (options) and :1040-1156 (binding map): CBV, SRV and UAV
/// registers count up separately in space 0 (`registers` is indexed by `BufferKind` in that
/// order); wgpu-core always asks for the NUM_WORK_GROUPS special constants (wgpu-core
/// device/resource.rs:3934-3936), which take the next CBV register (dx12/device.rs:
/// 1351-1375).
fn hlsl(
    module: &Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    shader_model: hlsl::ShaderModel,
    buffers: &[(ResourceBinding, BufferKind)],
) -> Result<Output, String> {
    let mut registers = [0u32; 3];
    let mut binding_map = hlsl::BindingMap::new();
    for &(binding, kind) in buffers {
        let register = &mut registers[kind as usize];
        let target = hlsl::BindTarget {
            register: *register,
            ..Default::default()
        };
        binding_map.insert(binding, target);
        *register += 1;
    }
    let cbv = BufferKind::Uniform as usize;
    let options = hlsl::Options {
        shader_model,
        binding_map,
        fake_missing_bindings: false,
        special_constants_binding: Some(hlsl::BindTarget {
            register: registers[cbv],
            ..Default::default()
        }),
        task_dispatch_limits: Some(task_limits()),
        ..Default::default()
    };
    let pipeline = hlsl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, entry.to_string())),
    };
    let mut out = String::new();
    let reflection = hlsl::Writer::new(&mut out, &options, &pipeline)
        .write(module, info, None)
        .map_err(|e| chain(&e))?;
    match &reflection.entry_point_names[..] {
        [Ok(_)] => Ok(Output::Text),
        [Err(e)] => Err(chain(e)),
        other => Err(format!(
            "{} entry points written instead of one",
            other.len()
        )),
    }
}

/// The mesh-shader limits wgpu passes (they change nothing in compute shaders).
fn task_limits() -> naga::back::TaskDispatchLimits {
    let limits = wgpu::Limits::default();
    naga::back::TaskDispatchLimits {
        max_mesh_workgroups_per_dim: limits.max_mesh_workgroups_per_dimension,
        max_mesh_workgroups_total: limits.max_mesh_workgroup_total_count,
    }
}

/// gles/device.rs:1286-1377 (options; binding map at :1315-1358, uniform and storage
/// buffers counting up separately) and :292-378 (pipeline options, bounds checks: GLSL
/// gets none but images').
fn glsl(
    module: &Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    version: glsl::Version,
    buffers: &[(ResourceBinding, BufferKind)],
) -> Result<Output, String> {
    let mut counters = [0u8; 2];
    let mut binding_map = glsl::BindingMap::new();
    for &(binding, kind) in buffers {
        let counter = &mut counters[(kind != BufferKind::Uniform) as usize];
        binding_map.insert(binding, *counter);
        *counter += 1;
    }
    let options = glsl::Options {
        version,
        writer_flags: glsl::WriterFlags::ADJUST_COORDINATE_SPACE
            | glsl::WriterFlags::FORCE_POINT_SIZE,
        binding_map,
        zero_initialize_workgroup_memory: true,
    };
    let pipeline = glsl::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry.to_string(),
        multiview: None,
    };
    let policies = naga::proc::BoundsCheckPolicies::default();
    let mut out = String::new();
    glsl::Writer::new(&mut out, module, info, &options, &pipeline, policies)
        .and_then(|mut writer| writer.write())
        .map_err(|e| chain(&e))?;
    Ok(Output::Glsl(out))
}

/// vulkan/adapter.rs:2668-2876 (options; the capabilities of the features enabled) and
/// vulkan/device.rs:1416-1456, 1611-1633 (binding map: a set's bindings renumbered densely
/// in layout order).
fn spirv(
    module: &Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    lang_version: (u8, u8),
    features: Features,
    buffers: &[(ResourceBinding, BufferKind)],
) -> Result<Output, String> {
    let binding_map = buffers
        .iter()
        .enumerate()
        .map(|(index, &(binding, _))| {
            let info = spv::BindingInfo {
                descriptor_set: binding.group,
                binding: index as u32,
                binding_array_size: None,
            };
            (binding, info)
        })
        .collect();
    // Vulkan 1.3 zero-initialises workgroup memory natively; before, naga writes the stores.
    let zero_initialize = if lang_version >= (1, 6) {
        spv::ZeroInitializeWorkgroupMemoryMode::Native
    } else {
        spv::ZeroInitializeWorkgroupMemoryMode::Polyfill
    };
    let options = spv::Options {
        lang_version,
        flags: spv::WriterFlags::LABEL_VARYINGS | spv::WriterFlags::FORCE_POINT_SIZE,
        capabilities: Some(spirv_capabilities(features)),
        bounds_check_policies: restricted(),
        zero_initialize_workgroup_memory: zero_initialize,
        use_storage_input_output_16: features.contains(Features::SHADER_F16),
        fake_missing_bindings: false,
        binding_map,
        task_dispatch_limits: Some(task_limits()),
        ..Default::default()
    };
    let pipeline = spv::PipelineOptions {
        shader_stage: ShaderStage::Compute,
        entry_point: entry.to_string(),
    };
    let words = spv::write_vec(module, info, &options, Some(&pipeline)).map_err(|e| chain(&e))?;
    Ok(Output::Spirv(words))
}

/// The SPIR-V capabilities wgpu-hal declares for a device (vulkan/adapter.rs:2671-2740):
/// those every Vulkan device has, and those of the enabled features this test models. The
/// integer dot product ones (:2809-2817) depend on the hardware; without them naga writes
/// the portable form, which is the one every device takes.
fn spirv_capabilities(features: Features) -> naga::FastHashSet<spv::Capability> {
    use spv::Capability as C;
    let mut capabilities = vec![
        C::Shader,
        C::Matrix,
        C::Sampled1D,
        C::Image1D,
        C::ImageQuery,
        C::DerivativeControl,
        C::StorageImageExtendedFormats,
    ];
    if features.contains(Features::SUBGROUP) {
        capabilities.extend([
            C::GroupNonUniform,
            C::GroupNonUniformVote,
            C::GroupNonUniformArithmetic,
            C::GroupNonUniformBallot,
            C::GroupNonUniformShuffle,
            C::GroupNonUniformShuffleRelative,
            C::GroupNonUniformQuad,
        ]);
    }
    if features.contains(Features::SHADER_F16) {
        capabilities.push(C::Float16);
    }
    capabilities.into_iter().collect()
}
