//! The GPU context: adapter and device selection, shader modules, the pipeline cache,
//! kernel tuning and buffer helpers. Nothing here knows about layers or models.
//!
//! Files, lowest first: `error`, `kernel_names` and `shaders` (no dependencies),
//! `portability` and `portability_table` (what each entry point needs and which back ends
//! run it: a table tests/portability.rs generates), `adapter` (which adapter), `tuning`
//! (the kernel choice and its cache), `device` (the opened `Gpu`), `buffers`, `timing` and
//! `precompile` (helpers on an open `Gpu`).

mod adapter;
mod buffers;
mod device;
mod error;
mod kernel_names;
mod portability;
mod portability_table;
mod precompile;
mod shaders;
mod timing;
mod tuning;

pub use adapter::{list_adapters, quiet_headless_start, AdapterSummary};
pub use buffers::GEMM_PROLOGUE_UNIFORM_BYTES;
pub(crate) use buffers::{
    dispatch_bind_group, read_buffer_bytes, read_buffer_f32, storage_buffer, uniform_buffer,
    uniform_storage_buffer,
};
pub use device::{CompiledEntry, Gpu, Precompiled};
pub use error::{GpuError, INSTALL_HINT};
pub use kernel_names::{ACCESS_KERNELS, GEMM_KERNELS, INT8_GEMM_KERNELS, KERNELS, WORDS64_KERNEL};
pub use portability::{EntryPortability, PortabilityTable, TABLE_BACKENDS};
pub use portability_table::PORTABILITY;
#[doc(hidden)]
pub use shaders::{EntryBindings, Shader};
pub use tuning::{default_cache_path, KernelChoice, TunedKernel, TuningStats};
