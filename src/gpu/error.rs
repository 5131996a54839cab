//! Why a device could not be found, opened or used, with the next step for each case.

/// What to run when no adapter is found; printed in the error so users can fix it.
pub const INSTALL_HINT: &str = "install a GPU driver with Vulkan, Metal or DX12 support; on Linux \
without a GPU install the software Vulkan driver: apt-get install libvulkan1 mesa-vulkan-drivers";

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no GPU adapter found (backends tried: {backends}); {hint}", hint = INSTALL_HINT)]
    NoAdapter { backends: String },
    #[error("WGPU_ADAPTER_NAME={wanted:?} matches no adapter; available: {available}")]
    AdapterNotFound { wanted: String, available: String },
    #[error(
        "adapter index {index} does not exist: {count} compute adapter(s) match WGPU_BACKEND and \
         WGPU_ADAPTER_NAME here; pass an --adapter-index below {count}, or start fewer ranks per machine"
    )]
    AdapterIndex { index: usize, count: usize },
    #[error("could not open a device on adapter {adapter:?}: {reason}")]
    Device { adapter: String, reason: String },
    #[error("the driver rejected pipeline {pipeline}: {reason}")]
    Pipeline { pipeline: String, reason: String },
    #[error("reading a buffer back from the GPU failed: {0}")]
    Readback(String),
    #[error("MOBILENET_COMPILE_THREADS={value:?} is not a number: give how many devices may compile kernels at once (1 compiles them on the plan's own device), or unset it for one per core")]
    CompileThreadsSetting { value: String },
    #[error("MOBILENET_TUNE={value:?} is not a setting: use on (measure, the default), off (the fixed defaults), cached (the cache's choices, nothing timed) or a kernel name: {known}")]
    TuneSetting { value: String, known: String },
    #[error("cannot write the kernel cache {}: {reason}; set XDG_CACHE_HOME to a writable directory or MOBILENET_TUNE=off", path.display())]
    TuneCache {
        path: std::path::PathBuf,
        reason: String,
    },
}
