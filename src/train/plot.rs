//! What the run's pictures (`curves`, `confusion`) share: the embedded font, rendering
//! into an RGB buffer, PNG encoding and the atomic write, and the error naming the file.
//!
//! Text is drawn with a font embedded in the binary, so plotting works on headless machines
//! without system fonts or fontconfig.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::weights::{write_atomic, WeightsError};

/// DejaVu Sans cut down to ASCII and a few symbols; see `assets/fonts/README.md`.
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-subset.ttf");

/// The family plotters' default text styles ask for.
pub(super) const FONT_FAMILY: &str = "sans-serif";

/// Why a picture could not be written; messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot draw the {what} for `{}`: {message}", path.display())]
    Draw {
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("cannot encode the {what} for `{}` as PNG: {error}", path.display())]
    Encode {
        what: &'static str,
        path: PathBuf,
        error: png::EncodingError,
    },
    #[error(transparent)]
    Write(#[from] WeightsError),
}

pub(super) type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

pub(super) type DrawResult =
    Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

/// Draws a `size` picture with `draw` and writes it to `path` as an RGB PNG, atomically.
/// `what` names the picture in messages.
pub(super) fn write_png(
    path: &Path,
    what: &'static str,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<(), PlotError> {
    let draw_err = |message: String| PlotError::Draw {
        what,
        path: path.to_path_buf(),
        message,
    };
    if !font_registered() {
        return Err(draw_err(
            "the embedded font is not a valid TrueType font".into(),
        ));
    }
    let (width, height) = size;
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        draw(&root).map_err(|e| draw_err(e.to_string()))?;
        root.present().map_err(|e| draw_err(e.to_string()))?;
    }
    let png = encode_png(&rgb, width, height).map_err(|error| PlotError::Encode {
        what,
        path: path.to_path_buf(),
        error,
    })?;
    Ok(write_atomic(path, &png)?)
}

/// plotters keeps fonts in a process-wide table; registering once is enough.
pub(super) fn font_registered() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, FONT).is_ok()
    })
}

/// Width and height of `text` in pixels at `size` points in the embedded font; (0, 0)
/// when it cannot be measured (the font is checked before anything is drawn).
pub(super) fn text_size(text: &str, size: f64) -> (u32, u32) {
    if !font_registered() {
        return (0, 0);
    }
    (FONT_FAMILY, size)
        .into_font()
        .box_size(text)
        .unwrap_or((0, 0))
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
