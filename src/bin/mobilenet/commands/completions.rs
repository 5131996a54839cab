//! `mobilenet completions`

use clap::{Args, ValueEnum};

/// Print a shell completion script to stdout, e.g.
/// `mobilenet completions bash > ~/.local/share/bash-completion/completions/mobilenet`.
#[derive(Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    shell: CompletionShell,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

impl CompletionsArgs {
    /// Writes the script that completes `cli`, the whole command line.
    pub fn run(self, cli: &mut clap::Command) -> anyhow::Result<()> {
        let shell = match self.shell {
            CompletionShell::Bash => clap_complete::Shell::Bash,
            CompletionShell::Zsh => clap_complete::Shell::Zsh,
            CompletionShell::Fish => clap_complete::Shell::Fish,
        };
        clap_complete::generate(shell, cli, "mobilenet", &mut std::io::stdout());
        Ok(())
    }
}
