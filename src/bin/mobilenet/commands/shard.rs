//! `mobilenet shard`

use clap::Args;
use mobilenet_wgpu::data::{index_image_folder, write_shards};
use std::path::PathBuf;

/// Write tar shards (WebDataset layout: KEY.jpg + KEY.cls) from an image folder, for
/// reading sequentially with `--dataset shards`.
#[derive(Args)]
pub struct ShardArgs {
    /// A folder of class subfolders.
    #[arg(long)]
    data: PathBuf,
    /// Folder for the shards and their dataset.json.
    #[arg(long)]
    out: PathBuf,
    /// Samples per shard (ImageNet is usually cut into shards of about 1 GB).
    #[arg(long, default_value_t = 10_000)]
    shard_size: usize,
    /// Shard names: PREFIX-000000.tar, ...
    #[arg(long, default_value = "train")]
    prefix: String,
    /// Seed of the shuffle applied before sharding (so every shard mixes classes).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Replace shards with the same prefix already in --out.
    #[arg(long)]
    overwrite: bool,
}

impl ShardArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let Self {
            data,
            out,
            shard_size,
            prefix,
            seed,
            overwrite,
        } = self;
        anyhow::ensure!(shard_size > 0, "--shard-size must be at least 1");
        let index = index_image_folder(&data)?;
        let samples = index.samples();
        let shards = write_shards(
            &samples,
            &index.class_names,
            &out,
            &prefix,
            shard_size,
            seed,
            overwrite,
        )?;
        println!(
            "wrote {} images of {} classes into {} shards in {} (read them with --dataset shards --data '{}/{prefix}-{{000000..{:06}}}.tar')",
            samples.len(),
            index.class_names.len(),
            shards.len(),
            out.display(),
            out.display(),
            shards.len().saturating_sub(1)
        );
        Ok(())
    }
}
