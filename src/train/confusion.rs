//! The confusion matrix as a picture (`confusion.png`): rows normalised to the share of each
//! true class, class names on both axes, a colour bar. Written by `train` after each
//! evaluation and by `eval`.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;

use super::plot::{text_size, write_png, Area, DrawResult, PlotError, FONT_FAMILY};

/// The picture's name in a run directory.
pub use super::run_files::CONFUSION;

/// The grid aims at this many pixels a side; cells stay between 1 and `MAX_CELL` pixels.
const GRID_TARGET: u32 = 640;
const MAX_CELL: u32 = 64;
/// Class names need cells at least this tall; smaller cells get class indices every few.
const MIN_NAMED_CELL: u32 = 16;
/// Cells this large carry their percentage.
const MIN_NUMBERED_CELL: u32 = 32;
/// Longer class names (ImageNet's run to 80 characters) are cut.
const MAX_NAME_CHARS: usize = 24;
const MARGIN: u32 = 16;
const TITLE_SIZE: f64 = 20.0;
const LABEL_SIZE: f64 = 14.0;
const AXIS_TITLE_SIZE: f64 = 15.0;
const CELL_TEXT_SIZE: f64 = 13.0;
const BAR_WIDTH: u32 = 16;
const GRID_LINE: RGBColor = RGBColor(225, 225, 225);

/// Where everything sits in the picture, in pixels, for a number of classes and their names.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfusionLayout {
    /// Width and height of the picture.
    pub size: (u32, u32),
    /// Top-left corner of the grid.
    pub origin: (u32, u32),
    /// Side of one cell.
    pub cell: u32,
    pub classes: usize,
    /// The labels on both axes: class names, or class indices every few classes.
    labels: Vec<(usize, String)>,
    /// Whether the column labels are turned to read upwards (too wide to lie flat).
    upright: bool,
}

impl ConfusionLayout {
    /// The layout for `classes` classes; `class_names` label the axes where the cells are
    /// tall enough (missing names are replaced by indices).
    pub fn new(classes: usize, class_names: &[String], title: &str) -> ConfusionLayout {
        let classes = classes.max(1);
        let cell = (GRID_TARGET / classes as u32).clamp(1, MAX_CELL);
        let labels = axis_labels(classes, class_names, cell);
        let widest = labels
            .iter()
            .map(|(_, text)| text_size(text, LABEL_SIZE).0)
            .max()
            .unwrap_or(0);
        let label_height = text_size("Xg", LABEL_SIZE).1;
        let upright = widest + 4 > cell;
        let axis_title = text_size("Xg", AXIS_TITLE_SIZE).1;
        let grid = cell * classes as u32;
        let left = MARGIN + axis_title + 10 + widest + 8;
        let top = MARGIN + text_size("Xg", TITLE_SIZE).1 + 16;
        let below = 8 + if upright { widest } else { label_height } + 10 + axis_title + MARGIN;
        let right = 20 + BAR_WIDTH + 6 + text_size("100%", LABEL_SIZE).0 + MARGIN;
        let width = (left + grid + right).max(text_size(title, TITLE_SIZE).0 + 2 * MARGIN);
        ConfusionLayout {
            size: (width, top + grid + below),
            origin: (left, top),
            cell,
            classes,
            labels,
            upright,
        }
    }

    /// The pixels of cell (`row`, `col`): left, top, right and bottom, the last two
    /// exclusive.
    pub fn cell_rect(&self, row: usize, col: usize) -> (u32, u32, u32, u32) {
        let x = self.origin.0 + col as u32 * self.cell;
        let y = self.origin.1 + row as u32 * self.cell;
        (x, y, x + self.cell, y + self.cell)
    }

    fn grid_side(&self) -> u32 {
        self.cell * self.classes as u32
    }
}

/// The names to write beside the grid, by class: all names where the cells are tall enough
/// for text, otherwise indices at a round interval.
fn axis_labels(classes: usize, class_names: &[String], cell: u32) -> Vec<(usize, String)> {
    if cell >= MIN_NAMED_CELL {
        return (0..classes)
            .map(|i| match class_names.get(i) {
                Some(name) => (i, short_name(name)),
                None => (i, i.to_string()),
            })
            .collect();
    }
    let every = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
        .into_iter()
        .find(|&k| k * cell as usize >= 2 * MIN_NAMED_CELL as usize)
        .unwrap_or(10_000);
    (0..classes)
        .step_by(every)
        .map(|i| (i, i.to_string()))
        .collect()
}

