//! `mobilenet summary`

use crate::args::ModelArgs;
use clap::Args;

/// Print the layer table: output shapes, parameters and mult-adds.
#[derive(Args)]
pub struct SummaryArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[arg(long)]
    json: bool,
}

impl SummaryArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let summary = self.model.config().build(1)?.summary();
        if self.json {
            println!("{}", serde_json::to_string_pretty(&summary)?);
        } else {
            print!("{summary}");
        }
        Ok(())
    }
}
