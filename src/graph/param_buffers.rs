//! Parameters on the GPU, shared by the inference and training plans of a graph so both
//! always see the same weights. They live in two flat buffers, each tensor at an aligned
//! offset (see `flat`): the trainable tensors in one, so the optimizer updates them all in
//! one dispatch, and batch norm's running statistics in the other, because kernels write
//! those while reading the trainable ones and wgpu tracks usage per buffer, not per range.

use super::buffer_range::BufferRange;
use super::builder::GraphBuilder;
use super::error::GraphError;
use super::flat::FlatLayout;
use super::params::ParamStore;
use super::shapes::tensor_bytes;
use super::steps::staging_buffer;
use crate::gpu::{read_buffer_f32, storage_buffer, Gpu};
use crate::ops::GpuLayout;
use std::collections::HashMap;

pub struct ParamBuffers {
    device: wgpu::Device,
    queue: wgpu::Queue,
    /// Every trainable-role tensor (weights, biases, gamma, beta), in graph order.
    weights: wgpu::Buffer,
    /// Bytes of both flat buffers.
    bytes: u64,
    /// In graph order.
    entries: Vec<ParamEntry>,
    index: HashMap<String, usize>,
}

struct ParamEntry {
    name: String,
    shape: Vec<usize>,
    /// How the buffer holds it (`ParamInfo::layout`).
    layout: GpuLayout,
    range: BufferRange,
}

impl ParamBuffers {
    /// Allocates every parameter of `graph` and uploads a seeded initialisation.
    pub fn new(gpu: &Gpu, graph: &GraphBuilder) -> Result<ParamBuffers, GraphError> {
        let params = graph.params();
        let (weights, statistics): (Vec<usize>, Vec<usize>) =
            (0..params.len()).partition(|&p| params[p].role.trainable());
        let layout_of = |ids: &[usize]| {
            FlatLayout::new(
                ids.iter()
                    .map(|&p| params[p].stored_shape().iter().product()),
            )
        };
        let (weights_layout, statistics_layout) = (layout_of(&weights), layout_of(&statistics));
        let weights_buffer = storage_buffer(gpu, "parameters", weights_layout.bytes());
        let statistics_buffer =
            storage_buffer(gpu, "running statistics", statistics_layout.bytes());
        let mut entries: Vec<Option<ParamEntry>> = (0..params.len()).map(|_| None).collect();
        let groups = [
            (&weights, &weights_layout, &weights_buffer),
            (&statistics, &statistics_layout, &statistics_buffer),
        ];
        for (ids, layout, buffer) in groups {
            for (i, &p) in ids.iter().enumerate() {
                entries[p] = Some(ParamEntry {
                    name: params[p].name.clone(),
                    shape: params[p].shape.clone(),
                    layout: params[p].layout,
                    range: layout.range(buffer, i),
                });
            }
        }
        let entries: Vec<ParamEntry> = entries.into_iter().flatten().collect();
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.clone(), i))
            .collect();
        let buffers = ParamBuffers {
            device: gpu.device().clone(),
            queue: gpu.queue().clone(),
            bytes: weights_buffer.size() + statistics_buffer.size(),
            weights: weights_buffer,
            entries,
            index,
        };
        buffers.load(&ParamStore::initialize(graph, 0))?;
        Ok(buffers)
    }

    /// Where parameter `name` is bound from.
    pub(crate) fn range(&self, name: &str) -> Option<BufferRange> {
        let &i = self.index.get(name)?;
        Some(self.entries[i].range.clone())
    }

    /// The flat buffer that holds every trainable-role tensor, each at its `range` (the
    /// optimizer binds spans of it).
    pub(crate) fn weights(&self) -> &wgpu::Buffer {
        &self.weights
    }

    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.index
            .get(name)
            .map(|&i| self.entries[i].shape.as_slice())
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Checks that a graph's parameters are exactly these (names and shapes).
    pub fn check_matches(&self, graph: &GraphBuilder) -> Result<(), GraphError> {
        let mut problems = Vec::new();
        for p in graph.params() {
            match self.index.get(&p.name).map(|&i| &self.entries[i]) {
                Some(entry) if entry.shape == p.shape && entry.layout == p.layout => {}
                Some(entry) => problems.push(format!(
                    "{}: graph wants shape {:?} (stored {:?}), buffer has {:?} (stored {:?})",
                    p.name, p.shape, p.layout, entry.shape, entry.layout
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
        for ParamEntry { name, shape, .. } in &self.entries {
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
        for entry in &self.entries {
            if let Some(values) = store.get(&entry.name) {
                let (buffer, offset) = (&entry.range.buffer, entry.range.offset);
                let stored = entry.layout.to_stored(values, &entry.shape);
                self.queue
                    .write_buffer(buffer, offset, bytemuck::cast_slice(&stored));
            }
        }
        Ok(())
    }

    /// Reads every parameter back, in one copy and one submit.
    pub fn read(&self) -> Result<ParamStore, GraphError> {
        let stored_shapes: Vec<Vec<usize>> = self
            .entries
            .iter()
            .map(|e| e.layout.stored_shape(&e.shape))
            .collect();
        let mut store = read_named(
            &self.device,
            &self.queue,
            self.entries
                .iter()
                .zip(&stored_shapes)
                .map(|(e, stored)| (e.name.as_str(), stored.as_slice(), e.range.clone())),
        )?;
        // Only tensors stored other than densely need rearranging.
        for entry in self.entries.iter().filter(|e| e.layout != GpuLayout::Dense) {
            if let Some(values) = store.get(&entry.name) {
                let dense = entry.layout.to_dense(values.to_vec(), &entry.shape);
                store.insert(&entry.name, entry.shape.clone(), dense);
            }
        }
        Ok(store)
    }
}

/// Copies named GPU tensors (each where its range starts) into one staging buffer and
/// reads them back together.
pub(crate) fn read_named<'a>(
    device: &wgpu::Device,
    queue: &wgpu::Queue,
    tensors: impl Iterator<Item = (&'a str, &'a [usize], BufferRange)>,
) -> Result<ParamStore, GraphError> {
    let tensors: Vec<_> = tensors.collect();
    let total: u64 = tensors.iter().map(|(_, s, _)| tensor_bytes(s)).sum();
    let staging = staging_buffer(device, "tensor readback", total);
    let mut encoder = device.create_command_encoder(&Default::default());
    let mut offset = 0;
    for (_, shape, range) in &tensors {
        let bytes = tensor_bytes(shape);
        if bytes > 0 {
            encoder.copy_buffer_to_buffer(&range.buffer, range.offset, &staging, offset, bytes);
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
