// Optimizer updates, 4 parameter elements (one vec4) per invocation: a software rasteriser
// pays per load instruction, whatever its width. Parameter, gradient and state buffers are
// allocated in whole vec4s (gpu::storage_buffer), and the padding past `len` holds zeros,
// which every rule below maps to zeros. Weight decay is L2 added to
// the gradient (PyTorch's coupled form); the host sets it to zero for parameters that
// should not decay (depthwise filters, BN, biases by default).

struct ParamInfo {
    len: u32, weight_decay: f32, _unused0: u32, _unused1: u32,
}

// Shared by every parameter, rewritten each step (the learning rate changes).
struct Hyper {
    lr: f32, decay: f32, momentum: f32, eps: f32,
    nesterov: u32, _unused0: u32, _unused1: u32, _unused2: u32,
}

@group(0) @binding(0) var<uniform> info: ParamInfo;
@group(0) @binding(1) var<uniform> hyper: Hyper;
@group(0) @binding(2) var<storage, read_write> param: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> grad: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> state0: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> state1: array<vec4<f32>>;

fn decayed_grad(i: u32) -> vec4<f32> {
    return grad[i] + info.weight_decay * param[i];
}

// The lanes of vec4 `i` that hold tensor elements, not padding. RMSProp divides by the
// root of its state, which is 0/0 in the padding when epsilon is 0: masking keeps it zero.
fn in_tensor(i: u32) -> vec4<bool> {
    return vec4<u32>(4u * i) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(info.len);
}

// SGD with momentum (PyTorch form: buf = m*buf + g), optionally Nesterov.
@compute @workgroup_size(WG_SIZE)
fn sgd(@builtin(global_invocation_id) gid: vec3<u32>,
       @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= (info.len + 3u) / 4u {
        return;
    }
    let g = decayed_grad(i);
    let buf = hyper.momentum * state0[i] + g;
    state0[i] = buf;
    let step = select(buf, g + hyper.momentum * buf, hyper.nesterov != 0u);
    param[i] -= hyper.lr * step;
}

// RMSProp as TensorFlow defines it (the paper's recipe): epsilon inside the root and the
// learning rate inside the momentum accumulator.
//   ms = decay*ms + (1-decay)*g^2;  mom = momentum*mom + lr*g/sqrt(ms + eps);  w -= mom
@compute @workgroup_size(WG_SIZE)
fn rmsprop_tf(@builtin(global_invocation_id) gid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= (info.len + 3u) / 4u {
        return;
    }
    let g = decayed_grad(i);
    let ms = hyper.decay * state0[i] + (1.0 - hyper.decay) * g * g;
    state0[i] = ms;
    let step = select(vec4<f32>(0.0), hyper.lr * g * inverseSqrt(ms + hyper.eps), in_tensor(i));
    let mom = hyper.momentum * state1[i] + step;
    state1[i] = mom;
    param[i] -= mom;
}

// RMSProp as PyTorch defines it: epsilon outside the root, `decay` is PyTorch's alpha.
//   sq = alpha*sq + (1-alpha)*g^2;  d = g/(sqrt(sq) + eps);  buf = momentum*buf + d;  w -= lr*buf
@compute @workgroup_size(WG_SIZE)
fn rmsprop_torch(@builtin(global_invocation_id) gid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_index(gid, nwg);
    if i >= (info.len + 3u) / 4u {
        return;
    }
    let g = decayed_grad(i);
    let sq = hyper.decay * state0[i] + (1.0 - hyper.decay) * g * g;
    state0[i] = sq;
    let d = select(vec4<f32>(0.0), g / (sqrt(sq) + hyper.eps), in_tensor(i));
    let buf = hyper.momentum * state1[i] + d;
    state1[i] = buf;
    param[i] -= hyper.lr * buf;
}
