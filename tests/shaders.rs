//! Every WGSL file parses and validates with naga, and every entry point the graph uses
//! compiles into a pipeline on the real adapter.

mod common;

use mobilenet_wgpu::gpu::Shader;
use mobilenet_wgpu::{MobileNetV1Config, Preset};

#[test]
fn every_shader_validates_with_naga() {
    for shader in Shader::ALL {
        let entries = shader
            .validate()
            .unwrap_or_else(|e| panic!("{shader} failed naga validation:\n{e}"));
        assert!(!entries.is_empty(), "{shader} has no compute entry point");
    }
}

#[test]
fn every_entry_point_builds_a_pipeline() {
    let gpu = common::gpu();
    for shader in Shader::ALL {
        if !gpu.has_features(shader.needs_features()) {
            // Never selected on this adapter (see Gpu::subgroup_gemm); naga validates it above.
            println!(
                "{shader}: skipped, {} lacks {:?}",
                gpu.adapter().name,
                shader.needs_features()
            );
            continue;
        }
        for entry in shader.validate().expect("valid") {
            let entry: &'static str = Box::leak(entry.into_boxed_str());
            gpu.pipeline(shader, entry)
                .unwrap_or_else(|e| panic!("{shader}:{entry}: {e}"));
        }
    }
}

#[test]
fn every_pipeline_of_every_preset_compiles() {
    for preset in [Preset::Paper, Preset::Timm, Preset::Keras] {
        let config = MobileNetV1Config {
            alpha: 0.25,
            resolution: 32,
            ..MobileNetV1Config::preset(preset)
        };
        let model = config.build(2).expect("build");
        let plan = model.graph.compile(common::gpu()).expect("compile");
        // Stem (im2col, GEMM) + bn, 13 x (dw, bn, pw, bn), classifier, softmax: the last
        // layers are 1x1 at 32x32, and pooling one pixel runs nothing.
        assert_eq!(plan.dispatch_count(), 3 + 13 * 4 + 2);
        let folded = config.build_folded(2).expect("build folded");
        let plan = folded.graph.compile(common::gpu()).expect("compile folded");
        // Batchnorm folded into every convolution; the depthwise layers of blocks 7 to 13
        // (images of 2x2 and 1x1 pixels) run in the epilogue of the pointwise GEMM before,
        // and those of blocks 5 and 6 (4x4) where the adapter runs the subgroup tiles.
        let joined = if common::gpu().subgroup_gemm() { 9 } else { 7 };
        assert_eq!(plan.dispatch_count(), 2 + 13 * 2 + 2 - joined);
    }
}
