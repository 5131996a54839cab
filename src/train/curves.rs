//! Loss, accuracy and learning-rate curves of a training run as one PNG: loss (log scale,
//! with the training loss of every logged step thin behind the epoch points) and accuracy
//! (zoomed to the data) side by side, the learning rate in a thin strip below.

use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::epoch_metrics::EpochMetrics;
use super::plot::{write_png, Area, DrawResult, FONT_FAMILY};
use super::steps::StepMetrics;

/// Kept at its old name: the curves were the only picture once.
pub use super::plot::PlotError as CurvesError;

/// Image size in pixels: loss and accuracy side by side, the learning rate below.
pub const CURVES_SIZE: (u32, u32) = (1200, 640);

/// Height of the learning-rate strip at the bottom.
const LR_HEIGHT: u32 = 180;

/// More markers than this would hide the lines.
const MAX_MARKED_EPOCHS: usize = 40;

/// The narrowest accuracy axis, in percentage points: flat curves stay flat.
const MIN_ACCURACY_SPAN: f64 = 2.0;

const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const VAL_COLOR: RGBColor = RGBColor(255, 127, 14);
const TEST_COLOR: RGBColor = RGBColor(44, 160, 44);
const LR_COLOR: RGBColor = RGBColor(148, 103, 189);

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

/// A line to draw: legend name (none: no legend entry), colour, (epoch, value) points,
/// and whether it is a thin per-step line rather than one of epoch points.
struct Line {
    name: Option<&'static str>,
    color: RGBColor,
    points: Vec<(f64, f64)>,
    thin: bool,
}

/// What differs between the panels besides their axes.
struct PanelSpec<'a> {
    caption: &'static str,
    y_desc: &'static str,
    y_format: &'a dyn Fn(&f64) -> String,
    /// How many labels the y axis may carry (the log axis places its own).
    y_labels: usize,
    legend: SeriesLabelPosition,
    /// Drawn at epoch points (false: a line only).
    marked: bool,
    empty_note: &'static str,
}

/// Loss and accuracy per epoch for train / val / test (series that are None are skipped),
/// the training loss of every logged step (`steps`, from steps.jsonl) behind them, and
/// the learning rate, in one PNG of [`CURVES_SIZE`] written atomically. Works with zero
/// or one epoch and without steps.
///
/// Non-finite values (a diverged loss) are left out of the lines.
pub fn plot_curves(
    path: &Path,
    epochs: &[EpochMetrics],
    steps: &[StepMetrics],
    title: &str,
) -> Result<(), CurvesError> {
    write_png(path, "training curves", CURVES_SIZE, |root| {
        render(root, epochs, steps, title)
    })
}

/// The accuracy axis in percent: the values' span with a tenth of it as margin on either
/// side, at least 2 points wide, within 0..100. Non-finite values are ignored;
/// without values, 0..100.
pub fn accuracy_range(percents: &[f64]) -> Range<f64> {
    let Some((lo, hi)) = finite_bounds(percents.iter().copied()) else {
        return 0.0..100.0;
    };
    let span = (hi - lo).max(MIN_ACCURACY_SPAN);
    let pad = (span - (hi - lo)) / 2.0 + 0.1 * span;
    let (mut lo, mut hi) = (lo - pad, hi + pad);
    // Slide a window that sticks out past 0 or 100 back inside, keeping its width.
    if lo < 0.0 {
        hi -= lo;
        lo = 0.0;
    }
    if hi > 100.0 {
        lo -= hi - 100.0;
        hi = 100.0;
    }
    lo.max(0.0)..hi
}

/// The loss axis (log scale): the positive finite values with 15% room on either side;
/// without any, 0.1..10.
pub fn loss_range(losses: &[f64]) -> Range<f64> {
    let positive = losses.iter().copied().filter(|&v| v > 0.0);
    match finite_bounds(positive) {
        Some((lo, hi)) => lo / 1.15..hi * 1.15,
        None => 0.1..10.0,
    }
}

