// Softmax over [rows, classes] logits, and softmax fused with cross-entropy for training.

struct SoftmaxParams {
    rows: u32, cols: u32, count: u32, _unused: u32,
}

@group(0) @binding(0) var<uniform> p: SoftmaxParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad_logits: array<f32>;
// Running training metrics: [sum of losses, correct predictions, samples].
@group(0) @binding(6) var<storage, read_write> metrics: array<f32>;

// The row maximum and sum(exp(row - maximum)): subtracting the maximum keeps exp() from
// overflowing, and working relative to it keeps f32 precision for large logits.
fn row_peak_and_total(base: u32) -> vec2<f32> {
    var peak = logits[base];
    for (var j = 1u; j < p.cols; j++) {
        peak = max(peak, logits[base + j]);
    }
    var total = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        total += exp(logits[base + j] - peak);
    }
    return vec2<f32>(peak, total);
}

// One row per invocation.
@compute @workgroup_size(WG_SIZE)
fn forward(@builtin(global_invocation_id) gid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_index(gid, nwg);
    if row >= p.rows {
        return;
    }
    let base = row * p.cols;
    let stats = row_peak_and_total(base);
    for (var j = 0u; j < p.cols; j++) {
        probs[base + j] = exp(logits[base + j] - stats.x) / stats.y;
    }
}

// Per-sample loss -log softmax[label] and dlogits = (softmax - onehot) / count, in one
// pass. Rows past `count` (padding in a short batch) get zero loss and zero gradient.
@compute @workgroup_size(WG_SIZE)
fn cross_entropy(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = linear_index(gid, nwg);
    if row >= p.rows {
        return;
    }
    let base = row * p.cols;
    if row >= p.count {
        loss[row] = 0.0;
        for (var j = 0u; j < p.cols; j++) {
            grad_logits[base + j] = 0.0;
        }
        return;
    }
    let label = labels[row];
    let stats = row_peak_and_total(base);
    loss[row] = log(stats.y) - (logits[base + label] - stats.x);
    let scale = 1.0 / f32(p.count);
    for (var j = 0u; j < p.cols; j++) {
        let onehot = select(0.0, 1.0, j == label);
        grad_logits[base + j] = (exp(logits[base + j] - stats.x) / stats.y - onehot) * scale;
    }
}

// Adds the batch's loss sum, correct count and size to `metrics`, so the trainer reads
// metrics back only when it logs instead of after every step. One invocation walks the
// batch in order: deterministic, no float atomics. Ties in the argmax go to the first
// class, as the CPU's argmax does.
@compute @workgroup_size(1)
fn accumulate_metrics() {
    var loss_sum = 0.0;
    var correct = 0.0;
    for (var row = 0u; row < p.count; row++) {
        let base = row * p.cols;
        var best = 0u;
        for (var j = 1u; j < p.cols; j++) {
            if logits[base + j] > logits[base + best] {
                best = j;
            }
        }
        loss_sum += loss[row];
        correct += select(0.0, 1.0, best == labels[row]);
    }
    metrics[0] += loss_sum;
    metrics[1] += correct;
    metrics[2] += f32(p.count);
}
