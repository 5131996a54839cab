//! Kernel choices measured on this adapter: for each (kernel family, shape) the fastest
//! candidate, kept in memory and in a cache file per adapter and driver version, so only
//! the first run on a machine pays for the timing. What the candidates are is the ops'
//! business (`ops::alternatives`); plans ask here which one to run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::{AdapterSummary, GpuError, Shader};

/// How plans pick among kernels that compute the same thing. `MOBILENET_TUNE` sets it:
/// unset or `on` measures, `off` keeps the defaults, `cached` takes what the cache knows
/// and times nothing, a kernel name forces that kernel wherever it applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelChoice {
    /// Time the candidates of every shape not yet in the cache, keep the fastest.
    Measure,
    /// The fixed rule: the subgroup GEMM on CPU adapters, the register-blocked one elsewhere.
    Defaults,
    /// The cache's choices where it has them, the defaults elsewhere; nothing is timed.
    Cached,
    /// This kernel wherever it is a candidate (for tests and comparisons).
    Force(String),
}

impl KernelChoice {
    /// The choice `MOBILENET_TUNE` asks for; `known` lists the kernel names it may force.
    pub fn from_env(known: &[&str]) -> Result<KernelChoice, GpuError> {
        match std::env::var("MOBILENET_TUNE") {
            Err(_) => Ok(KernelChoice::Measure),
            Ok(value) => KernelChoice::parse(&value, known),
        }
    }

    fn parse(value: &str, known: &[&str]) -> Result<KernelChoice, GpuError> {
        match value.trim() {
            "" | "on" | "1" => Ok(KernelChoice::Measure),
            "off" | "0" => Ok(KernelChoice::Defaults),
            "cached" => Ok(KernelChoice::Cached),
            name if known.contains(&name) => Ok(KernelChoice::Force(name.to_string())),
            other => Err(GpuError::TuneSetting {
                value: other.to_string(),
                known: known.join(", "),
            }),
        }
    }
}

impl std::fmt::Display for KernelChoice {
    /// As `MOBILENET_TUNE` spells it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KernelChoice::Measure => "on",
            KernelChoice::Defaults => "off",
            KernelChoice::Cached => "cached",
            KernelChoice::Force(name) => name,
        })
    }
}

/// One measured choice: the winner and what every candidate took.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TunedKernel {
    pub kernel: String,
    /// Microseconds per run of each candidate timed.
    pub micros: BTreeMap<String, f64>,
}

/// What tuning has cost this process so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct TuningStats {
    /// Shapes whose candidates were timed.
    pub timed: usize,
    /// Choices taken from the cache (or from an earlier plan of this process).
    pub reused: usize,
    /// Seconds spent timing.
    pub seconds: f64,
}

/// The cache file's contents.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct CacheFile {
    /// Changes whenever a kernel's source or the timing method does: older timings no
    /// longer apply.
    kernels_version: String,
    adapter: String,
    driver: String,
    /// The CPU a software adapter ran on (`AdapterSummary::host_cpu`); files written before
    /// it was recorded read as `None`, and a software adapter tunes again.
    #[serde(default)]
    host_cpu: Option<String>,
    choices: BTreeMap<String, TunedKernel>,
}

/// The tuner of one device: its mode, its choices and where they persist.
pub(crate) struct Tuner {
    choice: Mutex<KernelChoice>,
    path: Option<PathBuf>,
    state: Mutex<TunerState>,
}

#[derive(Default)]
struct TunerState {
    choices: BTreeMap<String, TunedKernel>,
    /// Shapes timed since the last save.
    unsaved: Vec<String>,
    stats: TuningStats,
}

/// How candidates are timed (`graph::kernel_choice`, `Gpu::time_dispatch`): choices made by
/// an older method are made again. 2: batches of at least 4 dispatches, the contenders in
/// three rounds (before, one lone dispatch could decide).
const TIMING_METHOD: &str = "2";

/// FNV-1a of every shader's source and of the timing method: a change to any kernel, or to
/// how they are timed, invalidates the cache.
fn kernels_version() -> String {
    let sources = Shader::ALL.iter().map(|shader| shader.source());
    fnv1a(sources.chain([TIMING_METHOD.to_string()]))
}