fn finite_bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .filter(|v| v.is_finite())
        .fold(None, |bounds, v| match bounds {
            None => Some((v, v)),
            Some((lo, hi)) => Some((v.min(lo), v.max(hi))),
        })
}

fn render(
    root: &Area<'_>,
    epochs: &[EpochMetrics],
    steps: &[StepMetrics],
    title: &str,
) -> DrawResult {
    root.fill(&WHITE)?;
    let body = if title.is_empty() {
        root.clone()
    } else {
        root.titled(title, (FONT_FAMILY, 24))?
    };
    let (_, body_height) = body.dim_in_pixel();
    let (top, lr_area) = body.split_vertically(body_height.saturating_sub(LR_HEIGHT));
    let (loss_area, acc_area) = top.split_horizontally(CURVES_SIZE.0 / 2);

    let x_range = epoch_range(epochs, steps);
    let marked = epochs.len() <= MAX_MARKED_EPOCHS;
    let empty_note = if epochs.is_empty() && steps.is_empty() {
        "no epochs yet"
    } else {
        "no finite values"
    };

    let look = PanelLook { marked, empty_note };
    loss_panel(&loss_area, epochs, steps, x_range.clone(), look)?;
    accuracy_panel(&acc_area, epochs, x_range.clone(), look)?;
    lr_panel(&lr_area, epochs, steps, x_range, empty_note)
}

/// What the three panels of one picture share.
#[derive(Clone, Copy)]
struct PanelLook {
    marked: bool,
    empty_note: &'static str,
}

/// Every loss line on a log scale.
fn loss_panel(
    area: &Area<'_>,
    epochs: &[EpochMetrics],
    steps: &[StepMetrics],
    x_range: Range<f64>,
    look: PanelLook,
) -> DrawResult {
    let loss = loss_lines(epochs, steps);
    let axis = loss_range(&line_values(&loss));
    let spec = PanelSpec {
        caption: "Loss (log scale)",
        y_desc: "loss",
        y_format: &|v| format_tick(*v),
        y_labels: 10,
        legend: SeriesLabelPosition::UpperRight,
        marked: look.marked,
        empty_note: look.empty_note,
    };
    let y = (axis.clone()).log_scale().with_key_points(log_ticks(axis));
    panel(area, &spec, x_range, y, &loss)
}

/// Train and test accuracy per epoch, in percent.
fn accuracy_panel(
    area: &Area<'_>,
    epochs: &[EpochMetrics],
    x_range: Range<f64>,
    look: PanelLook,
) -> DrawResult {
    let acc = epoch_lines(epochs, |s| s.acc, 100.0);
    let axis = accuracy_range(&line_values(&acc));
    let spec = PanelSpec {
        caption: "Accuracy",
        y_desc: "accuracy (%)",
        y_format: &|v| trim_zeros(format!("{v:.1}")),
        y_labels: 10,
        legend: SeriesLabelPosition::LowerRight,
        marked: look.marked,
        empty_note: look.empty_note,
    };
    panel(area, &spec, x_range, RangedCoordf64::from(axis), &acc)
}

fn line_values(lines: &[Line]) -> Vec<f64> {
    lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .collect()
}

/// The learning rate of every logged step (of every epoch's end, without steps) from 0.
fn lr_panel(
    area: &Area<'_>,
    epochs: &[EpochMetrics],
    steps: &[StepMetrics],
    x_range: Range<f64>,
    empty_note: &'static str,
) -> DrawResult {
    let points: Vec<(f64, f64)> = match steps.is_empty() {
        true => epochs.iter().map(|m| (m.epoch as f64, m.lr)).collect(),
        false => steps.iter().map(|s| (s.epoch, s.lr)).collect(),
    };
    let points: Vec<(f64, f64)> = points.into_iter().filter(|p| p.1.is_finite()).collect();
    let top = points.iter().map(|p| p.1).fold(0.0f64, f64::max);
    let y_range = 0.0..if top > 0.0 { top * 1.1 } else { 1.0 };
    let line = Line {
        name: None,
        color: LR_COLOR,
        points,
        thin: false,
    };
    let spec = PanelSpec {
        caption: "Learning rate",
        y_desc: "lr",
        y_format: &|v| format_lr(*v),
        y_labels: 4,
        legend: SeriesLabelPosition::UpperRight,
        marked: false,
        empty_note,
    };
    panel(area, &spec, x_range, RangedCoordf64::from(y_range), &[line])
}

