//! One image file to one normalised network input, as a checkpoint's evaluation expects it
//! (timm's eval transform: resize the shorter side to `resolution / crop_pct` with bicubic
//! interpolation, crop the centre, normalise).

use std::path::Path;

use image::DynamicImage;

use super::decode::{decode_image, Pixels};
use super::error::DataError;
use super::files::read_file;
use super::loader::LoaderOptions;
use super::transform::{view, write_normalized, Geometry, Normalize, NormalizeTable, Placement};

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

/// Decodes a JPEG or PNG (grey, RGB, RGBA, CMYK; 8 or 16 bits; alpha dropped) into
/// `resolution x resolution x channels` normalised f32 values, HWC.
pub fn load_image(path: &Path, preprocess: &Preprocess) -> Result<Vec<f32>, DataError> {
    let pixels = decode_image(&read_file(path)?).map_err(|reason| DataError::Decode {
        path: path.to_path_buf(),
        reason,
    })?;
    Ok(preprocess.apply_pixels(pixels))
}

impl Preprocess {
    /// The evaluation transform on a decoded image: the loaders' own view and normalisation,
    /// so `predict`, `eval` and validation feed the network identical values.
    pub fn apply(&self, image: &DynamicImage) -> Vec<f32> {
        self.apply_pixels(Pixels::from_dynamic(image))
    }

    /// [`Preprocess::apply`] on pixels already decoded.
    pub fn apply_pixels(&self, pixels: Pixels) -> Vec<f32> {
        let channels = self.normalize.mean.len();
        let resolution = self.resolution.max(1);
        let geometry = Geometry::Centre {
            crop_pct: self.crop_pct,
        };
        let pixels = view(pixels, channels, resolution, geometry);
        let mut out = vec![0.0; pixels.len()];
        write_normalized(
            &mut out,
            &pixels,
            resolution,
            Placement::default(),
            &NormalizeTable::new(&self.normalize),
        );
        out
    }

    /// Loader options that apply this transform to every sample, in order.
    pub fn loader_options(&self, batch_size: usize) -> LoaderOptions {
        LoaderOptions {
            crop_pct: self.crop_pct,
            ..LoaderOptions::new(
                batch_size,
                self.resolution,
                self.normalize.mean.len(),
                self.normalize.clone(),
            )
        }
    }
}
