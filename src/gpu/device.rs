//! The opened device: its queue, limits and features, the kernel tuner it carries, and the
//! caches of shader modules and compute pipelines every plan on it shares.

use super::adapter::{compute_adapters, instance, same_adapter, select_adapter};
use super::tuning::{self, default_cache_path, KernelChoice, TunedKernel, TuningStats};
use super::{AdapterSummary, EntryBindings, GpuError, Shader, KERNELS, PORTABILITY};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: Shader,
    entry: &'static str,
}

/// A device and queue plus caches of shader modules and compute pipelines.
///
/// One `Gpu` serves every plan compiled on it; open it once and share it by reference.
/// The adapter is chosen by wgpu's environment variables (`WGPU_BACKEND`,
/// `WGPU_ADAPTER_NAME`, `WGPU_POWER_PREF`); on a machine without a GPU, Mesa's software
/// Vulkan driver (lavapipe) serves.
///
/// ```
/// use mobilenet_wgpu::Gpu;
///
/// let gpu = Gpu::new()?;
/// let adapter = gpu.adapter();
/// println!("{} on {} ({})", adapter.name, adapter.backend, adapter.device_type);
/// assert!(gpu.limits().max_storage_buffer_binding_size > 0);
/// # Ok::<(), mobilenet_wgpu::GpuError>(())
/// ```
pub struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: AdapterSummary,
    backend: wgpu::Backend,
    limits: wgpu::Limits,
    timestamp_period_ns: Option<f32>,
    subgroup_gemm: bool,
    /// A CPU adapter through Vulkan (lavapipe): see `precompile`.
    software_vulkan: bool,
    binding_limit: u64,
    tuner: tuning::Tuner,
    modules: Mutex<HashMap<Shader, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, CompiledEntry>>,
    compiled_ahead: Mutex<Precompiled>,
    /// `MOBILENET_COMPILE_THREADS`: at most this many devices compile at once.
    compile_threads: Option<usize>,
}

/// `MOBILENET_COMPILE_THREADS`, if set (see `precompile`).
fn compile_threads_from_env() -> Result<Option<usize>, GpuError> {
    let Ok(value) = std::env::var("MOBILENET_COMPILE_THREADS") else {
        return Ok(None);
    };
    let threads = value.trim().parse::<usize>();
    threads
        .map(Some)
        .map_err(|_| GpuError::CompileThreadsSetting { value })
}

/// Entry points compiled ahead of their first dispatch (`Gpu::precompile`): how many on
/// this device and on helper devices, and the seconds that took; one call's, or with
/// `Gpu::compiled_ahead` all of this device's so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Precompiled {
    pub here: usize,
    pub on_helpers: usize,
    pub seconds: f64,
}

/// A pipeline and the bindings its entry point reads.
#[doc(hidden)]
#[derive(Clone)]
pub struct CompiledEntry {
    pub pipeline: Arc<wgpu::ComputePipeline>,
    pub bindings: Arc<Vec<u32>>,
    /// The bindings the entry point may write.
    pub writable: Arc<Vec<u32>>,
    /// The bindings the entry point stores to (`EntryBindings::stored`).
    pub stored: Arc<Vec<u32>>,
}

impl Gpu {
    /// Opens the best adapter (or the one named by WGPU_ADAPTER_NAME) with its own limits,
    /// not the conservative defaults, so large batches fit on large GPUs.
    pub fn new() -> Result<Gpu, GpuError> {
        let instance = instance();
        Gpu::open(select_adapter(&instance)?)
    }

    /// Opens the `index`-th compute adapter of this machine (see `adapter_count`), as a
    /// data-parallel rank does with its local rank.
    pub fn with_adapter_index(index: usize) -> Result<Gpu, GpuError> {
        let adapters = compute_adapters(&instance());
        let count = adapters.len();
        let adapter = adapters
            .into_iter()
            .nth(index)
            .ok_or(GpuError::AdapterIndex { index, count })?;
        Gpu::open(adapter)
    }

    /// How many adapters `with_adapter_index` chooses from.
    pub fn adapter_count() -> usize {
        compute_adapters(&instance()).len()
    }

    /// Another device on this adapter, through an instance of its own (on lavapipe, with a
    /// queue thread of its own: `precompile`).
    pub(super) fn open_another(&self) -> Result<Gpu, GpuError> {
        let adapter = same_adapter(&instance(), &self.adapter).ok_or_else(|| GpuError::Device {
            adapter: self.adapter.name.clone(),
            reason: "a second instance does not list this adapter".into(),
        })?;
        Gpu::open(adapter)
    }