/// The per-step training loss (thin, behind) and the loss of every split per epoch.
fn loss_lines(epochs: &[EpochMetrics], steps: &[StepMetrics]) -> Vec<Line> {
    let step_line = Line {
        name: Some("train (logged steps)"),
        color: step_color(),
        points: steps
            .iter()
            .map(|s| (s.epoch, s.loss))
            .filter(|p| p.1.is_finite() && p.1 > 0.0)
            .collect(),
        thin: true,
    };
    let mut lines = vec![step_line];
    lines.extend(
        epoch_lines(epochs, |s| s.loss, 1.0)
            .into_iter()
            .map(|mut line| {
                // The log axis has no room for zero or less.
                line.points.retain(|p| p.1 > 0.0);
                line
            }),
    );
    lines
}

/// The training colour washed out, so that the per-step line stays behind the epochs'.
fn step_color() -> RGBColor {
    let wash = |c: u8| (c as f64 * 0.45 + 255.0 * 0.55).round() as u8;
    RGBColor(
        wash(TRAIN_COLOR.0),
        wash(TRAIN_COLOR.1),
        wash(TRAIN_COLOR.2),
    )
}

/// One line per split with the value `get` picks, scaled (accuracy in percent).
fn epoch_lines(epochs: &[EpochMetrics], get: fn(&Split) -> Getter, scale: f64) -> Vec<Line> {
    SPLITS
        .iter()
        .map(|split| Line {
            name: Some(split.name),
            color: split.color,
            points: epochs
                .iter()
                .filter_map(|m| get(split)(m).map(|v| (m.epoch as f64, v * scale)))
                .filter(|(_, v)| v.is_finite())
                .collect(),
            thin: false,
        })
        .collect()
}

/// From the start of the first epoch shown (epoch `n` is plotted where it ends, at `n`)
/// to the end of the last, whole epochs, at least one wide.
fn epoch_range(epochs: &[EpochMetrics], steps: &[StepMetrics]) -> Range<f64> {
    let ends = epochs.iter().map(|m| m.epoch as f64);
    let starts = epochs.iter().map(|m| m.epoch as f64 - 1.0);
    let all = starts.chain(ends).chain(steps.iter().map(|s| s.epoch));
    let Some((lo, hi)) = finite_bounds(all) else {
        return 0.0..1.0;
    };
    let (lo, hi) = (lo.floor().max(0.0), hi.ceil());
    lo..hi.max(lo + 1.0)
}

/// Log-axis ticks at 1, 2, 5 (or finer) times powers of ten, as many as fit; a range too
/// narrow for any gets evenly spaced ticks instead.
fn log_ticks(range: Range<f64>) -> Vec<f64> {
    const MANTISSAS: [&[f64]; 4] = [
        &[1.0],
        &[1.0, 2.0, 5.0],
        &[1.0, 1.5, 2.0, 3.0, 5.0, 7.0],
        &[1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
    ];
    let (lo, hi) = (range.start, range.end);
    let ticks_with = |mantissas: &[f64]| -> Vec<f64> {
        let first = lo.log10().floor() as i32;
        let last = hi.log10().ceil() as i32;
        (first..=last)
            .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    let mut best = ticks_with(MANTISSAS[0]);
    if best.len() > 8 {
        // Many decades: every few powers of ten.
        let every = best.len().div_ceil(8);
        return best.into_iter().step_by(every).collect();
    }
    for mantissas in &MANTISSAS[1..] {
        if best.len() >= 4 {
            return best;
        }
        let ticks = ticks_with(mantissas);
        if ticks.len() > 8 {
            break;
        }
        best = ticks;
    }
    if best.len() >= 3 {
        return best;
    }
    let step = nice_step((hi - lo) / 4.0);
    let first = (lo / step).ceil() as i64;
    (first..)
        .map(|i| i as f64 * step)
        .take_while(|v| *v <= hi)
        .collect()
}

/// The 1, 2 or 5 times a power of ten nearest above `raw`.
fn nice_step(raw: f64) -> f64 {
    let scale = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * scale)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * scale)
}

