//! Buffer creation and read-back.

use super::{CompiledEntry, Gpu, GpuError};

/// A storage buffer that can also be written from the CPU and copied out for read-back.
pub fn storage_buffer(gpu: &Gpu, label: &str, bytes: u64) -> wgpu::Buffer {
    buffer_for(gpu, label, bytes, wgpu::BufferUsages::empty())
}

/// Bytes of the uniform block through which the vec4 GEMMs read the scale and shift of the
/// batch norm in their prologue (`PROLOGUE_VEC4S` vec4s in gemm_vec4.wgsl): the first two
/// `[channels]` planes of that batch norm's statistics, so up to 2048 channels.
pub const GEMM_PROLOGUE_UNIFORM_BYTES: u64 = 16 * 1024;

/// A storage buffer that shaders may also bind as that uniform block (batch-norm
/// statistics, and the placeholder bound where a GEMM has no prologue): at least
/// `GEMM_PROLOGUE_UNIFORM_BYTES`, since a uniform array of fixed size must be bound whole.
pub fn uniform_storage_buffer(gpu: &Gpu, label: &str, bytes: u64) -> wgpu::Buffer {
    let bytes = bytes.max(GEMM_PROLOGUE_UNIFORM_BYTES);
    buffer_for(gpu, label, bytes, wgpu::BufferUsages::UNIFORM)
}

/// A uniform buffer holding `bytes` (the uniform blocks of one or more dispatches), its
/// size rounded up to whole 16-byte rows as uniform blocks are laid out.
pub fn uniform_buffer(gpu: &Gpu, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    let buffer = gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (bytes.len() as u64).max(16).next_multiple_of(16),
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    gpu.queue().write_buffer(&buffer, 0, bytes);
    buffer
}

/// The bind group of one dispatch of `compiled`: its uniform block at binding 0, `buffers`
/// at theirs.
pub fn dispatch_bind_group<'a>(
    gpu: &Gpu,
    label: &str,
    compiled: &CompiledEntry,
    uniform: wgpu::BufferBinding<'a>,
    buffers: impl IntoIterator<Item = (u32, wgpu::BufferBinding<'a>)>,
) -> wgpu::BindGroup {
    let entries: Vec<wgpu::BindGroupEntry> = std::iter::once((0, uniform))
        .chain(buffers)
        .map(|(binding, range)| wgpu::BindGroupEntry {
            binding,
            resource: wgpu::BindingResource::Buffer(range),
        })
        .collect();
    gpu.device().create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout: &compiled.pipeline.get_bind_group_layout(0),
        entries: &entries,
    })
}

fn buffer_for(gpu: &Gpu, label: &str, bytes: u64, extra: wgpu::BufferUsages) -> wgpu::Buffer {
    gpu.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        // Whole vec4s (16 bytes), so kernels that move vec4s reach every element; this also
        // keeps degenerate tensors bindable (wgpu rejects zero-sized bindings).
        size: bytes.max(16).next_multiple_of(16),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC
            | extra,
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

#[cfg(test)]
mod tests {
    use super::GEMM_PROLOGUE_UNIFORM_BYTES;
    use crate::gpu::Shader;

    #[test]
    fn the_vec4_gemm_declares_the_uniform_block_the_buffers_are_sized_for() {
        let vec4s = GEMM_PROLOGUE_UNIFORM_BYTES / 16;
        let declaration = format!("const PROLOGUE_VEC4S: u32 = {vec4s}u;");
        assert!(Shader::GemmVec4.source().contains(&declaration));
    }
}
