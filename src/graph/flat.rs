//! Tensors packed into one buffer at aligned offsets. Parameters, their gradients and each
//! optimizer state live this way, so that one dispatch can update every tensor while each
//! layer still binds only its own.

use super::buffer_range::BufferRange;

/// Byte alignment of every tensor in a flat buffer: the largest storage-binding offset
/// alignment WebGPU allows an adapter to ask for, so any tensor can be bound on its own.
pub(crate) const FLAT_ALIGN: u64 = 256;

/// Where each of a list of f32 tensors starts in one buffer.
#[derive(Clone, Debug)]
pub(crate) struct FlatLayout {
    /// Per tensor: byte offset and element count.
    tensors: Vec<(u64, usize)>,
    bytes: u64,
}

impl FlatLayout {
    pub fn new(lens: impl IntoIterator<Item = usize>) -> FlatLayout {
        let mut bytes = 0;
        let tensors = lens
            .into_iter()
            .map(|len| {
                let offset = bytes;
                bytes = (offset + padded_bytes(len)).next_multiple_of(FLAT_ALIGN);
                (offset, len)
            })
            .collect();
        FlatLayout { tensors, bytes }
    }

    /// Bytes the buffer needs.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Tensor `index` of `buffer` as a binding: its elements rounded up to whole vec4s,
    /// as vec4 kernels read and write them.
    pub fn range(&self, buffer: &wgpu::Buffer, index: usize) -> BufferRange {
        let (offset, len) = self.tensors[index];
        BufferRange {
            buffer: buffer.clone(),
            offset,
            size: Some(padded_bytes(len)),
        }
    }
}

/// Bytes of `len` floats in whole vec4s, never zero (wgpu rejects empty bindings).
fn padded_bytes(len: usize) -> u64 {
    (len as u64 * 4).max(16).next_multiple_of(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_start_aligned_and_never_overlap() {
        let layout = FlatLayout::new([3, 64, 0, 65, 1]);
        let mut end = 0;
        for (i, len) in [3usize, 64, 0, 65, 1].into_iter().enumerate() {
            let offset = layout.tensors[i].0;
            assert_eq!(offset % FLAT_ALIGN, 0, "tensor {i} at {offset}");
            assert!(
                offset >= end,
                "tensor {i} at {offset} overlaps the one before"
            );
            end = offset + padded_bytes(len);
        }
        assert_eq!(layout.bytes(), end.next_multiple_of(FLAT_ALIGN));
        assert_eq!(layout.tensors[2].0, 512);
        assert_eq!(layout.tensors[3].0, 768);
    }
}
