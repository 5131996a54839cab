//! Running a few op dispatches on buffers of the caller's own, outside any graph: how a
//! kernel is checked on its own against the CPU reference before a plan strings it
//! together with others (the int8 layers' tests run their dispatches so). The dispatches
//! are built as a plan builds its steps (uniform blocks, cached pipelines, bind groups from
//! each entry point's reflection) and run in one command buffer, in order.

use super::error::GraphError;
use super::steps::{encode, staging_buffer, StepBuilder};
use crate::gpu::{read_buffer_bytes, storage_buffer, Gpu};
use crate::ops::{Dispatch, Slot};

/// What a slot's buffer starts as.
#[derive(Clone, Copy, Debug)]
pub enum SlotData<'a> {
    /// These bytes (a buffer of their length, rounded up to whole words).
    Bytes(&'a [u8]),
    /// This many bytes of zeros.
    Zeroed(u64),
}

impl SlotData<'_> {
    fn bytes(&self) -> u64 {
        match self {
            SlotData::Bytes(bytes) => bytes.len() as u64,
            SlotData::Zeroed(bytes) => *bytes,
        }
    }
}

/// Runs `dispatches` in order, each slot they bind resolved to a buffer holding `slots`'
/// data for it, and returns the bytes of the slot `read` afterwards (its data's length).
/// A slot a dispatch reads but `slots` does not name is an error naming the binding.
pub fn run_dispatches(
    gpu: &Gpu,
    label: &str,
    dispatches: &[Dispatch],
    slots: &[(Slot, SlotData)],
    read: Slot,
) -> Result<Vec<u8>, GraphError> {
    let buffers: Vec<(Slot, wgpu::Buffer, u64)> = slots
        .iter()
        .map(|(slot, data)| {
            let bytes = data.bytes();
            let buffer = storage_buffer(gpu, &format!("{label} {slot:?}"), bytes);
            if let SlotData::Bytes(initial) = data {
                let mut padded = initial.to_vec();
                padded.resize(initial.len().next_multiple_of(4), 0);
                gpu.queue().write_buffer(&buffer, 0, &padded);
            }
            (*slot, buffer, bytes)
        })
        .collect();
    let find = |slot: Slot| buffers.iter().find(|(s, _, _)| *s == slot);
    let mut builder = StepBuilder::new(gpu);
    for dispatch in dispatches {
        builder.add(label, dispatch, |slot| {
            find(slot).map(|(_, b, _)| b.clone())
        })?;
    }
    let (steps, _) = builder.finish()?;
    let (_, source, bytes) = find(read).ok_or_else(|| GraphError::Binding {
        op: label.to_string(),
        entry: "read back".into(),
        binding: 0,
        slot: Some(format!("{read:?}")),
    })?;
    let copy = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
    let staging = staging_buffer(gpu.device(), &format!("{label} read back"), copy);
    let mut encoder = gpu.device().create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes: None,
        });
        encode(&mut pass, &steps);
    }
    encoder.copy_buffer_to_buffer(source, 0, &staging, 0, copy);
    gpu.queue().submit([encoder.finish()]);
    let mut data = read_buffer_bytes(gpu.device(), &staging, copy)?;
    data.truncate(*bytes as usize);
    Ok(data)
}
