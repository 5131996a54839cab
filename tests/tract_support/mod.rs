//! What tests/onnx.rs and tests/onnx_int8.rs both need to run an exported file in tract.

use tract_onnx::prelude::*;

pub type TypedRunnableModel = std::sync::Arc<TypedSimplePlan>;

pub fn run_tract(model: &TypedRunnableModel, shape: &[usize], input: &[f32]) -> Vec<f32> {
    let tensor = Tensor::from_shape(shape, input).expect("input tensor");
    let outputs = model.run(tvec!(tensor.into())).expect("tract run");
    outputs[0]
        .to_plain_array_view::<f32>()
        .expect("f32 output")
        .iter()
        .copied()
        .collect()
}

/// NHWC to NCHW.
pub fn to_nchw(nhwc: &[f32], [n, h, w, c]: [usize; 4]) -> Vec<f32> {
    let mut out = vec![0.0; nhwc.len()];
    for b in 0..n {
        for y in 0..h {
            for x in 0..w {
                for ch in 0..c {
                    out[((b * c + ch) * h + y) * w + x] = nhwc[((b * h + y) * w + x) * c + ch];
                }
            }
        }
    }
    out
}

pub fn softmax_rows(logits: &[f32], classes: usize) -> Vec<f32> {
    logits
        .chunks(classes)
        .flat_map(|row| {
            let max = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
            let exp: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
            let sum: f64 = exp.iter().sum();
            exp.into_iter().map(move |e| (e / sum) as f32)
        })
        .collect()
}