fn short_name(name: &str) -> String {
    match name.chars().count() > MAX_NAME_CHARS {
        true => name.chars().take(MAX_NAME_CHARS - 3).collect::<String>() + "...",
        false => name.to_string(),
    }
}

/// Each row divided by its sum: the share of a true class given each prediction. A row
/// without samples stays all zero.
pub fn normalized_rows(confusion: &[Vec<u64>]) -> Vec<Vec<f64>> {
    confusion
        .iter()
        .map(|row| {
            let total = row.iter().sum::<u64>().max(1) as f64;
            row.iter().map(|&v| v as f64 / total).collect()
        })
        .collect()
}

/// The colour of a cell holding `share` (0..=1): white to dark blue, as matplotlib's
/// "Blues" (the scikit-learn confusion matrix's default), interpolated between its stops.
pub fn cell_color(share: f64) -> [u8; 3] {
    const STOPS: [[f64; 3]; 5] = [
        [247.0, 251.0, 255.0],
        [198.0, 219.0, 239.0],
        [107.0, 174.0, 214.0],
        [33.0, 113.0, 181.0],
        [8.0, 48.0, 107.0],
    ];
    let t = if share.is_finite() {
        share.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let scaled = t * (STOPS.len() - 1) as f64;
    let i = (scaled.floor() as usize).min(STOPS.len() - 2);
    let f = scaled - i as f64;
    let mix = |c: usize| (STOPS[i][c] + (STOPS[i + 1][c] - STOPS[i][c]) * f).round() as u8;
    [mix(0), mix(1), mix(2)]
}

/// Draws `confusion` (`[true][predicted]` counts, as `EvalResult` holds them) with its rows
/// normalised, class names on the axes, into a PNG at `path`, written atomically.
pub fn plot_confusion(
    path: &Path,
    confusion: &[Vec<u64>],
    class_names: &[String],
    title: &str,
) -> Result<(), PlotError> {
    let layout = ConfusionLayout::new(confusion.len(), class_names, title);
    let shares = normalized_rows(confusion);
    write_png(path, "confusion matrix", layout.size, |root| {
        root.fill(&WHITE)?;
        let title_style = TextStyle::from((FONT_FAMILY, TITLE_SIZE).into_font())
            .pos(Pos::new(HPos::Center, VPos::Top));
        root.draw(&Text::new(
            title.to_string(),
            (layout.size.0 as i32 / 2, MARGIN as i32),
            title_style,
        ))?;
        draw_cells(root, &layout, &shares)?;
        draw_labels(root, &layout)?;
        draw_color_bar(root, &layout)
    })
}

fn rgb(color: [u8; 3]) -> RGBColor {
    RGBColor(color[0], color[1], color[2])
}

/// The cells, their percentages where they have room, and the grid's lines and frame.
fn draw_cells(root: &Area<'_>, layout: &ConfusionLayout, shares: &[Vec<f64>]) -> DrawResult {
    for (row, values) in shares.iter().enumerate() {
        for (col, &share) in values.iter().enumerate() {
            let (x0, y0, x1, y1) = layout.cell_rect(row, col);
            // A filled rectangle covers its first corner up to, not including, the second.
            let corners = [(x0 as i32, y0 as i32), (x1 as i32, y1 as i32)];
            root.draw(&Rectangle::new(corners, rgb(cell_color(share)).filled()))?;
            if layout.cell >= MIN_NUMBERED_CELL && share > 0.0 {
                let percent = share * 100.0;
                let text = match percent < 0.5 {
                    true => "<1".to_string(),
                    false => format!("{percent:.0}"),
                };
                let color = if share > 0.5 {
                    WHITE
                } else {
                    RGBColor(40, 40, 40)
                };
                let style = TextStyle::from((FONT_FAMILY, CELL_TEXT_SIZE).into_font())
                    .color(&color)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                let center = ((x0 + x1) as i32 / 2, (y0 + y1) as i32 / 2);
                root.draw(&Text::new(text, center, style))?;
            }
        }
    }
    let (left, top) = (layout.origin.0 as i32, layout.origin.1 as i32);
    let side = layout.grid_side() as i32;
    // Lines between cells where cells are large enough for them to help the eye.
    if layout.cell >= 8 {
        for i in 1..layout.classes as i32 {
            let at = i * layout.cell as i32;
            let style = GRID_LINE.stroke_width(1);
            root.draw(&PathElement::new(
                [(left + at, top), (left + at, top + side - 1)],
                style,
            ))?;
            root.draw(&PathElement::new(
                [(left, top + at), (left + side - 1, top + at)],
                style,
            ))?;
        }
    }
    let frame = [(left - 1, top - 1), (left + side, top + side)];
    root.draw(&Rectangle::new(frame, BLACK.mix(0.6).stroke_width(1)))
}

/// Class names (or indices) beside the rows and below the columns, and the axis titles.
fn draw_labels(root: &Area<'_>, layout: &ConfusionLayout) -> DrawResult {
    let (left, top) = (layout.origin.0 as i32, layout.origin.1 as i32);
    let side = layout.grid_side() as i32;
    let half = layout.cell as i32 / 2;
    let font = (FONT_FAMILY, LABEL_SIZE).into_font();
    let row_style = TextStyle::from(font.clone()).pos(Pos::new(HPos::Right, VPos::Center));
    // Turned a quarter left, the text's right end is anchored just below the grid.
    let col_style = match layout.upright {
        true => TextStyle::from(font.transform(FontTransform::Rotate270))
            .pos(Pos::new(HPos::Right, VPos::Center)),
        false => TextStyle::from(font).pos(Pos::new(HPos::Center, VPos::Top)),
    };
    for (i, text) in &layout.labels {
        let at = *i as i32 * layout.cell as i32 + half;
        root.draw(&Text::new(
            text.as_str(),
            (left - 8, top + at),
            row_style.clone(),
        ))?;
        root.draw(&Text::new(
            text.as_str(),
            (left + at, top + side + 8),
            col_style.clone(),
        ))?;
    }
    let widest_row = layout
        .labels
        .iter()
        .map(|(_, text)| text_size(text, LABEL_SIZE).0 as i32)
        .max()
        .unwrap_or(0);
    let axis_font = (FONT_FAMILY, AXIS_TITLE_SIZE).into_font();
    let y_title = TextStyle::from(axis_font.clone().transform(FontTransform::Rotate270))
        .pos(Pos::new(HPos::Center, VPos::Top));
    let y_at = (
        left - 8 - widest_row - 10 - text_size("Xg", AXIS_TITLE_SIZE).1 as i32,
        top + side / 2,
    );
    root.draw(&Text::new("true class", y_at, y_title))?;
    let x_title = TextStyle::from(axis_font).pos(Pos::new(HPos::Center, VPos::Bottom));
    let x_at = (left + side / 2, layout.size.1 as i32 - MARGIN as i32);
    root.draw(&Text::new("predicted class", x_at, x_title))
}

/// The colour scale beside the grid, from 0% at the bottom to 100% at the top.
fn draw_color_bar(root: &Area<'_>, layout: &ConfusionLayout) -> DrawResult {
    let side = layout.grid_side() as i32;
    let left = (layout.origin.0 + layout.grid_side() + 20) as i32;
    let top = layout.origin.1 as i32;
    for y in 0..side {
        let share = 1.0 - y as f64 / (side - 1).max(1) as f64;
        let color = rgb(cell_color(share)).filled();
        let row = [(left, top + y), (left + BAR_WIDTH as i32, top + y + 1)];
        root.draw(&Rectangle::new(row, color))?;
    }
    let frame = [(left - 1, top - 1), (left + BAR_WIDTH as i32, top + side)];
    root.draw(&Rectangle::new(frame, BLACK.mix(0.6).stroke_width(1)))?;
    let style = TextStyle::from((FONT_FAMILY, LABEL_SIZE).into_font());
    let x = left + BAR_WIDTH as i32 + 6;
    for (text, y, v) in [
        ("100%", top, VPos::Top),
        ("50%", top + side / 2, VPos::Center),
        ("0%", top + side, VPos::Bottom),
    ] {
        root.draw(&Text::new(text, (x, y), style.pos(Pos::new(HPos::Left, v))))?;
    }
    Ok(())
}
