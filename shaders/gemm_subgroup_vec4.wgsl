// Replaces the element-access block of gemm_subgroup.wgsl (between its ACCESS markers) when
// A is contiguous along K, B and C along N, and K, N, the row strides and the K chunk are
// multiples of 4, as in every forward pointwise convolution and dense layer. A software
// rasteriser such as lavapipe runs one loop over the lanes per load or store instruction,
// whatever its width, so a vec4 costs about what a scalar does: a lane makes 6 loads per 4
// steps of K instead of 24, and 16 stores instead of 64. The kernel never touches the
// scalar views, so each binding is used through one type only.

@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> c4: array<vec4<f32>>;

fn load_a4(row_offset: u32, k: u32, k_last: u32) -> vec4<f32> {
    return a4[(row_offset + k) / 4u];
}

// Columns past N (lanes that will not store) read the last vec4 of the row.
fn load_b4_row(k: u32, k_last: u32, col: u32) -> vec4<f32> {
    return b4[(k * p.b_row_stride + min(col, p.n - 4u)) / 4u];
}

fn tile_bias(col: u32) -> vec4<f32> {
    if p.has_bias == 0u {
        return vec4<f32>(0.0);
    }
    return bias4[col / 4u];
}

// Row `row` of C at columns col .. col + 3 (all inside C), bias, accumulation, activation.
fn store_row(split: u32, row: u32, col: u32, bias: vec4<f32>, sum: vec4<f32>) {
    if row >= p.m {
        return;
    }
    let index = (split * p.m * p.n + row * p.n + col) / 4u;
    var value = sum + bias;
    if p.accumulate != 0u {
        value += c4[index];
    }
    c4[index] = activate4(value, p.act);
}
