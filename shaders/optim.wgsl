// Optimizer updates of many parameter tensors in one dispatch. Parameters, gradients and
// each state tensor live in flat buffers (graph::flat), every tensor at an aligned offset;
// the uniform table says where each tensor starts and which workgroups are its. Each
// invocation updates vec4s (4 elements each): a software rasteriser pays per load
// instruction, whatever its width. A tensor's last vec4 may reach past its end; that
// padding holds zeros, which every rule below maps to zeros. Weight decay is L2 added to
// the gradient (PyTorch's coupled form); the host sets it to zero for parameters that
// should not decay (depthwise filters, BN, biases by default).

// Tensors one dispatch updates (ops::UPDATE_TABLE_TENSORS); the host splits longer lists.
const UPDATE_TABLE_TENSORS: u32 = 256u;

struct UpdateTensor {
    // The tensor's workgroups are first_workgroup.. up to the next tensor's first.
    first_workgroup: u32,
    // Starts in vec4s from the bound ranges' starts: the parameter in `param`, the
    // gradient in `grad` and (the same layout) each state tensor.
    param_start: u32,
    grad_start: u32,
    len: u32,
    weight_decay: f32,
    _unused0: u32, _unused1: u32, _unused2: u32,
}

// ops::UpdateRule's codes.
const RULE_SGD: u32 = 0u;
const RULE_RMSPROP_TF: u32 = 1u;
const RULE_RMSPROP_TORCH: u32 = 2u;

struct UpdateTable {
    count: u32, workgroups: u32, rule: u32, _unused0: u32,
    tensors: array<UpdateTensor, UPDATE_TABLE_TENSORS>,
}

// Shared by every parameter, rewritten each step (the learning rate changes).
struct Hyper {
    lr: f32, decay: f32, momentum: f32, eps: f32,
    nesterov: u32, _unused0: u32, _unused1: u32, _unused2: u32,
}

@group(0) @binding(0) var<uniform> table: UpdateTable;
@group(0) @binding(1) var<uniform> hyper: Hyper;
// WORDS BEGIN
// Parameters, gradients and state as vec4s of floats (optim_words64.wgsl moves them as
// 64-bit words instead).
@group(0) @binding(2) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> state0: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> state1: array<vec4<f32>>;

fn param_at(i: u32) -> vec4<f32> {
    return param[i];
}

fn set_param(i: u32, value: vec4<f32>) {
    param[i] = value;
}

fn grad_at(i: u32) -> vec4<f32> {
    return grad[i];
}

fn state0_at(i: u32) -> vec4<f32> {
    return state0[i];
}

fn set_state0(i: u32, value: vec4<f32>) {
    state0[i] = value;
}

fn state1_at(i: u32) -> vec4<f32> {
    return state1[i];
}

fn set_state1(i: u32, value: vec4<f32>) {
    state1[i] = value;
}
// WORDS END

// Vec4s each invocation updates, WG_SIZE apart (ops::UPDATE_VEC4S_PER_INVOCATION): the
// search for an invocation's tensor is paid once for all of them. On lavapipe (RMSProp,
// a 32/32 step's 83 tensors) the update took about 50 ms at 1, 40 at 4 and 29 at 16,
// against 37 for a dispatch per tensor.
const VEC4S_PER_INVOCATION: u32 = 16u;

// One vec4 to update: indices into the parameter and gradient/state buffers.
struct Element {
    param: u32,
    grad: u32,
    // Which vec4 of its tensor, and the tensor's length and decay.
    local: u32,
    len: u32,
    weight_decay: f32,
}

// The table entry owning workgroup `wg`: the last tensor whose first workgroup is at or
// before it (a binary search; `wg` is the same for the whole workgroup).
fn tensor_of(wg: u32) -> u32 {
    var lo = 0u;
    var hi = table.count - 1u;
    while lo < hi {
        let mid = (lo + hi + 1u) / 2u;
        if table.tensors[mid].first_workgroup <= wg {
            lo = mid;
        } else {
            hi = mid - 1u;
        }
    }
    return lo;
}

// The invocation's workgroup and its tensor's table entry.
struct Owner {
    wg: u32,
    tensor: UpdateTensor,
}

