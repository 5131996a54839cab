//! The shading-language versions wgpu 30 translates WGSL to on each back end, and the
//! optional device features wgpu-hal offers at each: what the portability test translates
//! every entry point for. Each list cites the wgpu-hal 30.0.2 source it follows.

use naga::back::{glsl, hlsl};
use wgpu::{Backend, Features};

/// One language version wgpu may hand naga's output to.
#[derive(Clone, Copy, Debug)]
pub enum Language {
    /// Metal Shading Language (major, minor).
    Msl(u8, u8),
    /// HLSL for this shader model (5.1 is FXC's, 6.x DXC's).
    Hlsl(hlsl::ShaderModel),
    /// SPIR-V (major, minor).
    Spirv(u8, u8),
    Glsl(glsl::Version),
}

/// A back end at one language version, with the features wgpu can enable there.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub backend: Backend,
    pub language: Language,
    /// The features of `PROBED` wgpu-hal offers at this version on capable hardware.
    pub offers: Features,
}

/// The optional features the test finds out about each shader: every one a kernel might
/// need. A module that needs another fails validation with all of these and is reported.
pub const PROBED: [(Features, &str); 4] = [
    (Features::SUBGROUP, "subgroups"),
    (Features::SUBGROUP_BARRIER, "subgroup barriers"),
    (Features::SHADER_F16, "f16"),
    (Features::SHADER_INT64, "64-bit integers"),
];

impl Target {
    /// The language: "MSL", "HLSL", "SPIR-V" or "GLSL".
    pub fn language(&self) -> &'static str {
        match self.language {
            Language::Msl(..) => "MSL",
            Language::Hlsl(_) => "HLSL",
            Language::Spirv(..) => "SPIR-V",
            Language::Glsl(_) => "GLSL",
        }
    }

    /// The version alone: "2.2", "SM 6.0", "1.3", "310 es".
    pub fn version(&self) -> String {
        match self.language {
            Language::Msl(major, minor) | Language::Spirv(major, minor) => {
                format!("{major}.{minor}")
            }
            Language::Hlsl(model) => format!("SM {}", model.to_str().replace('_', ".")),
            Language::Glsl(glsl::Version::Desktop(v)) => v.to_string(),
            Language::Glsl(glsl::Version::Embedded { version, .. }) => format!("{version} es"),
        }
    }

    /// How the table and the failures name it: "MSL 2.2", "HLSL SM 6.0", ...
    pub fn name(&self) -> String {
        format!("{} {}", self.language(), self.version())
    }
}

/// Every target, back end by back end, oldest version first.
pub fn targets() -> Vec<Target> {
    let mut all = Vec::new();
    all.extend(metal());
    all.extend(dx12());
    all.extend(vulkan());
    all.extend(gl());
    all
}

/// metal/adapter.rs:707-731 picks MSL 1.0 to 4.0 by OS version; metal/mod.rs:19 puts wgpu's
/// minimum at macOS 10.13 (MSL 2.0). Subgroups (`supports_simd_scoped_operations`,
/// adapter.rs:1074, features at :1303) need macOS 10.15 / iOS 13 (MSL 2.2); SHADER_F16 is
/// always offered (:1193); SHADER_INT64 from MSL 2.3 on Apple3 and Metal 3 GPUs (:1079,
/// :1263-1266).
fn metal() -> Vec<Target> {
    let versions = [
        (2, 0),
        (2, 1),
        (2, 2),
        (2, 3),
        (2, 4),
        (3, 0),
        (3, 1),
        (3, 2),
        (4, 0),
    ];
    versions
        .into_iter()
        .map(|(major, minor)| {
            let mut offers = Features::SHADER_F16;
            if (major, minor) >= (2, 2) {
                offers |= Features::SUBGROUP | Features::SUBGROUP_BARRIER;
            }
            if (major, minor) >= (2, 3) {
                offers |= Features::SHADER_INT64;
            }
            Target {
                backend: Backend::Metal,
                language: Language::Msl(major, minor),
                offers,
            }
        })
        .collect()
}

/// dx12/adapter.rs:391-437: SM 5.1 with FXC (`Dx12Compiler::Auto`'s last resort), else the
/// highest model both device and DXC support, 6.0 to 6.9. SUBGROUP needs SM 6.0 and wave ops
/// (:594-599), SHADER_INT64 SM 6.0 and Int64ShaderOps (:566-571), SHADER_F16 SM 6.2
/// (:585-588); DX12 never offers SUBGROUP_BARRIER.
fn dx12() -> Vec<Target> {
    use hlsl::ShaderModel as Sm;
    let models = [
        Sm::V5_1,
        Sm::V6_0,
        Sm::V6_1,
        Sm::V6_2,
        Sm::V6_3,
        Sm::V6_4,
        Sm::V6_5,
        Sm::V6_6,
        Sm::V6_7,
        Sm::V6_8,
        Sm::V6_9,
    ];
    models
        .into_iter()
        .map(|model| {
            let mut offers = Features::empty();
            if model >= Sm::V6_0 {
                offers |= Features::SUBGROUP | Features::SHADER_INT64;
            }
            if model >= Sm::V6_2 {
                offers |= Features::SHADER_F16;
            }
            Target {
                backend: Backend::Dx12,
                language: Language::Hlsl(model),
                offers,
            }
        })
        .collect()
}

/// vulkan/adapter.rs:2827-2833: SPIR-V 1.0, 1.3, 1.5 or 1.6 for Vulkan 1.0 to 1.3.
/// Subgroups (:897-922) need the subgroup properties of Vulkan 1.1 and either Vulkan 1.3 or
/// VK_EXT_subgroup_size_control; SHADER_F16 comes from extensions on any version (:884-893),
/// SHADER_INT64 from the core `shaderInt64` feature on any version (:763).
fn vulkan() -> Vec<Target> {
    [(1, 0), (1, 3), (1, 5), (1, 6)]
        .into_iter()
        .map(|(major, minor)| {
            let mut offers = Features::SHADER_F16 | Features::SHADER_INT64;
            if (major, minor) >= (1, 3) {
                offers |= Features::SUBGROUP | Features::SUBGROUP_BARRIER;
            }
            Target {
                backend: Backend::Vulkan,
                language: Language::Spirv(major, minor),
                offers,
            }
        })
        .collect()
}

/// gles/adapter.rs:276-296 takes the context's GLSL version, desktop capped at 450; compute
/// needs GLES 3.1 or GL 4.3 (:313-314). The GL back end offers neither subgroups nor
/// SHADER_F16 nor SHADER_INT64.
fn gl() -> Vec<Target> {
    let versions = [
        glsl::Version::new_gles(310),
        glsl::Version::new_gles(320),
        glsl::Version::Desktop(430),
        glsl::Version::Desktop(440),
        glsl::Version::Desktop(450),
    ];
    versions
        .into_iter()
        .map(|version| Target {
            backend: Backend::Gl,
            language: Language::Glsl(version),
            offers: Features::empty(),
        })
        .collect()
}
