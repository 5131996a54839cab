//! What can go wrong building the network or its inference form.

use crate::graph::GraphError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid MobileNet V1 configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(transparent)]
    Fold(#[from] FoldError),
}

/// Batchnorm tensors that cannot be folded, one line per convolution.
#[derive(Debug, thiserror::Error)]
#[error("cannot fold batchnorm: {}", .0.join("; "))]
pub struct FoldError(pub Vec<String>);