fn owner(wid: vec3<u32>, nwg: vec3<u32>) -> Owner {
    let wg = wid.x + wid.y * nwg.x;
    return Owner(wg, table.tensors[tensor_of(min(wg, table.workgroups - 1u))]);
}

// The invocation's `k`th vec4, and whether it lies in its tensor.
fn element(o: Owner, lane: u32, k: u32) -> Element {
    let t = o.tensor;
    let local = ((o.wg - t.first_workgroup) * VEC4S_PER_INVOCATION + k) * WG_SIZE + lane;
    return Element(t.param_start + local, t.grad_start + local, local, t.len, t.weight_decay);
}

fn inside(o: Owner, e: Element) -> bool {
    return o.wg < table.workgroups && e.local < (e.len + 3u) / 4u;
}

fn decayed_grad(e: Element, w: vec4<f32>) -> vec4<f32> {
    return grad_at(e.grad) + e.weight_decay * w;
}

// The lanes of the vec4 that hold tensor elements, not padding. RMSProp divides by the
// root of its state, which is 0/0 in the padding when epsilon is 0: masking keeps it zero.
fn in_tensor(e: Element) -> vec4<bool> {
    return vec4<u32>(4u * e.local) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(e.len);
}

// SGD with momentum (PyTorch form: buf = m*buf + g), optionally Nesterov.
fn sgd_step(e: Element, w: vec4<f32>) -> vec4<f32> {
    let g = decayed_grad(e, w);
    let buf = hyper.momentum * state0_at(e.grad) + g;
    set_state0(e.grad, buf);
    let step = select(buf, g + hyper.momentum * buf, hyper.nesterov != 0u);
    return w - hyper.lr * step;
}

// RMSProp as TensorFlow defines it (the paper's recipe): epsilon inside the root and the
// learning rate inside the momentum accumulator.
//   ms = decay*ms + (1-decay)*g^2;  mom = momentum*mom + lr*g/sqrt(ms + eps);  w -= mom
fn rmsprop_tf_step(e: Element, w: vec4<f32>) -> vec4<f32> {
    let g = decayed_grad(e, w);
    let ms = hyper.decay * state0_at(e.grad) + (1.0 - hyper.decay) * g * g;
    set_state0(e.grad, ms);
    let step = select(vec4<f32>(0.0), hyper.lr * g * inverseSqrt(ms + hyper.eps), in_tensor(e));
    let mom = hyper.momentum * state1_at(e.grad) + step;
    set_state1(e.grad, mom);
    return w - mom;
}

// RMSProp as PyTorch defines it: epsilon outside the root, `decay` is PyTorch's alpha.
//   sq = alpha*sq + (1-alpha)*g^2;  d = g/(sqrt(sq) + eps);  buf = momentum*buf + d;  w -= lr*buf
fn rmsprop_torch_step(e: Element, w: vec4<f32>) -> vec4<f32> {
    let g = decayed_grad(e, w);
    let sq = hyper.decay * state0_at(e.grad) + (1.0 - hyper.decay) * g * g;
    set_state0(e.grad, sq);
    let d = select(vec4<f32>(0.0), g / (sqrt(sq) + hyper.eps), in_tensor(e));
    let buf = hyper.momentum * state1_at(e.grad) + d;
    set_state1(e.grad, buf);
    return w - hyper.lr * buf;
}

// Every rule's update (each returns the new parameter), the rule chosen by the table (the
// same for every invocation).
@compute @workgroup_size(WG_SIZE)
fn update(@builtin(workgroup_id) wid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) lane: u32) {
    let o = owner(wid, nwg);
    for (var k = 0u; k < VEC4S_PER_INVOCATION; k++) {
        let e = element(o, lane, k);
        if inside(o, e) {
            // The parameter is read once and written once: read again after the state's
            // stores, it was loaded twice (lavapipe cannot tell the bindings apart), and
            // the update took 5% longer (performance.md, 2026-12-06, forenoon).
            let w = param_at(e.param);
            var updated: vec4<f32>;
            switch table.rule {
                case RULE_SGD: { updated = sgd_step(e, w); }
                case RULE_RMSPROP_TF: { updated = rmsprop_tf_step(e, w); }
                default: { updated = rmsprop_torch_step(e, w); }
            }
            set_param(e.param, updated);
        }
    }
}
