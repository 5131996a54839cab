//! MobileNet V1 as WGSL compute shaders on wgpu.
//!
//! Build a graph (`MobileNetV1Config::build` or `GraphBuilder` by hand), `compile` it on a
//! `Gpu`, load parameters and `run` batches; `reference` holds the CPU oracle.

pub mod bench;
pub mod data;
pub mod gpu;
pub mod graph;
pub mod model;
pub mod ops;
pub mod predict;
pub mod reference;
pub mod train;
pub mod weights;

pub use gpu::{Gpu, GpuError};
pub use graph::{GraphBuilder, GraphError, ParamStore, Plan, TensorId};
pub use model::{MobileNetV1, MobileNetV1Config, Preset};
pub use ops::{Activation, Padding};
