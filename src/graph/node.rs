//! The pieces a graph is made of: tensors (ids and shapes), the ops reading and writing
//! them, and the parameters those ops own.

use crate::ops::{GpuLayout, OpKind, ParamRole};

/// A tensor in a graph, valid only for the builder that made it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TensorId(pub(super) usize);

#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
}

/// A named op, its input and output tensors and the parameters it owns.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub kind: OpKind,
    pub input: TensorId,
    pub output: TensorId,
    /// Indices into `GraphBuilder::params()`, in the op's `params()` order.
    pub params: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct ParamInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: ParamRole,
    /// How its GPU buffer holds it (`ParamSpec::layout`).
    pub layout: GpuLayout,
}

impl ParamInfo {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The shape the GPU buffer holds.
    pub fn stored_shape(&self) -> Vec<usize> {
        self.layout.stored_shape(&self.shape)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
