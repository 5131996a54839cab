//! The WGSL sources, compiled into the binary and validated with naga.

use std::fmt;

/// Prepended to every shader file: WGSL has no include mechanism.
const COMMON: &str = include_str!("../../shaders/common.wgsl");

/// One WGSL file per layer type (the GEMM file serves both pointwise and dense).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shader {
    Conv2d,
    Depthwise,
    Gemm,
    BnAct,
    Pool,
    Softmax,
}

impl Shader {
    pub const ALL: [Shader; 6] = [
        Shader::Conv2d,
        Shader::Depthwise,
        Shader::Gemm,
        Shader::BnAct,
        Shader::Pool,
        Shader::Softmax,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Shader::Conv2d => "conv2d.wgsl",
            Shader::Depthwise => "depthwise.wgsl",
            Shader::Gemm => "gemm.wgsl",
            Shader::BnAct => "bn_act.wgsl",
            Shader::Pool => "pool.wgsl",
            Shader::Softmax => "softmax.wgsl",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Shader::Conv2d => include_str!("../../shaders/conv2d.wgsl"),
            Shader::Depthwise => include_str!("../../shaders/depthwise.wgsl"),
            Shader::Gemm => include_str!("../../shaders/gemm.wgsl"),
            Shader::BnAct => include_str!("../../shaders/bn_act.wgsl"),
            Shader::Pool => include_str!("../../shaders/pool.wgsl"),
            Shader::Softmax => include_str!("../../shaders/softmax.wgsl"),
        }
    }

    /// The full source handed to the driver: the shared prelude, then the file.
    pub fn source(self) -> String {
        format!("{COMMON}\n{}", self.body())
    }

    /// Parses and validates the source with naga, returning the compute entry points.
    pub fn validate(self) -> Result<Vec<String>, String> {
        let source = self.source();
        let module = naga::front::wgsl::parse_str(&source)
            .map_err(|e| format!("{}: {}", self.file_name(), e.emit_to_string(&source)))?;
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map_err(|e| format!("{}: {}", self.file_name(), e.emit_to_string(&source)))?;
        Ok(module
            .entry_points
            .iter()
            .filter(|ep| ep.stage == naga::ShaderStage::Compute)
            .map(|ep| ep.name.clone())
            .collect())
    }
}

impl fmt::Display for Shader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}
