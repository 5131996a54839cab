//! Buffer creation and read-back.

use super::{Gpu, GpuError};

/// A storage buffer that can also be written from the CPU and copied out for read-back.
pub fn storage_buffer(gpu: &Gpu, label: &str, bytes: u64) -> wgpu::Buffer {
    gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        // Whole vec4s (16 bytes), so kernels that move vec4s reach every element; this also
        // keeps degenerate tensors bindable (wgpu rejects zero-sized bindings).
        size: bytes.max(16).next_multiple_of(16),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

/// Waits for the GPU, maps a MAP_READ buffer and copies its first `bytes` bytes out.
pub fn read_buffer_bytes(
    device: &wgpu::Device,
    staging: &wgpu::Buffer,
    bytes: u64,
) -> Result<Vec<u8>, GpuError> {
    let slice = staging.slice(..bytes.max(4));
    let (sender, receiver) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |result| {
        let _ = sender.send(result);
    });
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| GpuError::Readback(e.to_string()))?;
    receiver
        .recv()
        .map_err(|e| GpuError::Readback(e.to_string()))?
        .map_err(|e| GpuError::Readback(e.to_string()))?;
    let data = {
        let view = slice
            .get_mapped_range()
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        view[..bytes as usize].to_vec()
    };
    staging.unmap();
    Ok(data)
}

/// `read_buffer_bytes` for `len` f32 values.
pub fn read_buffer_f32(
    device: &wgpu::Device,
    staging: &wgpu::Buffer,
    len: usize,
) -> Result<Vec<f32>, GpuError> {
    let bytes = read_buffer_bytes(device, staging, len as u64 * 4)?;
    Ok(bytemuck::pod_collect_to_vec(&bytes))
}
