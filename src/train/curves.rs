//! Loss and accuracy curves of a training run as one PNG.
//!
//! Text is drawn with a font embedded in the binary, so plotting works on headless machines
//! without system fonts or fontconfig.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::epoch_metrics::EpochMetrics;
use crate::weights::{write_atomic, WeightsError};

/// Image size in pixels: two panels side by side.
pub const CURVES_SIZE: (u32, u32) = (1200, 450);

/// DejaVu Sans cut down to ASCII and a few symbols; see `assets/fonts/README.md`.
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");

/// The family plotters' default text styles ask for.
const FONT_FAMILY: &str = "sans-serif";

/// More markers than this would hide the lines.
const MAX_MARKED_EPOCHS: usize = 40;

const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(255, 127, 14);
const TEST_COLOR: RGBColor = RGBColor(44, 160, 44);

type Getter = fn(&EpochMetrics) -> Option<f64>;

/// One data split: its legend name, colour, and where its loss and accuracy are.
struct Split {
    name: &'static str,
    color: RGBColor,
    loss: Getter,
    acc: Getter,
}

const SPLITS: [Split; 3] = [
    Split {
        name: "train",
        color: TRAIN_COLOR,
        loss: |m| Some(m.train_loss),
        acc: |m| Some(m.train_acc),
    },
    Split {
        name: "val",
        color: VAL_COLOR,
        loss: |m| m.val_loss,
        acc: |m| m.val_acc,
    },
    Split {
        name: "test",
        color: TEST_COLOR,
        loss: |m| m.test_loss,
        acc: |m| m.test_acc,
    },
];

/// A line to draw: legend name, colour, (epoch, value) points.
type Series = (&'static str, RGBColor, Vec<(i64, f64)>);

/// What differs between the loss and the accuracy panel.
struct PanelSpec {
    caption: &'static str,
    y_desc: &'static str,
    y_range: Range<f64>,
    /// `None`: plotters' default, which adapts the decimals to the range.
    y_format: Option<fn(&f64) -> String>,
    legend: SeriesLabelPosition,
}

/// Why the curves could not be written; messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum CurvesError {
    #[error("cannot draw the training curves for `{}`: {message}", path.display())]
    Draw { path: PathBuf, message: String },
    #[error("cannot encode the training curves for `{}` as PNG: {error}", path.display())]
    Encode {
        path: PathBuf,
        error: png::EncodingError,
    },
    #[error(transparent)]
    Write(#[from] WeightsError),
}

/// Two panels side by side in one PNG (e.g. 1200x450): loss per epoch and accuracy (%) per
/// epoch, one line each for train / val / test (skip series that are None), axis labels,
/// legend, title. Written atomically (render to a temp path or buffer, then rename). Works
/// with zero or one epoch without panicking (one epoch: draw points).
///
/// Non-finite values (a diverged loss) are left out of the lines.
pub fn plot_curves(path: &Path, epochs: &[EpochMetrics], title: &str) -> Result<(), CurvesError> {
    let draw_err = |message: String| CurvesError::Draw {
        path: path.to_path_buf(),
        message,
    };
    if !font_registered() {
        return Err(draw_err(
            "the embedded font is not a valid TrueType font".into(),
        ));
    }

    let (width, height) = CURVES_SIZE;
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, CURVES_SIZE).into_drawing_area();
        render(&root, epochs, title).map_err(|e| draw_err(e.to_string()))?;
        root.present().map_err(|e| draw_err(e.to_string()))?;
    }
    let png = encode_png(&rgb, width, height).map_err(|error| CurvesError::Encode {
        path: path.to_path_buf(),
        error,
    })?;
    Ok(write_atomic(path, &png)?)
}

/// plotters keeps fonts in a process-wide table; registering once is enough.
fn font_registered() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_ok()
    })
}

type DrawResult =
    Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

