//! Translates every compute entry point of every `Shader` for every back end and language
//! version wgpu 30 targets, as wgpu-hal would, and checks the SPIR-V and GLSL with their
//! Khronos validators: the facts behind `gpu::PORTABILITY` and docs/portability.md.

pub mod facts;
pub mod table;
pub mod targets;
pub mod translate;
pub mod validators;

use facts::{EntryFacts, ShaderFacts};
use mobilenet_wgpu::gpu::Shader;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use targets::{Language, Target};
use translate::Output;
use validators::{Check, Validator};
use wgpu::{Backend, Features};

/// What became of one entry point on one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// naga translated it (and the validator, where there is one, accepted the output).
    Translated,
    /// This version of the API does not offer these features the module needs.
    Unavailable(Features),
    /// naga's message, or the validator's.
    Failed(String),
}

/// One compute entry point and what became of it on every target.
pub struct EntryReport {
    pub shader: Shader,
    pub entry: String,
    pub facts: EntryFacts,
    /// Where the entry point itself uses subgroup operations: its module's SUBGROUP_LANES.
    pub subgroup_lanes: Option<u32>,
    /// One per target, in `Report::targets` order.
    pub outcomes: Vec<Outcome>,
}

/// A shader's features and why it needs them, for the documentation.
pub struct ShaderNeeds {
    pub shader: Shader,
    pub needs: Features,
    pub without: Option<String>,
}

/// A failure, naming what failed where.
#[derive(Clone)]
pub struct Failure {
    pub shader: Shader,
    pub entry: Option<String>,
    /// The back end and language version, where the failure is a translation's.
    pub target: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shader {}", self.shader)?;
        if let Some(entry) = &self.entry {
            write!(f, ", entry point `{entry}`")?;
        }
        if let Some(target) = &self.target {
            write!(f, ", back end {target}")?;
        }
        write!(f, ":\n    {}", self.message.replace('\n', "\n    "))
    }
}

pub struct Report {
    pub targets: Vec<Target>,
    pub shaders: Vec<ShaderNeeds>,
    pub entries: Vec<EntryReport>,
    /// Shaders that could not be analysed at all (they have no entries above).
    pub broken: Vec<Failure>,
}

impl Report {
    /// Every failure: the broken shaders, then each failed translation.
    pub fn failures(&self) -> Vec<Failure> {
        let mut failures = self.broken.clone();
        for entry in &self.entries {
            for (target, outcome) in self.targets.iter().zip(&entry.outcomes) {
                if let Outcome::Failed(message) = outcome {
                    failures.push(Failure {
                        shader: entry.shader,
                        entry: Some(entry.entry.clone()),
                        target: Some(format!(
                            "{} ({})",
                            table::backend_name(target.backend),
                            target.name()
                        )),
                        message: message.clone(),
                    });
                }
            }
        }
        failures
    }

    pub fn entry(&self, shader: Shader, entry: &str) -> Option<&EntryReport> {
        self.entries
            .iter()
            .find(|e| e.shader == shader && e.entry == entry)
    }

    /// The outcomes of an entry point on the versions of one back end.
    pub fn outcomes_on<'a>(
        &'a self,
        entry: &'a EntryReport,
        backend: Backend,
    ) -> impl Iterator<Item = (&'a Target, &'a Outcome)> {
        self.targets
            .iter()
            .zip(&entry.outcomes)
            .filter(move |(target, _)| target.backend == backend)
    }

    /// Whether `backend` can run the entry point: some version offers its features, and
    /// every version that does translated it.
    pub fn runs_on(&self, entry: &EntryReport, backend: Backend) -> bool {
        let outcomes: Vec<&Outcome> = self.outcomes_on(entry, backend).map(|(_, o)| o).collect();
        let translated = outcomes.iter().any(|o| **o == Outcome::Translated);
        translated && !outcomes.iter().any(|o| matches!(o, Outcome::Failed(_)))
    }
}

/// `work` on every item, a few at a time (the machine's cores, at least 2: validators
/// are processes that wait), the results in the items' order.
pub fn in_parallel<T: Sync, R: Send>(items: &[T], work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8));
    let next = AtomicUsize::new(0);
    let done = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                let claim = || {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    items.get(index).map(|item| (index, item))
                };
                while let Some((index, item)) = claim() {
                    let result = work(item);
                    done.lock().unwrap().push((index, result));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, result)| result).collect()
}

