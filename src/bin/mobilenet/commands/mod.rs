//! The subcommands, one module each (or one per family), and the dispatch.

mod bench;
mod completions;
mod devices;
mod eval;
mod export;
mod predict;
mod preprocess;
mod quantize;
mod shard;
mod summary;
mod train;

use clap::Subcommand;

// No `///` doc comment here: clap would apply it to the top-level command's help. Each
// subcommand's help is its Args struct's doc comment; `mobilenet --help` lists them in this
// order.
#[derive(Subcommand)]
pub enum Command {
    Devices(devices::DevicesArgs),
    Summary(summary::SummaryArgs),
    Bench(bench::BenchArgs),
    Tune(bench::TuneArgs),
    Train(Box<train::TrainArgs>),
    Predict(predict::PredictArgs),
    Export(export::ExportArgs),
    Finetune(Box<train::FinetuneArgs>),
    Eval(eval::EvalArgs),
    Quantize(quantize::QuantizeArgs),
    Preprocess(preprocess::PreprocessArgs),
    Shard(shard::ShardArgs),
    Completions(completions::CompletionsArgs),
}

/// Runs `command`. `cli` builds the whole command line, which `completions` describes; it is
/// passed in because it is defined above this module, in main.rs.
pub fn run(command: Command, cli: fn() -> clap::Command) -> anyhow::Result<()> {
    match command {
        Command::Devices(args) => args.run(),
        Command::Summary(args) => args.run(),
        Command::Bench(args) => args.run(),
        Command::Tune(args) => args.run(),
        Command::Train(args) => args.run(),
        Command::Predict(args) => args.run(),
        Command::Export(args) => args.run(),
        Command::Finetune(args) => args.run(),
        Command::Eval(args) => args.run(),
        Command::Quantize(args) => args.run(),
        Command::Preprocess(args) => args.run(),
        Command::Shard(args) => args.run(),
        Command::Completions(args) => args.run(&mut cli()),
    }
}
