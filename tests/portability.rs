//! Every compute entry point of every shader variant, translated by naga for Metal (MSL),
//! DX12 (HLSL), Vulkan (SPIR-V, checked by spirv-val) and GL (GLSL, checked by
//! glslangValidator) at every language version wgpu 30 targets, with the options and binding
//! maps wgpu-hal passes (tests/translation/). Checks that every entry point translates where
//! its features exist, that the committed table (src/gpu/portability_table.rs, and
//! docs/portability.md) is what the translation gives, and that the tuner never offers a
//! kernel on a back end that cannot run it. `MOBILENET_BLESS=1` rewrites the table.

mod translation;

use mobilenet_wgpu::gpu::{Shader, KERNELS, TABLE_BACKENDS};
use mobilenet_wgpu::ops::{alternatives, Activation, BatchNorm, Depthwise, Dispatch, KernelCaps};
use mobilenet_wgpu::ops::{int8_pointwise, Int8Gemm, Int8Output, OpKind, Padding, Pointwise};
use mobilenet_wgpu::ops::{Slot, TrainSettings};
use mobilenet_wgpu::{MobileNetV1Config, Preset};
use std::collections::HashSet;
use std::path::Path;
use std::sync::OnceLock;
use translation::{table, Report};
use wgpu::Backend;

/// The translation, done once for all the tests of this file.
fn report() -> &'static Report {
    static REPORT: OnceLock<Report> = OnceLock::new();
    REPORT.get_or_init(|| {
        for version in translation::validators::versions() {
            println!("{version}");
        }
        translation::run()
    })
}

#[test]
fn every_entry_point_translates_wherever_its_features_exist() {
    let report = report();
    let failures = report.failures();
    let listed: Vec<String> = failures.iter().map(|f| format!("- {f}")).collect();
    assert!(
        failures.is_empty(),
        "{} failures (the table marks those back ends as not running them):\n{}",
        failures.len(),
        listed.join("\n")
    );
    for shader in Shader::ALL {
        let entries = report.entries.iter().filter(|e| e.shader == shader);
        assert!(entries.count() > 0, "{shader} has no compute entry point");
    }
}

#[test]
fn the_committed_table_is_what_naga_does() {
    let report = report();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bless = std::env::var_os(table::BLESS).is_some_and(|v| v == "1");
    let docs_path = root.join("docs/portability.md");
    let docs = std::fs::read_to_string(&docs_path).expect("docs/portability.md");
    let docs = table::with_generated(&docs, &table::markdown(report)).unwrap_or_else(|| {
        panic!(
            "docs/portability.md lacks the markers of its generated part: {} ... {}",
            table::BEGIN,
            table::END
        )
    });
    let problems: Vec<String> = [
        (
            root.join("src/gpu/portability_table.rs"),
            table::rust_source(report),
        ),
        (docs_path, docs),
    ]
    .iter()
    .filter_map(|(path, expected)| table::compare(path, expected, bless))
    .collect();
    assert!(
        problems.is_empty(),
        "{}\n\nIf the change is intended, regenerate both files with\n    \
         {}=1 cargo test --features mpi --test portability",
        problems.join("\n\n"),
        table::BLESS
    );
}

/// The dispatches of one op: inference forward, training forward and backward.
fn op_dispatches(kind: &OpKind, input: &[usize], output: &[usize]) -> Vec<Dispatch> {
    let train = TrainSettings::default();
    let mut all = kind.forward(input, output);
    all.extend(kind.forward_train(input, output, &train));
    all.extend(kind.backward(input, output, true, &train));
    all
}

