// Deterministic two-stage reductions (no float atomics): stage 1 sums fixed chunks of
// rows into partials, stage 2 sums the partials in a fixed order.

struct ReduceParams {
    rows: u32, cols: u32, rows_per_chunk: u32, chunks: u32,
    accumulate: u32, _unused0: u32, _unused1: u32, _unused2: u32,
}

@group(0) @binding(0) var<uniform> p: ReduceParams;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> output: array<f32>;

// partial[s, c] = sum of input[r, c] over the rows r of chunk s.
@compute @workgroup_size(WG_SIZE)
fn column_partial(@builtin(global_invocation_id) gid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let index = linear_index(gid, nwg);
    if index >= p.chunks * p.cols {
        return;
    }
    let c = index % p.cols;
    let first = (index / p.cols) * p.rows_per_chunk;
    let last = min(first + p.rows_per_chunk, p.rows);
    var sum = 0.0;
    for (var r = first; r < last; r++) {
        sum += input[r * p.cols + c];
    }
    output[index] = sum;
}

// output[c] = sum over s of input[s, c] (here `rows` counts the partials), added to the
// previous contents when accumulating.
@compute @workgroup_size(WG_SIZE)
fn sum_partials(@builtin(global_invocation_id) gid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = linear_index(gid, nwg);
    if c >= p.cols {
        return;
    }
    var sum = 0.0;
    for (var s = 0u; s < p.rows; s++) {
        sum += input[s * p.cols + c];
    }
    if p.accumulate != 0u {
        sum += output[c];
    }
    output[c] = sum;
}

// The same bindings as vec4s, for sum_partials4 only (each entry point reads one view).
@group(0) @binding(1) var<storage, read> input4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> output4: array<vec4<f32>>;

// sum_partials on 4 adjacent values per invocation (`cols` counts vec4s), where the
// partials' length divides by 4: lavapipe runs a loop over the lanes per load whatever its
// width, so this takes about a quarter of the time (the 26 weight-gradient sums of a 224/8
// training step, performance.md, 2026-12-05, late night). Same sums in the same order.
@compute @workgroup_size(WG_SIZE)
fn sum_partials4(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = linear_index(gid, nwg);
    if c >= p.cols {
        return;
    }
    var sum = vec4<f32>(0.0);
    for (var s = 0u; s < p.rows; s++) {
        sum += input4[s * p.cols + c];
    }
    if p.accumulate != 0u {
        sum += output4[c];
    }
    output4[c] = sum;
}
