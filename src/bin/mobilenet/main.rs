//! The `mobilenet` command line: parses arguments and calls the library.
//!
//! Every subcommand lives in `commands/`, one file per subcommand or family (train and
//! finetune in `train.rs`, bench and tune in `bench.rs`): its clap arguments, whose doc
//! comment is its help, their conversion into the library's options, its run and its
//! printing. Argument groups that several subcommands flatten in (the model, how files are
//! read, data-parallel training) are in `args.rs`.
//!
//! To add a subcommand: a new file in `commands/` with an `Args` struct and its `run`, a
//! variant in `commands::Command`, and one arm in `commands::run`.

mod args;
mod commands;

use clap::{CommandFactory, Parser};

#[derive(Parser)]
#[command(
    name = "mobilenet",
    version,
    about = "MobileNet V1 on wgpu compute shaders"
)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> anyhow::Result<()> {
    // Every Gpu does this too; here it happens before MPI or the loader start threads.
    mobilenet_wgpu::gpu::quiet_headless_start();
    let Cli { command } = Cli::parse();
    commands::run(command, Cli::command)
}
