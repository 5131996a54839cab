//! Pixel transforms shared by the loaders: channel conversion, resizing, augmentation and
//! normalisation.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use rand::Rng;

use super::decode::Pixels;

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
    /// Inception-style random resized crop instead of the evaluation view.
    #[serde(default)]
    pub random_resized_crop: Option<RandomResizedCrop>,
    /// Brightness, contrast and saturation each scaled by a factor drawn from
    /// `[1 - s, 1 + s]`; 0 = off.
    #[serde(default)]
    pub color_jitter: f32,
}

/// torchvision's `RandomResizedCrop`: a box covering a random fraction `scale` of the image's
/// area with an aspect ratio drawn log-uniformly from `ratio`, resized (bilinear) to the output.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RandomResizedCrop {
    pub scale: (f32, f32),
    pub ratio: (f32, f32),
}

impl Default for RandomResizedCrop {
    /// The ImageNet recipe's ranges: 8% to 100% of the area, aspect ratio 3/4 to 4/3.
    fn default() -> Self {
        RandomResizedCrop {
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
        }
    }
}

impl RandomResizedCrop {
    /// Explains ranges that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        let (s0, s1) = self.scale;
        let (r0, r1) = self.ratio;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return Err(format!(
                "crop scale ({s0}, {s1}) must satisfy 0 < min <= max <= 1"
            ));
        }
        if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
            return Err(format!(
                "crop aspect ratio ({r0}, {r1}) must satisfy 0 < min <= max"
            ));
        }
        Ok(())
    }

    /// Draws the box for a `width x height` image, as torchvision does: up to 10 tries at a
    /// random area and aspect ratio, then the centre crop with the ratio clamped to the range.
    pub(crate) fn draw(&self, width: usize, height: usize, rng: &mut impl Rng) -> CropBox {
        let (w, h) = (width as f64, height as f64);
        let area = w * h;
        let (log_r0, log_r1) = (f64::from(self.ratio.0).ln(), f64::from(self.ratio.1).ln());
        for _ in 0..10 {
            let target = area * rng.random_range(f64::from(self.scale.0)..=f64::from(self.scale.1));
            let aspect = rng.random_range(log_r0..=log_r1).exp();
            let crop_w = (target * aspect).sqrt().round();
            let crop_h = (target / aspect).sqrt().round();
            if crop_w >= 1.0 && crop_w <= w && crop_h >= 1.0 && crop_h <= h {
                let top = rng.random_range(0..=(h - crop_h) as u64) as f64;
                let left = rng.random_range(0..=(w - crop_w) as u64) as f64;
                return CropBox {
                    left,
                    top,
                    width: crop_w,
                    height: crop_h,
                };
            }
        }
        let image_ratio = w / h;
        let (crop_w, crop_h) = if image_ratio < f64::from(self.ratio.0) {
            (w, (w / f64::from(self.ratio.0)).round())
        } else if image_ratio > f64::from(self.ratio.1) {
            ((h * f64::from(self.ratio.1)).round(), h)
        } else {
            (w, h)
        };
        CropBox {
            left: ((w - crop_w) / 2.0).floor(),
            top: ((h - crop_h) / 2.0).floor(),
            width: crop_w.max(1.0),
            height: crop_h.max(1.0),
        }
    }
}

/// A region of the source image, in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct CropBox {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
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

    /// Draws the colour-jitter factors (brightness, contrast, saturation), if enabled.
    pub(crate) fn draw_jitter(&self, rng: &mut impl Rng) -> Option<[f32; 3]> {
        let s = self.color_jitter;
        (s > 0.0).then(|| std::array::from_fn(|_| rng.random_range((1.0 - s).max(0.0)..=1.0 + s)))
    }
}