/// Every dispatch the networks emit (all presets, folded or not; RGB with 1000 classes and
/// grey with 13, so that GEMMs come in vec4 and scalar forms with either operand
/// transposed), and 13-channel ops for the scalar forms of the others.
fn dispatches() -> Vec<Dispatch> {
    let mut all = Vec::new();
    for preset in [Preset::Paper, Preset::Timm, Preset::Keras] {
        for (classes, in_channels) in [(1000, 3), (13, 1)] {
            let config = MobileNetV1Config {
                alpha: 0.25,
                resolution: 32,
                classes,
                in_channels,
                ..MobileNetV1Config::preset(preset)
            };
            for model in [config.build(2), config.build_folded(2)] {
                let graph = model.expect("a small MobileNet").graph;
                for node in graph.nodes() {
                    let input = graph.shape(node.input).expect("input shape");
                    let output = graph.shape(node.output).expect("output shape");
                    all.extend(op_dispatches(&node.kind, input, output));
                }
            }
        }
    }
    let odd = [2, 5, 5, 13];
    let ops = [
        OpKind::Pointwise(Pointwise {
            out_channels: 13,
            fused: None,
        }),
        OpKind::Depthwise(Depthwise {
            kernel: 3,
            stride: 1,
            padding: Padding::Symmetric,
            fused: None,
        }),
        OpKind::BatchNorm(BatchNorm {
            eps: 1e-5,
            activation: Activation::Relu6,
        }),
    ];
    for op in &ops {
        all.extend(op_dispatches(op, &odd, &odd));
    }
    // A narrow pointwise layer's forward with the next batch norm's statistics, as the
    // training plan fuses it (`subgroup-rows` runs only these chunk walks).
    let narrow = [2, 4, 4, 8];
    let pointwise = OpKind::Pointwise(Pointwise {
        out_channels: 16,
        fused: None,
    });
    let forward = pointwise.forward(&narrow, &[2, 4, 4, 16]).remove(0);
    all.push(mobilenet_wgpu::ops::with_output_stats(&forward).expect("a plain forward GEMM"));
    // Its dX with the backward sums of a batch norm before it.
    let backward = pointwise.backward(&narrow, &[2, 4, 4, 16], true, &TrainSettings::default());
    all.extend(
        backward
            .iter()
            .filter_map(|d| mobilenet_wgpu::ops::with_input_sums(d, Activation::Relu)),
    );
    // The 3x3 depthwise backward of a grid of 1024 invocations, which runs in workgroups
    // of 64 (the small shapes above take its 16-wide entry points), at both strides.
    let wide = [1, 8, 8, 4096];
    for stride in [1, 2] {
        let op = Depthwise {
            kernel: 3,
            stride,
            padding: Padding::Symmetric,
            fused: None,
        };
        let output = op.output_shape(&wide).expect("a depthwise output");
        all.extend(op_dispatches(&OpKind::Depthwise(op), &wide, &output));
    }
    // The int8 GEMMs, the int8 dispatches with alternatives: pointwise and the classifier.
    all.push(int8_pointwise(&odd, 13, Int8Output::linear(0)));
    all.push(
        Int8Gemm {
            rows: 2,
            k: 64,
            n: 10,
        }
        .logits(Slot::Input, Slot::Output),
    );
    all
}

/// The kernels the tuner is offered for `dispatches` on an adapter with every capability
/// (subgroup GEMMs allowed, no limits) on `backend`: (shader, entry point, kernel name).
fn offered(
    dispatches: &[Dispatch],
    backend: Backend,
) -> HashSet<(Shader, &'static str, &'static str)> {
    let caps = KernelCaps {
        subgroup_gemm: true,
        int64: true,
        max_invocations_per_workgroup: u32::MAX,
        max_workgroup_storage_bytes: u32::MAX,
        backend,
    };
    dispatches
        .iter()
        .filter_map(|dispatch| alternatives(dispatch, &caps))
        .flat_map(|choices| choices.candidates)
        .map(|c| (c.dispatch.shader, c.dispatch.entry, c.name))
        .collect()
}

/// On each back end of the table the tuner offers exactly the candidates that translate
/// there: all of those, and none other. What it is offered on a back end the table does
/// not cover (every candidate) must reach every kernel, so that this covers each.
#[test]
fn candidates_offered_on_a_back_end_translate_there() {
    let report = report();
    let dispatches = dispatches();
    let everything = offered(&dispatches, Backend::BrowserWebGpu);
    let mut problems: Vec<String> = KERNELS
        .iter()
        .filter(|name| !everything.iter().any(|(_, _, n)| n == *name))
        .map(|name| format!("no dispatch here offers kernel `{name}`: add a shape that does"))
        .collect();
    for backend in TABLE_BACKENDS {
        let here = offered(&dispatches, backend);
        for &(shader, entry, name) in &everything {
            let runs = report
                .entry(shader, entry)
                .is_some_and(|e| report.runs_on(e, backend));
            let what = format!("`{name}` ({shader}, entry point `{entry}`)");
            match (here.contains(&(shader, entry, name)), runs) {
                (true, false) => problems.push(format!(
                    "{backend:?}: the tuner offers {what}, which does not translate there"
                )),
                (false, true) => problems.push(format!(
                    "{backend:?}: the tuner leaves out {what}, which translates there \
                     (src/gpu/portability_table.rs out of date?)"
                )),
                _ => {}
            }
        }
    }
    problems.sort();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    println!(
        "{} candidate kernels checked on {} back ends",
        everything.len(),
        TABLE_BACKENDS.len()
    );
}
