//! `mobilenet devices`

use clap::Args;
use mobilenet_wgpu::gpu::{list_adapters, INSTALL_HINT};

/// List the GPU adapters wgpu can see (honours WGPU_BACKEND).
#[derive(Args)]
pub struct DevicesArgs {
    #[arg(long)]
    json: bool,
}

impl DevicesArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let adapters = list_adapters();
        anyhow::ensure!(!adapters.is_empty(), "no GPU adapter found; {INSTALL_HINT}");
        if self.json {
            println!("{}", serde_json::to_string_pretty(&adapters)?);
            return Ok(());
        }
        for a in adapters {
            println!(
                "{} [{}; {}; {}]\n  max_storage_buffer_binding_size {} MiB, max_buffer_size {} MiB, \
                 workgroup invocations {}, workgroup storage {} KiB, timestamps {}",
                a.name,
                a.backend,
                a.device_type,
                a.driver,
                a.max_storage_buffer_binding_size >> 20,
                a.max_buffer_size >> 20,
                a.max_compute_invocations_per_workgroup,
                a.max_compute_workgroup_storage_size >> 10,
                a.timestamp_queries
            );
            if let Some(cpu) = &a.host_cpu {
                println!("  runs on {cpu}");
            }
        }
        Ok(())
    }
}