    fn open(adapter: wgpu::Adapter) -> Result<Gpu, GpuError> {
        let summary = AdapterSummary::of(&adapter);
        let wanted_features = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::SUBGROUP
            | wgpu::Features::SHADER_INT64;
        let features = adapter.features() & wanted_features;
        let info = adapter.get_info();
        // On a CPU a subgroup is a SIMD register: shuffles are cheap and memory reads are
        // per-lane gathers, which the subgroup GEMM saves (and halves again by moving its
        // operands as 64-bit words). It is only offered there: it assumes a subgroup holds
        // its whole workgroup (8 lanes, as the portability table records) and has been
        // validated on no GPU.
        let subgroup_gemm = features.contains(Shader::GemmSubgroupVec4.needs_features())
            && info.device_type == wgpu::DeviceType::Cpu
            && info.subgroup_min_size >= PORTABILITY.subgroup_lanes();
        let choice = KernelChoice::from_env(&KERNELS)?;
        let compile_threads = compile_threads_from_env()?;
        let tuner = tuning::Tuner::new(choice, default_cache_path(&summary), &summary);
        let limits = adapter.limits();
        let binding_limit = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let descriptor = wgpu::DeviceDescriptor {
            label: Some("mobilenet-wgpu"),
            required_features: features,
            required_limits: limits.clone(),
            ..Default::default()
        };
        let (device, queue) =
            pollster::block_on(adapter.request_device(&descriptor)).map_err(|e| {
                GpuError::Device {
                    adapter: summary.name.clone(),
                    reason: e.to_string(),
                }
            })?;
        let timestamp_period_ns = features
            .contains(wgpu::Features::TIMESTAMP_QUERY)
            .then(|| queue.get_timestamp_period());
        Ok(Gpu {
            device,
            queue,
            adapter: summary,
            backend: info.backend,
            limits,
            timestamp_period_ns,
            subgroup_gemm,
            software_vulkan: info.device_type == wgpu::DeviceType::Cpu
                && info.backend == wgpu::Backend::Vulkan,
            binding_limit,
            tuner,
            modules: Mutex::new(HashMap::new()),
            pipelines: Mutex::new(HashMap::new()),
            compiled_ahead: Mutex::new(Precompiled::default()),
            compile_threads,
        })
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    pub fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    /// The graphics API the device runs on.
    pub fn backend(&self) -> wgpu::Backend {
        self.backend
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Whether GEMMs may run gemm_subgroup.wgsl (CPU adapters with subgroups of 8 or more);
    /// where they may, it is the default.
    pub fn subgroup_gemm(&self) -> bool {
        self.subgroup_gemm
    }

    /// This device with another way of choosing kernels and another cache file (`None`:
    /// choices live in memory only). `Gpu::new` takes both from `MOBILENET_TUNE` and
    /// `default_cache_path`.
    pub fn with_tuning(mut self, choice: KernelChoice, cache: Option<std::path::PathBuf>) -> Gpu {
        self.tuner = tuning::Tuner::new(choice, cache, &self.adapter);
        self
    }

    /// How plans compiled on this device choose among kernels.
    pub fn kernel_choice(&self) -> KernelChoice {
        self.tuner.choice()
    }

    /// Where measured choices persist, if anywhere.
    pub fn tuning_cache(&self) -> Option<&std::path::Path> {
        self.tuner.path()
    }

    /// What tuning has cost this device so far.
    pub fn tuning_stats(&self) -> TuningStats {
        self.tuner.stats()
    }

    /// Every choice known to this device, measured here or read from the cache, by
    /// (kernel family, shape).
    pub fn tuned_kernels(&self) -> std::collections::BTreeMap<String, TunedKernel> {
        self.tuner.choices()
    }

    /// Chooses kernels as another device did: its mode, and its choices as if they came
    /// from the cache (rank 0's, so that every replica runs the same kernels and stays
    /// bit-identical; a measuring device is followed with `KernelChoice::Cached`).
    pub fn follow_tuning(
        &self,
        choice: KernelChoice,
        choices: std::collections::BTreeMap<String, TunedKernel>,
    ) {
        self.tuner.follow(choice, choices)
    }

    /// Writes new choices to the cache file (plans do after compiling).
    pub fn save_tuning(&self) -> Result<(), GpuError> {
        self.tuner.save(&self.adapter)
    }

    /// The most bytes one storage binding may hold: the adapter's
    /// `max_storage_buffer_binding_size` (and buffer size), or less after
    /// `with_binding_limit`. Plans run ops whose tensors are larger over chunks of the batch.
    pub fn binding_limit(&self) -> u64 {
        self.binding_limit
    }

    /// This device with storage bindings held to `bytes` (at most the adapter's own limit),
    /// so that tests can make plans chunk small tensors.
    pub fn with_binding_limit(mut self, bytes: u64) -> Gpu {
        self.binding_limit = bytes.min(self.binding_limit);
        self
    }

    pub(crate) fn tuner(&self) -> &tuning::Tuner {
        &self.tuner
    }

    /// Whether the device was opened with all of `features` (`Shader::needs_features`: whether
    /// a module can be built on it).
    pub fn has_features(&self, features: wgpu::Features) -> bool {
        self.device.features().contains(features)
    }

    /// Nanoseconds per timestamp tick, when the device supports timestamp queries.
    pub fn timestamp_period_ns(&self) -> Option<f32> {
        self.timestamp_period_ns
    }

    /// The compute pipeline for one entry point, created on first use and cached, with
    /// the bindings it reads. Its bind-group layout is derived from the shader, so each
    /// entry point binds exactly those.
    #[doc(hidden)]
    /// What `precompile` has compiled for this device so far.
    pub fn compiled_ahead(&self) -> Precompiled {
        *self
            .compiled_ahead
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn add_compiled_ahead(&self, call: Precompiled) {
        let mut total = self
            .compiled_ahead
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        total.here += call.here;
        total.on_helpers += call.on_helpers;
        total.seconds += call.seconds;
    }

    /// Whether `pipeline` has created this entry point's pipeline on this device.
    pub(super) fn has_pipeline(&self, shader: Shader, entry: &'static str) -> bool {
        let pipelines = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        pipelines.contains_key(&PipelineKey { shader, entry })
    }

    /// At most this many devices may compile at once (`MOBILENET_COMPILE_THREADS`).
    pub(super) fn compile_threads(&self) -> Option<usize> {
        self.compile_threads
    }

    /// A software Vulkan driver (a CPU adapter through Vulkan): lavapipe, which compiles a
    /// pipeline at its first dispatch and caches the code on disk.
    pub(super) fn is_software_vulkan(&self) -> bool {
        self.software_vulkan
    }

    pub fn pipeline(&self, shader: Shader, entry: &'static str) -> Result<CompiledEntry, GpuError> {
        let key = PipelineKey { shader, entry };
        let mut pipelines = self.pipelines.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(compiled) = pipelines.get(&key) {
            return Ok(compiled.clone());
        }
        let label = format!("{shader}:{entry}");
        let reflected = reflected_entry(shader, entry, &label)?;
        let pipeline = self.create_pipeline(shader, entry, label)?;
        let compiled = CompiledEntry {
            pipeline: Arc::new(pipeline),
            bindings: Arc::new(reflected.bindings),
            writable: Arc::new(reflected.writable),
            stored: Arc::new(reflected.stored),
        };
        pipelines.insert(key, compiled.clone());
        Ok(compiled)
    }

    /// Compiles one entry point (its module created on first use and kept), catching
    /// validation errors instead of letting wgpu's default handler panic.
    fn create_pipeline(
        &self,
        shader: Shader,
        entry: &'static str,
        label: String,
    ) -> Result<wgpu::ComputePipeline, GpuError> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut modules = self.modules.lock().unwrap_or_else(|e| e.into_inner());
        let module = modules.entry(shader).or_insert_with(|| {
            self.device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(shader.file_name()),
                    source: wgpu::ShaderSource::Wgsl(shader.source().into()),
                })
        });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(error) = pollster::block_on(scope.pop()) {
            modules.remove(&shader);
            return Err(GpuError::Pipeline {
                pipeline: label,
                reason: error.to_string(),
            });
        }
        Ok(pipeline)
    }
}

/// What naga's reflection says `entry` of `shader` binds.
fn reflected_entry(shader: Shader, entry: &str, label: &str) -> Result<EntryBindings, GpuError> {
    let reflection = shader.reflect().map_err(|reason| GpuError::Pipeline {
        pipeline: label.to_string(),
        reason,
    })?;
    reflection
        .into_iter()
        .find(|e| e.entry == entry)
        .ok_or_else(|| GpuError::Pipeline {
            pipeline: label.to_string(),
            reason: format!("{shader} has no compute entry point {entry:?}"),
        })
}
