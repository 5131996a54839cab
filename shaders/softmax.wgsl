// Row-wise softmax over [rows, cols] logits.

struct SoftmaxParams {
    rows: u32, cols: u32, _unused0: u32, _unused1: u32,
}

@group(0) @binding(0) var<uniform> p: SoftmaxParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;

// One row per invocation; subtracting the row maximum keeps exp() from overflowing.
@compute @workgroup_size(WG_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_index(gid, nwg);
    if row >= p.rows {
        return;
    }
    let base = row * p.cols;
    var peak = logits[base];
    for (var j = 1u; j < p.cols; j++) {
        peak = max(peak, logits[base + j]);
    }
    var total = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        total += exp(logits[base + j] - peak);
    }
    for (var j = 0u; j < p.cols; j++) {
        probs[base + j] = exp(logits[base + j] - peak) / total;
    }
}
