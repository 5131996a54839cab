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

    /// Whether the two share a byte of one buffer.
    pub fn overlaps(&self, other: &BufferRange) -> bool {
        let end = |r: &BufferRange| r.offset + r.bytes();
        self.buffer == other.buffer && self.offset < end(other) && other.offset < end(self)
    }

    pub fn binding(&self) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: self.size.and_then(wgpu::BufferSize::new),
        }
    }
}
