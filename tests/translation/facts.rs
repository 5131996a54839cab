//! What a shader module and each of its entry points ask of a device, read from naga's IR:
//! the optional features (found by validating without each), the subgroup width the
//! module assumes, workgroup size and memory, packed integer dot products.

use super::targets::PROBED;
use super::translate::chain;
use mobilenet_wgpu::gpu::Shader;
use naga::{Expression, MathFunction, Module, ShaderStage};
use wgpu::Features;

/// A parsed shader and the features wgpu must enable to create it.
pub struct ShaderFacts {
    pub shader: Shader,
    pub module: Module,
    /// The features of `PROBED` validation fails without. wgpu validates the whole module
    /// when it is created, so every entry point of it needs them.
    pub needs: Features,
    /// naga's message validating the module without them: why they are needed.
    pub without: Option<String>,
    /// The module's `SUBGROUP_LANES`, where it uses subgroups.
    pub subgroup_lanes: Option<u32>,
}

/// What one entry point, alone in its module with overrides at their defaults, needs.
pub struct EntryFacts {
    /// The features of `PROBED` the entry point itself uses (its module may need more).
    pub uses: Features,
    pub invocations: u32,
    pub workgroup_bytes: u32,
    pub integer_dot_product: bool,
}

/// The validator wgpu-core runs when it creates a shader module on a device with
/// `features` (wgpu-core device/resource.rs:2447, through wgpu-naga-bridge's map from
/// features to naga capabilities).
fn validator(features: Features) -> naga::valid::Validator {
    wgpu_naga_bridge::create_validator(
        features,
        wgpu::DownlevelFlags::compliant(),
        naga::valid::ValidationFlags::all(),
    )
}

/// Validates as wgpu-core does, naga's message quoting `source` on failure.
pub fn validate(
    module: &Module,
    source: &str,
    features: Features,
) -> Result<naga::valid::ModuleInfo, String> {
    validator(features)
        .validate(module)
        .map_err(|e| e.emit_to_string(source))
}

/// Every feature of `PROBED`.
fn probed() -> Features {
    PROBED
        .iter()
        .fold(Features::empty(), |all, (feature, _)| all | *feature)
}

/// The features of `PROBED` the module does not validate without.
fn needed_features(module: &Module) -> Features {
    let validates = |features| validator(features).validate(module).is_ok();
    PROBED
        .iter()
        .map(|(feature, _)| *feature)
        .filter(|&feature| !validates(probed() - feature))
        .fold(Features::empty(), |all, feature| all | feature)
}

/// Parses `shader` and finds the features it needs by leaving each out in turn.
pub fn shader_facts(shader: Shader) -> Result<ShaderFacts, String> {
    let source = shader.source();
    let module = naga::front::wgsl::parse_str(&source).map_err(|e| e.emit_to_string(&source))?;
    validate(&module, &source, probed()).map_err(|e| {
        format!(
            "does not validate even with every feature the table models ({:?}):\n{e}",
            probed()
        )
    })?;
    let needs = needed_features(&module);
    // The message without its source excerpt, which would change with every edit above it.
    let without = validator(Features::empty())
        .validate(&module)
        .err()
        .map(|e| chain(e.as_inner()));
    let subgroup_lanes = if needs.contains(Features::SUBGROUP) {
        Some(declared_lanes(&module).ok_or(
            "uses subgroup operations but declares no `const SUBGROUP_LANES: u32`, the \
             subgroup width it assumes",
        )?)
    } else {
        None
    };
    Ok(ShaderFacts {
        shader,
        module,
        needs,
        without,
        subgroup_lanes,
    })
}

/// The value of the module's `const SUBGROUP_LANES`.
fn declared_lanes(module: &Module) -> Option<u32> {
    let (_, constant) = module
        .constants
        .iter()
        .find(|(_, c)| c.name.as_deref() == Some("SUBGROUP_LANES"))?;
    match module.global_expressions[constant.init] {
        Expression::Literal(naga::Literal::U32(lanes)) => Some(lanes),
        _ => None,
    }
}

/// The facts of `entry`: its module cut down to it with overrides at their defaults, as
/// the back ends see it.
pub fn entry_facts(
    module: &Module,
    info: &naga::valid::ModuleInfo,
    entry: &str,
) -> Result<EntryFacts, String> {
    let constants = naga::back::PipelineConstants::default();
    let (module, _) = naga::back::pipeline_constants::process_overrides(
        module,
        info,
        Some((ShaderStage::Compute, entry)),
        &constants,
    )
    .map_err(|e| format!("resolving overrides: {}", chain(&e)))?;
    let point = &module.entry_points[0];
    let workgroup_bytes = module
        .global_variables
        .iter()
        .filter(|(_, var)| var.space == naga::AddressSpace::WorkGroup)
        .map(|(_, var)| module.types[var.ty].inner.size(module.to_ctx()))
        .sum();
    let functions = module
        .functions
        .iter()
        .map(|(_, function)| function)
        .chain([&point.function]);
    let integer_dot_product = functions.flat_map(|f| f.expressions.iter()).any(|(_, e)| {
        matches!(
            e,
            Expression::Math {
                fun: MathFunction::Dot4I8Packed | MathFunction::Dot4U8Packed,
                ..
            }
        )
    });
    Ok(EntryFacts {
        uses: needed_features(&module),
        invocations: point.workgroup_size.iter().product(),
        workgroup_bytes,
        integer_dot_product,
    })
}

/// The compute entry points of a module, in source order.
pub fn compute_entries(module: &Module) -> Vec<String> {
    module
        .entry_points
        .iter()
        .filter(|point| point.stage == ShaderStage::Compute)
        .map(|point| point.name.clone())
        .collect()
}
