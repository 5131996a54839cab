//! A naive CPU implementation of every op, written to be obviously correct rather than
//! fast: direct loops over the definitions, f64 accumulation. It is the oracle the GPU
//! shaders are tested against. `int8` is the integer reference of the int8 ops (issue 21),
//! which the int8 kernels match bit for bit; `run_int8_graph` runs a folded network on it.

mod backward;
mod forward;
mod graph;
pub mod int8;
mod int8_graph;
mod optim;
mod tensor;
mod train;

pub use backward::{
    batch_norm_backward, batch_norm_train, batch_stats, conv2d_backward, cross_entropy,
    dense_backward, depthwise_backward, pointwise_backward, pool_backward, run_op_backward,
    run_op_train, update_running_stats,
};
pub use forward::{
    activate, batch_norm, conv2d, dense, depthwise, global_avg_pool, pointwise, run_op, softmax,
};
pub use graph::run_graph;
pub use int8_graph::run_int8_graph;
pub use optim::apply_update;
pub use tensor::Tensor;
pub use train::{data_parallel_step, loss_gradients, train_step};
