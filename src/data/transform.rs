//! Pixel transforms shared by the loaders: channel conversion, resizing, augmentation and
//! normalisation.

use image::imageops::{self, FilterType};
use image::{ImageBuffer, Luma, Pixel, Rgb};
use rand::Rng;

/// Per-channel normalisation of `x / 255`: `(x / 255 - mean[c]) / std[c]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalize {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
}

impl Normalize {
    /// Mean 0, std 1: values `x / 255` in `0..=1`.
    pub fn none(channels: usize) -> Self {
        Normalize {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Mean 0.5, std 0.5: values `x / 127.5 - 1` in `-1..=1`.
    pub fn symmetric(channels: usize) -> Self {
        Normalize {
            mean: vec![0.5; channels],
            std: vec![0.5; channels],
        }
    }

    /// The normalised value of byte `value` in channel `channel`.
    pub fn apply(&self, value: u8, channel: usize) -> f32 {
        (f32::from(value) / 255.0 - self.mean[channel]) / self.std[channel]
    }
}

/// Random training augmentation, applied per image.
#[derive(Clone, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Random crop after zero padding (black, before normalisation) by this many pixels on every
    /// side; 0 = off.
    pub pad_crop: usize,
    /// Mirror left-right with probability 1/2.
    pub hflip: bool,
}

/// Where one image lands in the output: source pixel for output (y, x) is
/// `(y + offset_y, x' + offset_x)`, where `x' = width - 1 - x` when flipped and `x` otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Placement {
    pub offset_y: isize,
    pub offset_x: isize,
    pub flip: bool,
}

impl Augment {
    /// Draws one image's placement. Draws nothing when augmentation is off, so enabling one
    /// option never changes the random stream seen by the other in an unexpected way.
    pub(crate) fn draw(&self, rng: &mut impl Rng) -> Placement {
        let mut placement = Placement::default();
        if self.pad_crop > 0 {
            // Sampled as i64 (rand does not sample isize) so streams match across platforms.
            let pad = self.pad_crop as i64;
            placement.offset_y = rng.random_range(-pad..=pad) as isize;
            placement.offset_x = rng.random_range(-pad..=pad) as isize;
        }
        if self.hflip {
            placement.flip = rng.random_bool(0.5);
        }
        placement
    }
}

/// [`Normalize`] precomputed for every byte value: one lookup per output value instead of a
/// division, with results identical to [`Normalize::apply`].
pub(crate) struct NormalizeTable {
    per_channel: Vec<[f32; 256]>,
}

impl NormalizeTable {
    pub(crate) fn new(normalize: &Normalize) -> Self {
        NormalizeTable {
            per_channel: (0..normalize.mean.len())
                .map(|channel| std::array::from_fn(|byte| normalize.apply(byte as u8, channel)))
                .collect(),
        }
    }
}

/// Writes one `size x size x channels` u8 image into `out` as normalised f32, moved by `placement`;
/// pixels that come from outside the image are black (byte 0).
pub(crate) fn write_normalized(
    out: &mut [f32],
    pixels: &[u8],
    size: usize,
    placement: Placement,
    table: &NormalizeTable,
) {
    let channels = table.per_channel.len();
    let row_len = size * channels;
    let shifted = |coordinate: usize, offset: isize| {
        coordinate
            .checked_add_signed(offset)
            .filter(|&moved| moved < size)
    };
    let black: Vec<f32> = table.per_channel.iter().map(|lookup| lookup[0]).collect();
    for (y, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let source_row =
            shifted(y, placement.offset_y).map(|sy| &pixels[sy * row_len..][..row_len]);
        for (x, out_pixel) in out_row.chunks_exact_mut(channels).enumerate() {
            let mirrored_x = if placement.flip { size - 1 - x } else { x };
            let source_pixel = source_row
                .zip(shifted(mirrored_x, placement.offset_x))
                .map(|(row, sx)| &row[sx * channels..][..channels]);
            match source_pixel {
                Some(source_pixel) => {
                    for ((value, lookup), &byte) in out_pixel
                        .iter_mut()
                        .zip(&table.per_channel)
                        .zip(source_pixel)
                    {
                        *value = lookup[usize::from(byte)];
                    }
                }
                None => out_pixel.copy_from_slice(&black),
            }
        }
    }
}

/// Rec. 709 luma, the weights `image` uses for its own grey conversions, rounded to nearest;
/// the weights sum to 1, so grey pixels keep their exact value.
fn luminance(rgb: &[u8]) -> u8 {
    let weighted = 2126 * u32::from(rgb[0]) + 7152 * u32::from(rgb[1]) + 722 * u32::from(rgb[2]);
    ((weighted + 5000) / 10000) as u8
}

/// Converts HWC pixels between 1 and 3 channels: grey is replicated, RGB becomes luminance.
/// Callers validate channel counts (1 or 3); equal counts copy.
pub(crate) fn convert_channels(pixels: &[u8], from: usize, to: usize) -> Vec<u8> {
    match (from, to) {
        (1, 3) => pixels.iter().flat_map(|&grey| [grey, grey, grey]).collect(),
        (3, 1) => pixels.chunks_exact(3).map(luminance).collect(),
        _ => pixels.to_vec(),
    }
}

/// Resizes one HWC image (1 or 3 channels) with `image`'s triangle filter: bilinear when
/// enlarging, area-weighted when shrinking (so downscaling does not alias).
pub(crate) fn resize(
    pixels: &[u8],
    (height, width): (usize, usize),
    channels: usize,
    (new_height, new_width): (usize, usize),
) -> Vec<u8> {
    if channels == 1 {
        resize_as::<Luma<u8>>(pixels, (height, width), (new_height, new_width))
    } else {
        resize_as::<Rgb<u8>>(pixels, (height, width), (new_height, new_width))
    }
}

fn resize_as<P: Pixel<Subpixel = u8> + 'static>(
    pixels: &[u8],
    (height, width): (usize, usize),
    (new_height, new_width): (usize, usize),
) -> Vec<u8> {
    let image = ImageBuffer::<P, &[u8]>::from_raw(width as u32, height as u32, pixels)
        .expect("invariant: callers pass exactly height * width * channels bytes");
    imageops::resize(
        &image,
        new_width as u32,
        new_height as u32,
        FilterType::Triangle,
    )
    .into_raw()
}
