//! Where each layer sits in the network and what its ops are called: the names
//! checkpoints, BN folding and the name maps walk.

use super::BLOCKS;

/// Stages of the network, in order: 0 the stem, 1..=13 the blocks, then the pool and the
/// classifier.
#[doc(hidden)]
pub const STAGES: usize = 16;
/// The global average pool's stage; stages before it are the backbone.
#[doc(hidden)]
pub const POOL_STAGE: usize = 14;
pub const CLASSIFIER: &str = "classifier";
/// Convolutions in the network, each followed by a batchnorm: the stem, then every block's
/// depthwise and pointwise.
pub const CONV_LAYERS: usize = 1 + 2 * BLOCKS.len();

/// Op names of the `layer`-th convolution (0..CONV_LAYERS) and of its batchnorm:
/// `stem.conv`/`stem.bn`, `blocks.<b>.dw`/`blocks.<b>.dw_bn`, `blocks.<b>.pw`/`blocks.<b>.pw_bn`.
/// BN folding and the checkpoint name maps walk the same list.
#[doc(hidden)]
pub fn conv_bn_pair(layer: usize) -> [String; 2] {
    if layer == 0 {
        return ["stem.conv".into(), "stem.bn".into()];
    }
    let block = layer.div_ceil(2);
    let kind = if layer % 2 == 1 { "dw" } else { "pw" };
    [
        format!("blocks.{block}.{kind}"),
        format!("blocks.{block}.{kind}_bn"),
    ]
}