/// FNV-1a of the texts one after another, in 16 hex digits.
fn fnv1a(texts: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for text in texts {
        for byte in text.as_ref().bytes() {
            hash = (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The longest cache file name `default_cache_path` gives, less ".json".
const CACHE_NAME_CHARS: usize = 120;

/// `$XDG_CACHE_HOME/mobilenet-wgpu/kernels/<adapter>.json` (or under `~/.cache`), one file
/// per adapter, backend and driver version, and for a software adapter per host CPU: a
/// home directory shared by machines with different CPUs keeps each one's timings.
pub fn default_cache_path(adapter: &AdapterSummary) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| Path::new(dir).is_absolute())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache")))?;
    let mut identity = format!("{} {} {}", adapter.name, adapter.backend, adapter.driver);
    if let Some(cpu) = &adapter.host_cpu {
        identity = format!("{identity} {cpu}");
    }
    let mut slug: String = identity
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    while slug.contains("--") {
        slug = slug.replace("--", "-");
    }
    let mut slug = slug.trim_matches('-').to_string();
    // A long identity (a software adapter's with its CPU) keeps its start and a hash of the
    // whole, so that identities differing only past the cut still get files of their own.
    if slug.len() > CACHE_NAME_CHARS {
        let hash = fnv1a([&identity]);
        slug.truncate(CACHE_NAME_CHARS - hash.len() - 1);
        slug = format!("{}-{hash}", slug.trim_end_matches('-'));
    }
    Some(
        base.join("mobilenet-wgpu")
            .join("kernels")
            .join(format!("{slug}.json")),
    )
}

impl Tuner {
    pub fn new(choice: KernelChoice, path: Option<PathBuf>, adapter: &AdapterSummary) -> Tuner {
        let mut state = TunerState::default();
        if matches!(choice, KernelChoice::Measure | KernelChoice::Cached) {
            if let Some(path) = &path {
                state.choices = load(path, adapter, true);
            }
        }
        Tuner {
            choice: Mutex::new(choice),
            path,
            state: Mutex::new(state),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, TunerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn choice(&self) -> KernelChoice {
        self.choice
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The kernel chosen for `key` before, if any, counted as a choice reused.
    pub fn lookup(&self, key: &str) -> Option<String> {
        let kernel = self.peek(key);
        if kernel.is_some() {
            self.state().stats.reused += 1;
        }
        kernel
    }

    /// The kernel chosen for `key` before, if any, without counting it as used.
    pub fn peek(&self, key: &str) -> Option<String> {
        self.state().choices.get(key).map(|t| t.kernel.clone())
    }

    pub fn record(&self, key: &str, tuned: TunedKernel, spent: Duration) {
        let mut state = self.state();
        state.choices.insert(key.to_string(), tuned);
        state.unsaved.push(key.to_string());
        state.stats.timed += 1;
        state.stats.seconds += spent.as_secs_f64();
    }

    pub fn stats(&self) -> TuningStats {
        self.state().stats
    }

    pub fn choices(&self) -> BTreeMap<String, TunedKernel> {
        self.state().choices.clone()
    }

    /// Chooses as another device does: its mode, and its choices as if from the cache.
    pub fn follow(&self, choice: KernelChoice, choices: BTreeMap<String, TunedKernel>) {
        *self.choice.lock().unwrap_or_else(|e| e.into_inner()) = choice;
        self.state().choices.extend(choices);
    }

    /// Writes the shapes timed since the last save into the cache file, keeping what other
    /// processes wrote there meanwhile; atomic, so a reader never sees half a file.
    pub fn save(&self, adapter: &AdapterSummary) -> Result<(), GpuError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let mut state = self.state();
        if state.unsaved.is_empty() {
            return Ok(());
        }
        // Quiet: a damaged file was reported when it was read, and is replaced now.
        let mut choices = load(path, adapter, false);
        for key in &state.unsaved {
            if let Some(tuned) = state.choices.get(key) {
                choices.insert(key.clone(), tuned.clone());
            }
        }
        let file = CacheFile {
            kernels_version: kernels_version(),
            adapter: adapter.name.clone(),
            driver: adapter.driver.clone(),
            host_cpu: adapter.host_cpu.clone(),
            choices,
        };
        let failed = |reason: String| GpuError::TuneCache {
            path: path.clone(),
            reason,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(e.to_string()))?;
        }
        let json = serde_json::to_vec_pretty(&file).map_err(|e| failed(e.to_string()))?;
        crate::atomic_file::write_atomic(path, &json).map_err(|e| failed(e.to_string()))?;
        state.unsaved.clear();
        Ok(())
    }
}

/// The cache file's choices; an absent file is empty, and so is one written for other
/// kernels or that cannot be read (with a warning: it will be rewritten).
fn load(path: &Path, adapter: &AdapterSummary, warn: bool) -> BTreeMap<String, TunedKernel> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return BTreeMap::new(),
        Err(e) => {
            if warn {
                eprintln!(
                    "warning: cannot read the kernel cache {}: {e}; tuning again",
                    path.display()
                );
            }
            return BTreeMap::new();
        }
    };
    match serde_json::from_slice::<CacheFile>(&bytes) {
        Ok(file)
            if file.kernels_version == kernels_version()
                && file.driver == adapter.driver
                && file.host_cpu == adapter.host_cpu =>
        {
            file.choices
        }
        Ok(_) => BTreeMap::new(),
        Err(e) => {
            if warn {
                eprintln!(
                    "warning: the kernel cache {} is damaged ({e}); tuning again",
                    path.display()
                );
            }
            BTreeMap::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_setting_is_parsed_or_refused() {
        let known = ["blocked-8x8", "tiled-64x64"];
        assert_eq!(
            KernelChoice::parse("on", &known).ok(),
            Some(KernelChoice::Measure)
        );
        assert_eq!(
            KernelChoice::parse("off", &known).ok(),
            Some(KernelChoice::Defaults)
        );
        assert_eq!(
            KernelChoice::parse("cached", &known).ok(),
            Some(KernelChoice::Cached)
        );
        assert_eq!(
            KernelChoice::parse("tiled-64x64", &known).ok(),
            Some(KernelChoice::Force("tiled-64x64".into()))
        );
        let error = KernelChoice::parse("fast", &known)
            .expect_err("an unknown kernel")
            .to_string();
        assert!(
            error.contains("fast") && error.contains("tiled-64x64"),
            "{error}"
        );
    }

    #[test]
    fn cache_files_are_named_by_adapter_and_driver() {
        let adapter = AdapterSummary {
            name: "llvmpipe (LLVM 19.1.7, 256 bits)".into(),
            backend: "Vulkan".into(),
            device_type: "Cpu".into(),
            driver: "llvmpipe Mesa 25.0.7".into(),
            max_storage_buffer_binding_size: 0,
            max_buffer_size: 0,
            max_compute_invocations_per_workgroup: 0,
            max_compute_workgroup_storage_size: 0,
            max_compute_workgroups_per_dimension: 0,
            timestamp_queries: false,
            host_cpu: None,
        };
        let path = default_cache_path(&adapter).expect("HOME is set in tests");
        let name = path.file_name().expect("a file").to_string_lossy();
        assert_eq!(
            name,
            "llvmpipe-llvm-19-1-7-256-bits-vulkan-llvmpipe-mesa-25-0-7.json"
        );
    }

    fn software_adapter(cpu: &str) -> AdapterSummary {
        AdapterSummary {
            name: "llvmpipe (LLVM 15.0.6, 256 bits)".into(),
            backend: "Vulkan".into(),
            device_type: "Cpu".into(),
            driver: "llvmpipe Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)".into(),
            max_storage_buffer_binding_size: 0,
            max_buffer_size: 0,
            max_compute_invocations_per_workgroup: 0,
            max_compute_workgroup_storage_size: 0,
            max_compute_workgroups_per_dimension: 0,
            timestamp_queries: true,
            host_cpu: Some(cpu.into()),
        }
    }

    #[test]
    fn a_software_adapter_keeps_a_cache_file_per_host_cpu() {
        let zen3 = software_adapter("AMD EPYC (family 25 model 1), 2 threads");
        let zen4 = software_adapter("AMD EPYC (family 25 model 17), 2 threads");
        let sixteen = software_adapter("AMD EPYC (family 25 model 17), 16 threads");
        let paths: Vec<PathBuf> = [&zen3, &zen4, &sixteen]
            .map(|adapter| default_cache_path(adapter).expect("HOME is set in tests"))
            .into();
        for (i, path) in paths.iter().enumerate() {
            let name = path
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            assert!(name.len() <= CACHE_NAME_CHARS + ".json".len(), "{name}");
            assert!(
                name.starts_with("llvmpipe-llvm-15-0-6-256-bits-vulkan"),
                "{name}"
            );
            assert!(!paths[i + 1..].contains(path), "{name} is shared");
        }
    }

    #[test]
    fn timings_from_another_host_cpu_are_not_taken() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("kernels.json");
        let zen3 = software_adapter("AMD EPYC (family 25 model 1), 2 threads");
        let zen4 = software_adapter("AMD EPYC (family 25 model 17), 2 threads");
        let tuned = TunedKernel {
            kernel: "vec4".into(),
            micros: BTreeMap::from([("vec4".to_string(), 1.0)]),
        };
        let file = CacheFile {
            kernels_version: kernels_version(),
            adapter: zen3.name.clone(),
            driver: zen3.driver.clone(),
            host_cpu: zen3.host_cpu.clone(),
            choices: BTreeMap::from([("shape".to_string(), tuned)]),
        };
        std::fs::write(&path, serde_json::to_vec(&file).expect("json")).expect("written");
        assert_eq!(load(&path, &zen3, false).len(), 1);
        assert!(load(&path, &zen4, false).is_empty());
    }
}
