//! The independent checks of naga's output that Debian packages: spirv-val (spirv-tools)
//! on every SPIR-V module, glslangValidator (glslang-tools) on every GLSL one. A missing
//! validator fails the test with the command that installs it: it never passes unchecked.

use std::path::PathBuf;
use std::process::Command;

const INSTALL: &str = "apt-get install spirv-tools glslang-tools (scripts/setup.sh does)";

/// One translated module to check: the file to write it to and the command that checks it.
pub struct Check {
    pub file_name: String,
    pub bytes: Vec<u8>,
    pub validator: Validator,
}

#[derive(Clone, Copy)]
pub enum Validator {
    /// spirv-val with this `--target-env` (vulkan1.0 .. vulkan1.3).
    SpirvVal(&'static str),
    GlslangValidator,
}

/// GLSL files per glslangValidator run: it takes a tenth of a second to start and
/// compiles each file it is given on its own, so batches save most of the time.
const GLSL_BATCH: usize = 32;

impl Validator {
    fn binary(self) -> &'static str {
        match self {
            Validator::SpirvVal(_) => "spirv-val",
            Validator::GlslangValidator => "glslangValidator",
        }
    }

    /// Checks these files (spirv-val takes one at a time), returning its output on failure.
    fn check(self, files: &[PathBuf]) -> Result<(), String> {
        let binary = self.binary();
        let mut command = Command::new(binary);
        if let Validator::SpirvVal(env) = self {
            command.args(["--target-env", env]);
        }
        let output = command
            .args(files)
            .output()
            .unwrap_or_else(|e| panic!("{binary} cannot run ({e}); install it: {INSTALL}"));
        if output.status.success() {
            return Ok(());
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Err(format!("{binary}: {}", text.trim()))
    }
}

/// The version line of each validator, failing with the install command when one is
/// missing.
pub fn versions() -> Vec<String> {
    [
        Validator::SpirvVal("vulkan1.0"),
        Validator::GlslangValidator,
    ]
    .iter()
    .map(|validator| {
        let binary = validator.binary();
        let output = Command::new(binary)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("{binary} cannot run ({e}); install it: {INSTALL}"));
        let text = String::from_utf8_lossy(&output.stdout);
        format!("{binary}: {}", text.lines().next().unwrap_or("").trim())
    })
    .collect()
}

/// Runs every check (a few processes at once), returning the failures as (index into
/// `checks`, the validator's output).
pub fn run(checks: &[Check]) -> Vec<(usize, String)> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files: Vec<PathBuf> = checks
        .iter()
        .map(|check| {
            let file = dir.path().join(&check.file_name);
            std::fs::write(&file, &check.bytes).expect("write the module to check");
            file
        })
        .collect();
    let jobs = batches(checks);
    let found = super::in_parallel(&jobs, |job| run_job(checks, &files, job));
    // Without the temporary directory, so that a failure reads the same every run.
    let prefix = format!("{}/", dir.path().display());
    let mut failures: Vec<(usize, String)> = found
        .into_iter()
        .flatten()
        .map(|(index, output)| (index, output.replace(&prefix, "")))
        .collect();
    failures.sort();
    failures
}

/// The checks grouped into validator runs: each SPIR-V module alone, GLSL in batches.
fn batches(checks: &[Check]) -> Vec<Vec<usize>> {
    let (glsl, spirv): (Vec<usize>, Vec<usize>) = (0..checks.len())
        .partition(|&i| matches!(checks[i].validator, Validator::GlslangValidator));
    let mut jobs: Vec<Vec<usize>> = glsl.chunks(GLSL_BATCH).map(<[usize]>::to_vec).collect();
    jobs.extend(spirv.into_iter().map(|i| vec![i]));
    jobs
}

/// One validator run; a batch that fails is checked again file by file, so that each
/// failure carries its own file's messages.
fn run_job(checks: &[Check], files: &[PathBuf], job: &[usize]) -> Vec<(usize, String)> {
    let validator = checks[job[0]].validator;
    let batch: Vec<PathBuf> = job.iter().map(|&i| files[i].clone()).collect();
    match validator.check(&batch) {
        Ok(()) => Vec::new(),
        Err(output) if job.len() == 1 => vec![(job[0], output)],
        Err(_) => job
            .iter()
            .filter_map(|&i| validator.check(&files[i..=i]).err().map(|e| (i, e)))
            .collect(),
    }
}
