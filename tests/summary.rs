//! Parameter and mult-add counts against the paper's tables (no GPU needed).

use mobilenet_wgpu::{MobileNetV1Config, Preset};

fn counts(alpha: f32, resolution: usize) -> (u64, f64) {
    let config = MobileNetV1Config {
        alpha,
        resolution,
        ..MobileNetV1Config::preset(Preset::Paper)
    };
    let summary = config.build(1).unwrap().summary();
    (summary.trainable_params, summary.mult_adds as f64 / 1e6)
}

#[test]
fn full_model_matches_the_paper_exactly() {
    let (params, mult_adds) = counts(1.0, 224);
    assert_eq!(params, 4_231_976);
    assert_eq!(mult_adds.round(), 569.0);
}

#[test]
fn width_multipliers_match_table_6() {
    // (alpha, paper mult-adds in millions, paper params in millions)
    for (alpha, paper_mult_adds, paper_params) in
        [(0.75, 325.0, 2.6), (0.5, 149.0, 1.3), (0.25, 41.0, 0.5)]
    {
        let (params, mult_adds) = counts(alpha, 224);
        assert!(
            (mult_adds - paper_mult_adds).abs() < 1.0,
            "alpha {alpha}: {mult_adds:.1}M mult-adds, paper {paper_mult_adds}M"
        );
        assert!(
            ((params as f64 / 1e6) - paper_params).abs() < 0.05,
            "alpha {alpha}: {params} params, paper {paper_params}M"
        );
    }
}

#[test]
fn resolutions_match_table_7() {
    for (resolution, paper_mult_adds) in [(192, 418.0), (160, 290.0), (128, 186.0)] {
        let (params, mult_adds) = counts(1.0, resolution);
        assert_eq!(params, 4_231_976, "parameters do not depend on resolution");
        assert!(
            (mult_adds - paper_mult_adds).abs() < 1.0,
            "res {resolution}: {mult_adds:.1}M, paper {paper_mult_adds}M"
        );
    }
}

#[test]
fn pointwise_share_matches_table_2() {
    let summary = MobileNetV1Config::preset(Preset::Paper)
        .build(1)
        .unwrap()
        .summary();
    let pointwise = summary.mult_adds_of("PointwiseConv2d");
    let share = pointwise as f64 / summary.mult_adds as f64 * 100.0;
    assert!((share - 94.86).abs() < 0.1, "1x1 share {share:.2}%");
}

#[test]
fn summary_table_shows_every_layer() {
    let summary = MobileNetV1Config::preset(Preset::Paper)
        .build(1)
        .unwrap()
        .summary();
    let text = summary.to_string();
    assert_eq!(summary.rows.len(), 2 + 13 * 4 + 3);
    assert!(text.contains("Trainable params:     4,231,976"), "{text}");
    assert!(
        text.contains("blocks.13.pw") && text.contains("(7, 7, 1024)"),
        "{text}"
    );
}

#[test]
fn invalid_configs_are_rejected_with_reasons() {
    for (config, needle) in [
        (
            MobileNetV1Config {
                alpha: 0.0,
                ..Default::default()
            },
            "alpha",
        ),
        (
            MobileNetV1Config {
                classes: 0,
                ..Default::default()
            },
            "classes",
        ),
        (
            MobileNetV1Config {
                stem_stride: 3,
                ..Default::default()
            },
            "stem stride",
        ),
        (
            MobileNetV1Config {
                resolution: 0,
                ..Default::default()
            },
            "resolution",
        ),
    ] {
        let err = config.build(1).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}
