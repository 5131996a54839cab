//! Small facts about tensor shapes that plans and chunking share.

use super::error::GraphError;

/// Bytes of an f32 tensor.
pub(crate) fn tensor_bytes(shape: &[usize]) -> u64 {
    shape.iter().product::<usize>() as u64 * 4
}

/// `shape` with another batch size.
pub(crate) fn with_batch(shape: &[usize], batch: usize) -> Vec<usize> {
    let mut shape = shape.to_vec();
    shape[0] = batch;
    shape
}

/// The error for an input of the wrong length.
pub(crate) fn check_input_len(got: usize, shape: &[usize]) -> Result<(), GraphError> {
    let expected = shape.iter().product::<usize>();
    if got == expected {
        Ok(())
    } else {
        Err(GraphError::InputLength {
            got,
            expected,
            shape: shape.to_vec(),
        })
    }
}
