//! What a shader binding points at: a whole buffer, or the part of one that a chunk of
//! the batch occupies.

/// A buffer, or the part of one that a chunk of the batch occupies, as bound to a shader.
#[derive(Clone, Debug)]
pub(crate) struct BufferRange {
    pub buffer: wgpu::Buffer,
    pub offset: u64,
    /// `None`: to the end of the buffer.
    pub size: Option<u64>,
}

impl From<wgpu::Buffer> for BufferRange {
    fn from(buffer: wgpu::Buffer) -> Self {
        BufferRange {
            buffer,
            offset: 0,
            size: None,
        }
    }
}

impl BufferRange {
    /// Bytes the shader sees.
    pub fn bytes(&self) -> u64 {
        self.size.unwrap_or(self.buffer.size() - self.offset)
    }

    pub fn binding(&self) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: self.size.and_then(wgpu::BufferSize::new),
        }
    }
}
