// Shared by every shader file: prepended at load time (WGSL has no includes).

// Threads per workgroup for the one-output-per-invocation kernels.
override WG_SIZE: u32 = 64u;

const ACT_NONE: u32 = 0u;
const ACT_RELU: u32 = 1u;
const ACT_RELU6: u32 = 2u;

fn activate(x: f32, act: u32) -> f32 {
    switch act {
        case 1u: { return max(x, 0.0); }
        case 2u: { return clamp(x, 0.0, 6.0); }
        default: { return x; }
    }
}

// Element-wise kernels are dispatched as a 2D grid because one dimension is capped at
// 65535 workgroups; this folds the grid back into one linear index.
fn linear_index(gid: vec3<u32>, num_workgroups: vec3<u32>) -> u32 {
    return gid.x + gid.y * num_workgroups.x * WG_SIZE;
}
