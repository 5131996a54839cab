//! One image file to one normalised network input, as a checkpoint's evaluation expects it
//! (timm's eval transform: resize the shorter side to `resolution / crop_pct` with bicubic
//! interpolation, crop the centre, normalise).

use std::path::Path;

use image::imageops::{self, FilterType};
use image::DynamicImage;

use super::error::DataError;
use super::files::decode_image_file;
use super::transform::Normalize;

/// How an image becomes the network's input.
#[derive(Clone, Debug, PartialEq)]
pub struct Preprocess {
    /// Side of the square crop fed to the network.
    pub resolution: usize,
    /// The shorter side is resized to `resolution / crop_pct`, then the centre is cropped;
    /// 1.0 resizes the shorter side straight to the resolution.
    pub crop_pct: f32,
    /// Channel count (1: luminance, 3: RGB) follows `normalize.mean.len()`.
    pub normalize: Normalize,
}

/// Decodes a JPEG or PNG (grey, RGB, RGBA; 8 or 16 bits; alpha dropped) into
/// `resolution x resolution x channels` normalised f32 values, HWC.
pub fn load_image(path: &Path, preprocess: &Preprocess) -> Result<Vec<f32>, DataError> {
    Ok(preprocess.apply(&decode_image_file(path)?))
}

impl Preprocess {
    /// The transform on a decoded image (any pixel format); computed in f32 so 16-bit
    /// images keep their precision.
    pub fn apply(&self, image: &DynamicImage) -> Vec<f32> {
        let side = self.resolution.max(1) as u32;
        let (w, h) = (image.width().max(1), image.height().max(1));
        // torchvision's Resize(int): the shorter side becomes `scale`, the other keeps the
        // aspect ratio (truncated).
        let scale = ((side as f32 / self.crop_pct.clamp(0.01, 1.0)).floor() as u32).max(side);
        let (rw, rh) = if w <= h {
            (scale, (scale as u64 * h as u64 / w as u64) as u32)
        } else {
            ((scale as u64 * w as u64 / h as u64) as u32, scale)
        };
        let resized = imageops::resize(&image.to_rgb32f(), rw, rh, FilterType::CatmullRom);
        // Centre crop with torchvision's rounding of the offsets.
        let top = ((rh - side) as f32 / 2.0).round() as u32;
        let left = ((rw - side) as f32 / 2.0).round() as u32;
        let crop = imageops::crop_imm(&resized, left, top, side, side).to_image();
        let channels = self.normalize.mean.len();
        let mut out = Vec::with_capacity((side * side) as usize * channels);
        for pixel in crop.pixels() {
            let [r, g, b] = pixel.0;
            if channels == 1 {
                // ITU-R 601 luma, as `image`'s own grey conversion.
                let luma = 0.299 * r + 0.587 * g + 0.114 * b;
                out.push(self.normalize_value(luma, 0));
            } else {
                for (c, v) in [r, g, b].into_iter().enumerate() {
                    out.push(self.normalize_value(v, c));
                }
            }
        }
        out
    }

    fn normalize_value(&self, value: f32, channel: usize) -> f32 {
        (value.clamp(0.0, 1.0) - self.normalize.mean[channel]) / self.normalize.std[channel]
    }
}
