//! What each compute entry point needs of an adapter, and on which of wgpu's back ends it
//! runs: the table `tests/portability.rs` generates by translating every entry point with
//! naga for Metal, DX12, Vulkan and GL (`PORTABILITY`, in portability_table.rs, rendered in
//! docs/portability.md). The library only reads it, so naga's back ends stay out of the
//! build; the test fails when the table no longer matches what naga does.

use super::Shader;

/// The back ends the table covers: wgpu's native APIs. On others (WebGPU in a browser,
/// wgpu's no-op back end) the table restricts nothing.
pub const TABLE_BACKENDS: [wgpu::Backend; 4] = [
    wgpu::Backend::Metal,
    wgpu::Backend::Dx12,
    wgpu::Backend::Vulkan,
    wgpu::Backend::Gl,
];

/// One compute entry point: what it asks of the adapter, and where it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryPortability {
    pub shader: Shader,
    pub entry: &'static str,
    /// Invocations per workgroup (overrides at their defaults, as the plans run them).
    pub invocations: u32,
    /// Bytes of workgroup memory it uses.
    pub workgroup_bytes: u32,
    /// With subgroup operations: the lanes a subgroup must have at least (the module's
    /// `SUBGROUP_LANES`; such kernels take one workgroup for one subgroup).
    pub subgroup_lanes: Option<u32>,
    /// Needs `wgpu::Features::SHADER_F16`.
    pub f16: bool,
    /// Needs `wgpu::Features::SHADER_INT64`.
    pub int64: bool,
    /// Uses the packed 4x8-bit integer dot products (`dot4I8Packed`, `dot4U8Packed`).
    pub integer_dot_product: bool,
    /// The back ends of `TABLE_BACKENDS` that can run it: some version of the API there
    /// offers the features its module needs, and naga translated it for every version that
    /// does (and the output passed spirv-val or glslangValidator where those check it).
    pub backends: &'static [wgpu::Backend],
}

/// Every compute entry point of every `Shader`, in `Shader::ALL` order.
#[derive(Clone, Copy, Debug)]
pub struct PortabilityTable {
    pub entries: &'static [EntryPortability],
}

impl PortabilityTable {
    pub fn entry(&self, shader: Shader, entry: &str) -> Option<&'static EntryPortability> {
        self.entries
            .iter()
            .find(|e| e.shader == shader && e.entry == entry)
    }

    /// Whether an adapter on `backend` can run the entry point as far as its translation
    /// goes; an entry point missing from the table runs nowhere the table covers (the test
    /// that writes the table fails until it is regenerated).
    pub fn runs_on(&self, shader: Shader, entry: &str, backend: wgpu::Backend) -> bool {
        if !TABLE_BACKENDS.contains(&backend) {
            return true;
        }
        self.entry(shader, entry)
            .is_some_and(|e| e.backends.contains(&backend))
    }

    /// The most subgroup lanes any kernel assumes: an adapter whose smallest subgroup is
    /// narrower must not run the subgroup kernels.
    pub fn subgroup_lanes(&self) -> u32 {
        self.entries
            .iter()
            .filter_map(|e| e.subgroup_lanes)
            .max()
            .unwrap_or(0)
    }
}
