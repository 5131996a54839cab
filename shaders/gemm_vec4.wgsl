// Replaces the element-access block of gemm.wgsl (between its ACCESS markers) when
// C is contiguous along N, A along K or M, B along N or K (not both transposed), and K, N,
// the strides and the K chunk are multiples of 4: every forward pointwise convolution and
// dense layer, and their input and weight gradients. A software
// rasteriser such as lavapipe runs one loop over the lanes per load or store instruction,
// whatever its width, so a vec4 costs about what a scalar does (a subgroup-kernel lane
// makes 6 loads per 4 steps of K instead of 24, and 16 stores instead of 64); GPUs move
// 16-byte loads in one transaction. The kernels never touch the scalar views, so each
// binding is used through one type only. Serves both GEMM kernels.

// WORDS BEGIN
// A, B, C and the *_sums entry points' input as vec4s of floats (gemm_words64.wgsl reads
// them as 64-bit words instead).
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> c4: array<vec4<f32>>;
// The *_sums entry points: the raw input of the batch norm before this layer, [m][n].
@group(0) @binding(8) var<storage, read> sums_input4: array<vec4<f32>>;

fn a4_at(i: u32) -> vec4<f32> {
    return a4[i];
}

fn b4_at(i: u32) -> vec4<f32> {
    return b4[i];
}

fn c4_at(i: u32) -> vec4<f32> {
    return c4[i];
}

fn set_c4(i: u32, value: vec4<f32>) {
    c4[i] = value;
}

fn sums_input4_at(i: u32) -> vec4<f32> {
    return sums_input4[i];
}
// WORDS END
@group(0) @binding(3) var<storage, read> bias4: array<vec4<f32>>;
// Batch-norm scale and shift of A's producer, the first two [channels] planes of its
// statistics (see gemm.wgsl's prologue). A uniform block: every lane of a tile reads the
// same channels, and lavapipe loads a uniform once for all lanes where it loads storage
// once per lane (the forward GEMM ran 10-25% faster with the prologue on than from
// storage); GPUs serve it from their constant caches.
const PROLOGUE_VEC4S: u32 = 1024u;
@group(0) @binding(5) var<uniform> prologue4: array<vec4<f32>, PROLOGUE_VEC4S>;

// sums_input[row, col .. col + 3]; columns past N (lanes that store nothing) read the
// row's last vec4.
fn load_sums_input4(row: u32, col: u32) -> vec4<f32> {
    return sums_input4_at((row * p.n + min(col, p.n - 4u)) / 4u);
}

// C[row, col .. col + 3] as stored; columns past N read the row's last vec4.
fn load_c_row4(row: u32, col: u32) -> vec4<f32> {
    return c4_at((row * p.n + min(col, p.n - 4u)) / 4u);
}

// The prologue's scale and shift of A's columns k .. k + 3: A is read along K here
// (transposed A has kernels of its own, which use row_affine).
fn a_affine(k: u32, k_last: u32) -> Affine4 {
    if p.prologue == 0u {
        return Affine4();
    }
    return Affine4(prologue4[k / 4u], prologue4[(p.k + k) / 4u]);
}

// The prologue's scale and shift of A's rows 4g .. 4g + 3 (A transposed, as in dW).
fn row_affine(g: u32) -> Affine4 {
    if p.prologue == 0u {
        return Affine4();
    }
    return Affine4(prologue4[g], prologue4[p.m / 4u + g]);
}

fn load_a4(row: u32, k: u32, k_last: u32, affine: Affine4) -> vec4<f32> {
    return load_a4_as(row, k, k_last, affine, p.prologue);
}

fn load_a4_as(row: u32, k: u32, k_last: u32, affine: Affine4, prologue: u32) -> vec4<f32> {
    return prologued_as(a4_at((row * p.a_row_stride + k) / 4u), affine, prologue);
}

// Columns past N (lanes that will not store) read the last vec4 of B's rows. B is either
// contiguous along N (vec4s are columns of the block) or along K (B is a transposed matrix,
// as in dX = dY W^T: vec4s are rows of the block).
fn load_b4x4(k: u32, k_last: u32, col: u32, b_transposed: bool) -> mat4x4<f32> {
    let c = min(col, p.n - 4u);
    if b_transposed {
        let first = (c * p.b_col_stride + k) / 4u;
        let stride = p.b_col_stride / 4u;
        return transpose(mat4x4<f32>(b4_at(first), b4_at(first + stride), b4_at(first + 2u * stride),
                                     b4_at(first + 3u * stride)));
    }
    // Rows past K (A's zero padding) read row K - 1 instead.
    let rows = min(vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.k - 1u)) * p.b_row_stride;
    return mat4x4<f32>(b4_at((rows.x + c) / 4u), b4_at((rows.y + c) / 4u), b4_at((rows.z + c) / 4u),
                       b4_at((rows.w + c) / 4u));
}

fn tile_bias(col: u32) -> vec4<f32> {
    if p.has_bias == 0u {
        return vec4<f32>(0.0);
    }
    return bias4[col / 4u];
}

// Row `row` of C at columns col .. col + 3, if inside C: bias, accumulation, activation.
fn store_row(split: u32, row: u32, col: u32, bias: vec4<f32>, sum: vec4<f32>) {
    if row >= p.m || col >= p.n {
        return;
    }
    let index = (split * p.m * p.n + row * p.n + col) / 4u;
    var value = sum + bias;
    if p.accumulate != 0u {
        value += c4_at(index);
    }
    set_c4(index, activate4(value, p.act));
}

// The forward_*_dw entry points: the depthwise layer's weights [3][3][n] and bias [n].
@group(0) @binding(9) var<storage, read> dw_weight4: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> dw_bias4: array<vec4<f32>>;

// Tap `tap` (ky * 3 + kx) of the depthwise filter, or its bias (`tap` 9), at columns
// col .. col + 3.
fn dw_param4(tap: u32, col: u32) -> vec4<f32> {
    if tap == 9u {
        return dw_bias4[col / 4u];
    }
    return dw_weight4[(tap * p.n + col) / 4u];
}

// Row `row` of C at columns col .. col + 3 as given (col inside N).
fn store_c_row4(row: u32, col: u32, value: vec4<f32>) {
    set_c4((row * p.n + col) / 4u, value);
}
