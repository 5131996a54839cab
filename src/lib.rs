//! MobileNet V1 as WGSL compute shaders on wgpu.
//!
//! Build a graph ([`MobileNetV1Config::build`] or [`GraphBuilder`] by hand), `compile` it
//! on a [`Gpu`], load parameters and `run` batches; [`reference`](mod@reference) holds the CPU oracle.
//!
//! Where to start:
//! - classify images with pretrained weights: [`weights::load_pretrained`] and
//!   [`predict::Classifier`];
//! - train or fine-tune on a data set: [`train::train`] with [`train::TrainOptions`];
//! - a network of your own: [`GraphBuilder`], then [`Plan`] for inference and
//!   [`graph::TrainPlan`] for training.
//!
//! The repository's `examples/` folder has a complete program for each
//! (`cargo run --release --example classify -- WEIGHTS IMAGE...`).

pub mod atomic_file;
pub mod bench;
pub mod data;
pub mod gpu;
pub mod graph;
pub mod model;
pub mod ops;
pub mod predict;
pub mod quant;
pub mod reference;
pub mod train;
pub mod weights;

pub use gpu::{Gpu, GpuError};
pub use graph::{GraphBuilder, GraphError, ParamStore, Plan, TensorId};
pub use model::{MobileNetV1, MobileNetV1Config, Preset};
pub use ops::{Activation, Padding};