fn render(
    root: &DrawingArea<BitMapBackend<'_>, Shift>,
    epochs: &[EpochMetrics],
    title: &str,
) -> DrawResult {
    root.fill(&WHITE)?;
    let body = if title.is_empty() {
        root.clone()
    } else {
        root.titled(title, (FONT_FAMILY, 24))?
    };
    let (loss_area, acc_area) = body.split_horizontally(CURVES_SIZE.0 / 2);

    // Accuracies are fractions; the panel shows percent.
    let series = |get: fn(&Split) -> Getter, scale: f64| -> Vec<Series> {
        SPLITS
            .iter()
            .map(|split| {
                let points = epochs
                    .iter()
                    .filter_map(|m| get(split)(m).map(|v| (m.epoch as i64, v * scale)))
                    .filter(|(_, v)| v.is_finite())
                    .collect();
                (split.name, split.color, points)
            })
            .collect()
    };
    let loss = series(|s| s.loss, 1.0);
    let acc = series(|s| s.acc, 100.0);

    let max_loss = loss
        .iter()
        .flat_map(|(_, _, points)| points.iter().map(|&(_, v)| v))
        .fold(0.0f64, f64::max);
    let loss_panel = PanelSpec {
        caption: "Loss",
        y_desc: "loss",
        y_range: 0.0..if max_loss > 0.0 { max_loss * 1.05 } else { 1.0 },
        y_format: None,
        legend: SeriesLabelPosition::UpperRight,
    };
    let acc_panel = PanelSpec {
        caption: "Accuracy",
        y_desc: "accuracy (%)",
        y_range: 0.0..100.0,
        y_format: Some(|v| format!("{v:.0}")),
        legend: SeriesLabelPosition::LowerRight,
    };
    let x_range = epoch_range(epochs);
    let marked = epochs.len() <= MAX_MARKED_EPOCHS;
    let empty_note = if epochs.is_empty() {
        "no epochs yet"
    } else {
        "no finite values"
    };
    panel(
        &loss_area,
        loss_panel,
        x_range.clone(),
        &loss,
        marked,
        empty_note,
    )?;
    panel(&acc_area, acc_panel, x_range, &acc, marked, empty_note)?;
    Ok(())
}

/// The epochs shown, padded so that a single epoch sits inside the plot. Integer coordinates
/// keep the axis labels on whole epochs.
fn epoch_range(epochs: &[EpochMetrics]) -> Range<i64> {
    let first = epochs.iter().map(|m| m.epoch).min().unwrap_or(1) as i64;
    let last = epochs.iter().map(|m| m.epoch).max().unwrap_or(1) as i64;
    if last > first {
        first..last
    } else {
        first - 1..first + 1
    }
}

fn panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    spec: PanelSpec,
    x_range: Range<i64>,
    series: &[Series],
    marked: bool,
    empty_note: &str,
) -> DrawResult {
    let mut chart = ChartBuilder::on(area)
        .caption(spec.caption, (FONT_FAMILY, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range, spec.y_range)?;
    let mut mesh = chart.configure_mesh();
    if let Some(format) = &spec.y_format {
        mesh.y_label_formatter(format);
    }
    mesh.x_desc("epoch")
        .y_desc(spec.y_desc)
        .x_labels(10)
        .label_style((FONT_FAMILY, 14))
        .axis_desc_style((FONT_FAMILY, 15))
        .draw()?;

    let mut labelled = false;
    for (name, color, points) in series.iter().filter(|(_, _, p)| !p.is_empty()) {
        let color = *color;
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        if marked {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        labelled = true;
    }
    if !labelled {
        let plot = chart.plotting_area().strip_coord_spec();
        let (width, height) = plot.dim_in_pixel();
        let grey = BLACK.mix(0.5);
        let style = TextStyle::from((FONT_FAMILY, 18).into_font())
            .color(&grey)
            .pos(Pos::new(HPos::Center, VPos::Center));
        let center = (width as i32 / 2, height as i32 / 2);
        plot.draw(&Text::new(empty_note, center, style))?;
    } else {
        chart
            .configure_series_labels()
            .position(spec.legend)
            .label_font((FONT_FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;
    }
    Ok(())
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}
