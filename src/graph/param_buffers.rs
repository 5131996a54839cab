//! Parameters on the GPU: one storage buffer per tensor, shared by the inference and
//! training plans of a graph so both always see the same weights.

use super::builder::GraphBuilder;
use super::error::GraphError;
use super::params::ParamStore;
use super::shapes::tensor_bytes;
use super::steps::staging_buffer;
use crate::gpu::{read_buffer_f32, storage_buffer, Gpu};
use std::collections::HashMap;

pub struct ParamBuffers {
    device: wgpu::Device,
    queue: wgpu::Queue,
    entries: Vec<(String, Vec<usize>, wgpu::Buffer)>,
    index: HashMap<String, usize>,
}

impl ParamBuffers {
    /// Allocates every parameter of `graph` and uploads a seeded initialisation.
    pub fn new(gpu: &Gpu, graph: &GraphBuilder) -> Result<ParamBuffers, GraphError> {
        let entries: Vec<_> = graph
            .params()
            .iter()
            .map(|p| {
                let buffer = storage_buffer(gpu, &p.name, tensor_bytes(&p.shape));
                (p.name.clone(), p.shape.clone(), buffer)
            })
            .collect();
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, (name, _, _))| (name.clone(), i))
            .collect();
        let buffers = ParamBuffers {
            device: gpu.device().clone(),
            queue: gpu.queue().clone(),
            entries,
            index,
        };
        buffers.load(&ParamStore::initialize(graph, 0))?;
        Ok(buffers)
    }

    pub fn buffer(&self, name: &str) -> Option<&wgpu::Buffer> {
        self.index.get(name).map(|&i| &self.entries[i].2)
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.index.get(name).map(|&i| self.entries[i].1.as_slice())
    }

    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|(_, s, _)| tensor_bytes(s)).sum()
    }

    /// Checks that a graph's parameters are exactly these (names and shapes).
    pub fn check_matches(&self, graph: &GraphBuilder) -> Result<(), GraphError> {
        let mut problems = Vec::new();
        for p in graph.params() {
            match self.shape(&p.name) {
                Some(shape) if shape == p.shape.as_slice() => {}
                Some(shape) => problems.push(format!(
                    "{}: graph wants shape {:?}, buffer has {:?}",
                    p.name, p.shape, shape
                )),
                None => problems.push(format!("{}: no such parameter buffer", p.name)),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(GraphError::Params(problems))
        }
    }

    /// Uploads parameters. Every tensor must be present with its shape and nothing else
    /// may be; all problems are reported together.
    pub fn load(&self, store: &ParamStore) -> Result<(), GraphError> {
        let mut problems = Vec::new();
        for (name, shape, _) in &self.entries {
            match (store.shape(name), store.get(name)) {
                (Some(got), Some(values)) => {
                    if got != shape.as_slice() || values.len() != shape.iter().product::<usize>() {
                        problems.push(format!(
                            "{name}: expected shape {shape:?}, got {got:?} with {} values",
                            values.len()
                        ));
                    }
                }
                _ => problems.push(format!("{name}: missing (shape {shape:?})")),
            }
        }
        for (name, _, _) in store.iter() {
            if !self.index.contains_key(name) {
                problems.push(format!("{name}: not a parameter of this graph"));
            }
        }
        if !problems.is_empty() {
            return Err(GraphError::Params(problems));
        }
        for (name, _, buffer) in &self.entries {
            if let Some(values) = store.get(name) {
                self.queue
                    .write_buffer(buffer, 0, bytemuck::cast_slice(values));
            }
        }
        Ok(())
    }

    /// Reads every parameter back, in one copy and one submit.
    pub fn read(&self) -> Result<ParamStore, GraphError> {
        read_named(
            &self.device,
            &self.queue,
            self.entries
                .iter()
                .map(|(n, s, b)| (n.as_str(), s.as_slice(), b)),
        )
    }
}

/// Copies named GPU tensors into one staging buffer and reads them back together.
pub(crate) fn read_named<'a>(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    tensors: impl Iterator<Item = (&'a str, &'a [usize], &'a wgpu::Buffer)>,
) -> Result<ParamStore, GraphError> {
    let tensors: Vec<_> = tensors.collect();
    let total: u64 = tensors.iter().map(|(_, s, _)| tensor_bytes(s)).sum();
    let staging = staging_buffer(device, "tensor readback", total);
    let mut encoder = device.create_command_encoder(&Default::default());
    let mut offset = 0;
    for (_, shape, buffer) in &tensors {
        let bytes = tensor_bytes(shape);
        if bytes > 0 {
            encoder.copy_buffer_to_buffer(buffer, 0, &staging, offset, bytes);
        }
        offset += bytes;
    }
    queue.submit([encoder.finish()]);
    let values = read_buffer_f32(device, &staging, (total / 4) as usize)?;
    let mut store = ParamStore::new();
    let mut start = 0;
    for (name, shape, _) in tensors {
        let len = shape.iter().product::<usize>();
        store.insert(name, shape.to_vec(), values[start..start + len].to_vec());
        start += len;
    }
    Ok(store)
}