/// torchvision's `ColorJitter` on 8-bit pixels, in a fixed order (brightness, contrast,
/// saturation): each blends with black, the mean grey, or the pixel's own grey.
pub(crate) fn color_jitter(
    pixels: &mut [u8],
    channels: usize,
    [brightness, contrast, saturation]: [f32; 3],
) {
    let clamp = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    for value in pixels.iter_mut() {
        *value = clamp(f32::from(*value) * brightness);
    }
    let grey = |pixel: &[u8]| {
        if channels == 3 {
            f32::from(luminance(pixel))
        } else {
            f32::from(pixel[0])
        }
    };
    let count = (pixels.len() / channels).max(1) as f32;
    let mean = pixels.chunks_exact(channels).map(grey).sum::<f32>() / count;
    for value in pixels.iter_mut() {
        *value = clamp(mean + (f32::from(*value) - mean) * contrast);
    }
    if channels == 3 {
        for pixel in pixels.chunks_exact_mut(3) {
            let own_grey = grey(pixel);
            for value in pixel {
                *value = clamp(own_grey + (f32::from(*value) - own_grey) * saturation);
            }
        }
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

/// ITU-R 601 luma in integers, as PIL's `convert('L')` and torchvision's `Grayscale` compute
/// it; the weights sum to 1, so grey pixels keep their exact value.
fn luminance(rgb: &[u8]) -> u8 {
    let weighted = 299 * u32::from(rgb[0]) + 587 * u32::from(rgb[1]) + 114 * u32::from(rgb[2]);
    ((weighted + 500) / 1000) as u8
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

/// How the view of an image is cut and scaled to the output square.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Geometry {
    /// Shorter side resized (bicubic, antialiased) to `floor(resolution / crop_pct)`, then the
    /// centre cropped: timm's and torchvision's evaluation transform.
    Centre { crop_pct: f32 },
    /// A box of the source cut out, then resized (bilinear) to the output: RandomResizedCrop.
    Box(CropBox),
}

/// The `resolution x resolution` view of `image` with `channels` (1 or 3) channels. Channels are
/// reduced before resizing and expanded after it, so the resize works on the fewest channels.
pub(crate) fn view(
    image: Pixels,
    channels: usize,
    resolution: usize,
    geometry: Geometry,
) -> Vec<u8> {
    let mut image = image;
    if channels < image.channels {
        image.data = convert_channels(&image.data, image.channels, channels);
        image.channels = channels;
    }
    let mut data = match geometry {
        Geometry::Centre { crop_pct } => centre_view(&image, resolution, crop_pct),
        Geometry::Box(region) => {
            resize_like_pillow(
                &cut(&image, region),
                (resolution, resolution),
                FilterType::Bilinear,
            )
            .data
        }
    };
    if channels > image.channels {
        data = convert_channels(&data, image.channels, channels);
    }
    data
}

/// torchvision's `Resize(floor(resolution / crop_pct))` (the other side keeps the aspect ratio,
/// truncated) then `CenterCrop(resolution)` with its rounding of the offsets.
fn centre_view(image: &Pixels, resolution: usize, crop_pct: f32) -> Vec<u8> {
    let (w, h) = (image.width.max(1), image.height.max(1));
    let short = ((resolution as f64 / f64::from(crop_pct.clamp(0.01, 1.0))).floor() as usize)
        .max(resolution);
    let (rw, rh) = if w <= h {
        (short, short * h / w)
    } else {
        (short * w / h, short)
    };
    let resized = resize_like_pillow(image, (rw, rh), FilterType::CatmullRom);
    // Python's round(): halves to even (269 -> 256 starts at row 6, not 7).
    let top = ((rh - resolution) as f64 / 2.0).round_ties_even();
    let left = ((rw - resolution) as f64 / 2.0).round_ties_even();
    let square = resolution as f64;
    cut(
        &resized,
        CropBox {
            left,
            top,
            width: square,
            height: square,
        },
    )
    .data
}

/// The pixels inside `region` (whole pixels; the box lies inside the image).
fn cut(image: &Pixels, region: CropBox) -> Pixels {
    let (left, top) = (region.left as usize, region.top as usize);
    let (width, height) = (region.width as usize, region.height as usize);
    let row = width * image.channels;
    let mut data = Vec::with_capacity(height * row);
    for y in top..top + height {
        let start = (y * image.width + left) * image.channels;
        data.extend_from_slice(&image.data[start..start + row]);
    }
    Pixels {
        width,
        height,
        channels: image.channels,
        data,
    }
}

/// Resizes with a convolution filter (support widened when shrinking, so downscaling does not
/// alias) in Pillow's order: rows first, rounded to 8 bits, then columns. fast_image_resize
/// does columns first, which moves a quarter of the pixels by a grey level against Pillow.
fn resize_like_pillow(
    image: &Pixels,
    (width, height): (usize, usize),
    filter: FilterType,
) -> Pixels {
    let rows_done = resize_once(image, (width, image.height), filter);
    resize_once(&rows_done, (width, height), filter)
}

thread_local! {
    /// One resizer per decoding thread: it keeps its scratch buffers between images.
    static RESIZER: std::cell::RefCell<Resizer> = std::cell::RefCell::new(Resizer::new());
}

/// One fast_image_resize call; with one side unchanged only the other side's pass runs.
fn resize_once(image: &Pixels, (width, height): (usize, usize), filter: FilterType) -> Pixels {
    if (width, height) == (image.width, image.height) {
        return image.clone();
    }
    let pixel_type = if image.channels == 1 {
        PixelType::U8
    } else {
        PixelType::U8x3
    };
    let source = ImageRef::new(
        image.width as u32,
        image.height as u32,
        &image.data,
        pixel_type,
    )
    .expect("invariant: a decoded image holds width * height * channels bytes");
    let mut out = Image::new(width as u32, height as u32, pixel_type);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(filter));
    RESIZER.with_borrow_mut(|resizer| {
        resizer
            .resize(&source, &mut out, &options)
            .expect("invariant: source and destination share the pixel type")
    });
    Pixels {
        width,
        height,
        channels: image.channels,
        data: out.into_vec(),
    }
}
