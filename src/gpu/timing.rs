//! Timing one dispatch on the open device, for the kernel tuner.

use super::buffers::{dispatch_bind_group, uniform_buffer};
use super::{CompiledEntry, Gpu, GpuError};
use std::time::{Duration, Instant};

/// How long one run of the dispatch takes: once to warm up, once alone, then repeated in
/// one submission for about `MEASURE_TARGET` (at least `MIN_REPEATS` times); the faster of
/// the two. Candidates slower than `give_up_after` are not repeated: they have lost already.
const MEASURE_TARGET: Duration = Duration::from_millis(20);
/// A dispatch alone in its submission can pay a fixed cost that a plan's dispatches do not:
/// on lavapipe the 32x32 dX GEMM of MobileNet's 392-row layer at 224/8 took 11.9 ms alone
/// (best of three) and 6.7 ms per dispatch in a batch of 4 (6.2 ms in the plan's profile),
/// so a tuner timing it alone chose the 16x32 kernel, 7.8 ms in the plan.
const MIN_REPEATS: u32 = 4;
const MAX_REPEATS: u32 = 20;
/// How far past the give-up limit a single dispatch may be and still be timed in a batch.
const SECOND_CHANCE: u32 = 4;
const SECOND_CHANCE_BATCH: u32 = 4;

impl Gpu {
    /// Times one dispatch of `compiled` with these uniform bytes and buffers.
    pub(crate) fn time_dispatch(
        &self,
        compiled: &CompiledEntry,
        uniform: &[u8],
        buffers: &[(u32, wgpu::BufferBinding<'_>)],
        workgroups: [u32; 3],
        give_up_after: Option<Duration>,
    ) -> Result<Duration, GpuError> {
        let scope = self
            .device()
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let (_uniform_buffer, bind_group) = self.tuning_bind_group(compiled, uniform, buffers);
        let run = |repeats| self.time_repeated(compiled, &bind_group, workgroups, repeats);
        run(1)?;
        if let Some(error) = pollster::block_on(scope.pop()) {
            return Err(GpuError::Pipeline {
                pipeline: "kernel timing".into(),
                reason: error.to_string(),
            });
        }
        let mut alone = run(1)?;
        // A dispatch alone in its submission can pay a fixed cost that vanishes among
        // others (lavapipe: about 6 ms for subgroup-32x64, which takes 1-2 ms in a plan). A
        // candidate not far past the limit gets a second chance in a batch of dispatches.
        if give_up_after.is_some_and(|limit| alone > limit && alone < limit * SECOND_CHANCE) {
            alone = alone.min(run(SECOND_CHANCE_BATCH)?);
        }
        if give_up_after.is_some_and(|limit| alone > limit) {
            return Ok(alone);
        }
        Ok(alone.min(run(repeats_for(alone))?))
    }

    /// Times a dispatch that `time_dispatch` has timed (as `before`) once more, in one batch
    /// only: it is compiled, checked and warm.
    pub(crate) fn time_dispatch_again(
        &self,
        compiled: &CompiledEntry,
        uniform: &[u8],
        buffers: &[(u32, wgpu::BufferBinding<'_>)],
        workgroups: [u32; 3],
        before: Duration,
    ) -> Result<Duration, GpuError> {
        let (_uniform_buffer, bind_group) = self.tuning_bind_group(compiled, uniform, buffers);
        self.time_repeated(compiled, &bind_group, workgroups, repeats_for(before))
    }

    /// The bind group of one timed dispatch: `uniform` in a buffer of its own at binding 0
    /// (returned with it: it must outlive the bind group's use), `buffers` at theirs.
    fn tuning_bind_group(
        &self,
        compiled: &CompiledEntry,
        uniform: &[u8],
        buffers: &[(u32, wgpu::BufferBinding<'_>)],
    ) -> (wgpu::Buffer, wgpu::BindGroup) {
        let uniform_buffer = uniform_buffer(self, "tuning uniform", uniform);
        let uniform_binding = wgpu::BufferBinding {
            buffer: &uniform_buffer,
            offset: 0,
            size: wgpu::BufferSize::new(uniform.len() as u64),
        };
        let bind_group = dispatch_bind_group(
            self,
            "tuning",
            compiled,
            uniform_binding,
            buffers.iter().cloned(),
        );
        (uniform_buffer, bind_group)
    }

    /// Mean time of `repeats` dispatches in one pass of one submission, waited for.
    fn time_repeated(
        &self,
        compiled: &CompiledEntry,
        bind_group: &wgpu::BindGroup,
        [x, y, z]: [u32; 3],
        repeats: u32,
    ) -> Result<Duration, GpuError> {
        let device = self.device();
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(&compiled.pipeline);
            pass.set_bind_group(0, bind_group, &[]);
            for _ in 0..repeats {
                pass.dispatch_workgroups(x, y, z);
            }
        }
        let start = Instant::now();
        self.queue().submit([encoder.finish()]);
        device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        Ok(start.elapsed() / repeats)
    }
}

/// Dispatches per timed batch for a dispatch that takes about `time`.
fn repeats_for(time: Duration) -> u32 {
    (MEASURE_TARGET.as_secs_f64() / time.as_secs_f64().max(1e-6))
        .clamp(MIN_REPEATS as f64, MAX_REPEATS as f64) as u32
}