/// Translates everything (a few shaders at once), then runs the validators.
pub fn run() -> Report {
    let targets = targets::targets();
    let done = in_parallel(&Shader::ALL, |&shader| translate_shader(shader, &targets));
    let mut report = Report {
        targets,
        shaders: Vec::new(),
        entries: Vec::new(),
        broken: Vec::new(),
    };
    let mut checks = Vec::new();
    for result in done {
        match result {
            Ok((needs, entries, shader_checks)) => {
                let base = report.entries.len();
                report.shaders.push(needs);
                report.entries.extend(entries);
                checks.extend(shader_checks.into_iter().map(|(e, t, c)| (base + e, t, c)));
            }
            Err(failure) => report.broken.push(failure),
        }
    }
    validate_outputs(&mut report, checks);
    report
}

/// A validator run owed by entry `.0` (index into `Report::entries`) on target `.1`.
type PendingCheck = (usize, usize, Check);

type ShaderResult = Result<(ShaderNeeds, Vec<EntryReport>, Vec<PendingCheck>), Failure>;

/// Every entry point of one shader on every target; the validator runs it owes.
fn translate_shader(shader: Shader, targets: &[Target]) -> ShaderResult {
    let broken = |message: String| Failure {
        shader,
        entry: None,
        target: None,
        message,
    };
    let facts = facts::shader_facts(shader).map_err(broken)?;
    // The strictest device that can create the module: exactly the features it needs.
    let info = facts::validate(&facts.module, &shader.source(), facts.needs).map_err(broken)?;
    let mut entries = Vec::new();
    let mut checks = Vec::new();
    for name in facts::compute_entries(&facts.module) {
        let entry_facts =
            facts::entry_facts(&facts.module, &info, &name).map_err(|message| Failure {
                entry: Some(name.clone()),
                ..broken(message)
            })?;
        let mut outcomes = Vec::new();
        for (t, target) in targets.iter().enumerate() {
            let (outcome, check) = translate_entry(&facts, &info, &name, target);
            outcomes.push(outcome);
            checks.extend(check.map(|check| (entries.len(), t, check)));
        }
        let subgroup_lanes = facts
            .subgroup_lanes
            .filter(|_| entry_facts.uses.contains(Features::SUBGROUP));
        entries.push(EntryReport {
            shader,
            entry: name,
            facts: entry_facts,
            subgroup_lanes,
            outcomes,
        });
    }
    let needs = ShaderNeeds {
        shader,
        needs: facts.needs,
        without: facts.without,
    };
    Ok((needs, entries, checks))
}

/// One entry point on one target, and the validator run its output owes, if any.
fn translate_entry(
    facts: &ShaderFacts,
    info: &naga::valid::ModuleInfo,
    entry: &str,
    target: &Target,
) -> (Outcome, Option<Check>) {
    let missing = facts.needs - target.offers;
    if !missing.is_empty() {
        return (Outcome::Unavailable(missing), None);
    }
    let output = match translate::translate(&facts.module, info, entry, target, facts.needs) {
        Ok(output) => output,
        Err(message) => return (Outcome::Failed(format!("naga: {message}")), None),
    };
    let stem = format!(
        "{:?}-{entry}-{}",
        facts.shader,
        target.version().replace([' ', '.'], "_")
    );
    let (validator, file_name, bytes) = match (output, target.language) {
        (Output::Text, _) => return (Outcome::Translated, None),
        (Output::Spirv(words), Language::Spirv(_, minor)) => {
            let env = match minor {
                0 => "vulkan1.0",
                3 => "vulkan1.1",
                5 => "vulkan1.2",
                _ => "vulkan1.3",
            };
            let bytes = bytemuck::cast_slice(&words).to_vec();
            (Validator::SpirvVal(env), format!("{stem}.spv"), bytes)
        }
        (Output::Glsl(text), _) => (
            Validator::GlslangValidator,
            format!("{stem}.comp"),
            text.into_bytes(),
        ),
        (Output::Spirv(_), _) => unreachable!("SPIR-V comes from SPIR-V targets only"),
    };
    let check = Check {
        file_name,
        bytes,
        validator,
    };
    (Outcome::Translated, Some(check))
}

/// Runs the validators and turns their rejections into failed outcomes.
fn validate_outputs(report: &mut Report, pending: Vec<PendingCheck>) {
    let (owners, checks): (Vec<(usize, usize)>, Vec<Check>) = pending
        .into_iter()
        .map(|(entry, target, check)| ((entry, target), check))
        .unzip();
    for (index, message) in validators::run(&checks) {
        let (entry, target) = owners[index];
        report.entries[entry].outcomes[target] = Outcome::Failed(message);
    }
}