/// Three significant digits at most, trailing zeros dropped: 0.25, 1.5, 2, 30.
fn format_tick(v: f64) -> String {
    let decimals = (2 - v.abs().log10().floor() as i32).clamp(0, 8) as usize;
    trim_zeros(format!("{v:.decimals$}"))
}

fn trim_zeros(text: String) -> String {
    match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.').to_string(),
        false => text,
    }
}

/// Learning rates: plain decimals down to 0.001, powers of ten below.
fn format_lr(v: f64) -> String {
    match v {
        0.0 => "0".into(),
        v if v.abs() < 1e-3 => format!("{v:.1e}"),
        v => format_tick(v),
    }
}

/// Whole epochs on the x axis; the ticks between them stay unlabelled.
fn format_epoch(v: &f64) -> String {
    match v.fract() == 0.0 {
        true => format!("{v:.0}"),
        false => String::new(),
    }
}

fn panel<Y>(
    area: &Area<'_>,
    spec: &PanelSpec<'_>,
    x_range: Range<f64>,
    y: Y,
    lines: &[Line],
) -> DrawResult
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(area)
        .caption(spec.caption, (FONT_FAMILY, 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range.clone(), y)?;
    let x_labels = ((x_range.end - x_range.start) as usize + 1).min(11);
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(spec.y_desc)
        .x_labels(x_labels)
        .y_labels(spec.y_labels)
        // Only the labelled grid lines: the fine ones in between grey out a small panel.
        .light_line_style(TRANSPARENT)
        .bold_line_style(BLACK.mix(0.12))
        .x_label_formatter(&format_epoch)
        .y_label_formatter(spec.y_format)
        .label_style((FONT_FAMILY, 14))
        .axis_desc_style((FONT_FAMILY, 15))
        .draw()?;

    let labelled = draw_lines(&mut chart, lines, spec.marked)?;
    if lines.iter().all(|l| l.points.is_empty()) {
        draw_centred_note(&chart.plotting_area().strip_coord_spec(), spec.empty_note)
    } else if labelled {
        chart
            .configure_series_labels()
            .position(spec.legend.clone())
            .label_font((FONT_FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .draw()?;
        Ok(())
    } else {
        Ok(())
    }
}

/// Draws each line with points (dots on the thick ones when `marked`); whether any has a
/// legend entry.
fn draw_lines<Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, BitMapBackend<'_>, Cartesian2d<RangedCoordf64, Y>>,
    lines: &[Line],
    marked: bool,
) -> Result<bool, DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>> {
    let mut labelled = false;
    for line in lines.iter().filter(|l| !l.points.is_empty()) {
        let color = line.color;
        let width = if line.thin { 1 } else { 2 };
        let series = chart.draw_series(LineSeries::new(
            line.points.iter().copied(),
            color.stroke_width(width),
        ))?;
        if let Some(name) = line.name {
            series.label(name).legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 20, y)], color.stroke_width(width))
            });
            labelled = true;
        }
        if marked && !line.thin {
            chart.draw_series(
                line.points
                    .iter()
                    .map(|&p| Circle::new(p, 3, color.filled())),
            )?;
        }
    }
    Ok(labelled)
}

/// Grey text in the middle of a panel that has nothing to draw.
fn draw_centred_note(plot: &Area<'_>, note: &str) -> DrawResult {
    let (width, height) = plot.dim_in_pixel();
    let grey = BLACK.mix(0.5);
    let style = TextStyle::from((FONT_FAMILY, 18).into_font())
        .color(&grey)
        .pos(Pos::new(HPos::Center, VPos::Center));
    let center = (width as i32 / 2, height as i32 / 2);
    plot.draw(&Text::new(note, center, style))?;
    Ok(())
}
