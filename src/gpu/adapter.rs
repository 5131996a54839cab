//! Which adapters wgpu offers and which one a process takes (wgpu's WGPU_* variables).

use super::GpuError;

/// One adapter as `mobilenet devices` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub max_storage_buffer_binding_size: u64,
    pub max_buffer_size: u64,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_workgroups_per_dimension: u32,
    pub timestamp_queries: bool,
    /// For a software adapter (lavapipe, WARP), the CPU it runs on (`host_cpu`): its
    /// kernels' speed, and so the tuner's choices, belong to that CPU as much as to the
    /// driver. `None` for other adapters.
    pub host_cpu: Option<String>,
}

impl AdapterSummary {
    pub(super) fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        AdapterSummary {
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_buffer_size: limits.max_buffer_size,
            max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            timestamp_queries: adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY),
            host_cpu: (info.device_type == wgpu::DeviceType::Cpu).then(host_cpu),
        }
    }
}

/// This machine's CPU and the threads it offers this process, as `cpu_identity` words it
/// from /proc/cpuinfo (an empty description elsewhere: the thread count alone).
fn host_cpu() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    cpu_identity(&cpuinfo, threads)
}

/// "AMD EPYC (family 25 model 1), 2 threads": the first processor's model name with x86's
/// family and model numbers, which tell apart CPUs a virtual machine shows under one name
/// (a Zen 3 and a Zen 4 EPYC both read "AMD EPYC"), and the thread count, which a
/// software adapter splits its work over.
pub(crate) fn cpu_identity(cpuinfo: &str, threads: usize) -> String {
    let field = |key: &str| {
        cpuinfo.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            (name.trim() == key).then(|| value.trim().to_string())
        })
    };
    let name = field("model name").unwrap_or_else(|| "unknown CPU".to_string());
    let numbers = match (field("cpu family"), field("model")) {
        (Some(family), Some(model)) => format!(" (family {family} model {model})"),
        _ => String::new(),
    };
    format!("{name}{numbers}, {threads} threads")
}

/// Makes a compute-only start on a headless machine quiet. Mesa's Vulkan device-select layer
/// asks Wayland for a display even when nothing is drawn, and libwayland prints
/// `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` twice when the variable
/// is missing: it reads like our own error and hides real ones. When the variable is unset or
/// not a directory it is pointed at a private directory, where Wayland then finds no display,
/// silently; real driver errors stay visible. A valid setting is left alone.
///
/// Every `Gpu` (and `list_adapters`) does this before creating its wgpu instance, once per
/// process, so library users need not call it. It sets an environment variable, which is
/// only safe while no other thread reads the environment: a program that starts threads
/// before its first `Gpu` calls it first thing (the `mobilenet` binary does).
pub fn quiet_headless_start() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(private_runtime_dir);
}

fn private_runtime_dir() {
    let valid =
        std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| std::path::Path::new(&dir).is_dir());
    if valid {
        return;
    }
    let dir = std::env::temp_dir().join("mobilenet-wgpu-runtime");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    // A directory that could not be made still silences the message: Wayland only looks for
    // a socket inside it.
    let _ = builder.create(&dir);
    std::env::set_var("XDG_RUNTIME_DIR", dir);
}

pub(super) fn instance() -> wgpu::Instance {
    quiet_headless_start();
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env())
}

/// Every adapter the instance can see, honouring WGPU_BACKEND.
pub fn list_adapters() -> Vec<AdapterSummary> {
    let instance = instance();
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    pollster::block_on(instance.enumerate_adapters(backends))
        .iter()
        .map(AdapterSummary::of)
        .collect()
}

pub(super) fn select_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter, GpuError> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        let needle = wanted.to_lowercase();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&needle))
            .ok_or_else(|| GpuError::AdapterNotFound {
                wanted,
                available: if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                },
            });
    }
    let options = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::from_env()
            .unwrap_or(wgpu::PowerPreference::HighPerformance),
        ..Default::default()
    };
    pollster::block_on(instance.request_adapter(&options)).map_err(|_| GpuError::NoAdapter {
        backends: format!("{backends:?}"),
    })
}

/// The adapter of `instance` that `summary` describes (name, API and driver), if it has one.
pub(super) fn same_adapter(
    instance: &wgpu::Instance,
    summary: &AdapterSummary,
) -> Option<wgpu::Adapter> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    pollster::block_on(instance.enumerate_adapters(backends))
        .into_iter()
        .find(|a| {
            let other = AdapterSummary::of(a);
            (&other.name, &other.backend, &other.driver)
                == (&summary.name, &summary.backend, &summary.driver)
        })
}

/// The adapters one machine's data-parallel ranks share out by index: those matching the
/// WGPU_* variables, in enumeration order, keeping only GPUs when there are any (a software
/// rasteriser beside them would be the slowest rank) and only one API per GPU (Vulkan,
/// Metal or DX12 before OpenGL).
pub(super) fn compute_adapters(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
    let needle = std::env::var("WGPU_ADAPTER_NAME")
        .ok()
        .map(|n| n.to_lowercase());
    let mut adapters: Vec<wgpu::Adapter> =
        pollster::block_on(instance.enumerate_adapters(backends))
            .into_iter()
            .filter(|a| {
                let name = a.get_info().name.to_lowercase();
                needle.as_ref().is_none_or(|n| name.contains(n))
            })
            .collect();
    let kind = |a: &wgpu::Adapter| a.get_info().device_type;
    if adapters.iter().any(|a| kind(a) != wgpu::DeviceType::Cpu) {
        adapters.retain(|a| kind(a) != wgpu::DeviceType::Cpu);
    }
    let backend = |a: &wgpu::Adapter| a.get_info().backend;
    if adapters.iter().any(|a| backend(a) != wgpu::Backend::Gl) {
        adapters.retain(|a| backend(a) != wgpu::Backend::Gl);
    }
    adapters
}

#[cfg(test)]
mod tests {
    use super::cpu_identity;

    #[test]
    fn the_host_cpu_is_named_with_its_family_model_and_threads() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n\
                       model\t\t: 17\nmodel name\t: AMD EPYC\nstepping\t: 1\n\n\
                       processor\t: 1\ncpu family\t: 25\nmodel\t\t: 17\n";
        assert_eq!(
            cpu_identity(cpuinfo, 2),
            "AMD EPYC (family 25 model 17), 2 threads"
        );
        // Arm's /proc/cpuinfo has neither field; the thread count still tells hosts apart.
        assert_eq!(
            cpu_identity("processor\t: 0\nBogoMIPS\t: 50.00\n", 8),
            "unknown CPU, 8 threads"
        );
    }
}
