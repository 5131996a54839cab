//! Encoded image bytes to 8-bit pixels, by content rather than by file name: ImageNet holds
//! CMYK JPEGs, greyscale JPEGs and a PNG named `.JPEG`. A JPEG that ends before its
//! end-of-image marker is refused, as PIL refuses it ("image file is truncated"): the decoder
//! would otherwise fill the missing part with grey and a half-downloaded data set would train
//! silently on it.

use image::{DynamicImage, ImageFormat};

/// A decoded image: 8-bit, HWC, 1 (grey) or 3 (RGB) channels.
#[derive(Clone, Debug, PartialEq)]
pub struct Pixels {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Pixels {
    /// Grey or RGB as the image is; alpha is dropped, 16-bit samples become 8-bit (PIL's
    /// `convert('RGB')` does the same).
    pub fn from_dynamic(image: &DynamicImage) -> Pixels {
        let (width, height) = (image.width() as usize, image.height() as usize);
        let grey = !image.color().has_color();
        let (channels, data) = if grey {
            (1, image.to_luma8().into_raw())
        } else {
            (3, image.to_rgb8().into_raw())
        };
        Pixels {
            width,
            height,
            channels,
            data,
        }
    }
}

const JPEG_MAGIC: [u8; 3] = [0xFF, 0xD8, 0xFF];
const PNG_MAGIC: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Decodes JPEG or PNG bytes (grey, RGB, RGBA, CMYK; 8 or 16 bits). The error is the reason,
/// for the caller to attach to the file's name.
pub fn decode_image(bytes: &[u8]) -> Result<Pixels, String> {
    #[cfg(feature = "libjpeg-turbo")]
    if bytes.starts_with(&JPEG_MAGIC) {
        check_jpeg_complete(bytes)?;
        if let Some(pixels) = turbo::decode(bytes)? {
            return Ok(pixels);
        }
    }
    Ok(Pixels::from_dynamic(&decode_dynamic(bytes)?))
}

/// [`decode_image`] keeping the decoder's own pixel format (16-bit PNGs stay 16-bit).
pub fn decode_dynamic(bytes: &[u8]) -> Result<DynamicImage, String> {
    let format = if bytes.starts_with(&JPEG_MAGIC) {
        check_jpeg_complete(bytes)?;
        ImageFormat::Jpeg
    } else if bytes.starts_with(&PNG_MAGIC) {
        ImageFormat::Png
    } else if bytes.is_empty() {
        return Err("the file is empty".to_string());
    } else {
        return Err("neither a JPEG nor a PNG (by content)".to_string());
    };
    image::load_from_memory_with_format(bytes, format).map_err(|error| error.to_string())
}

/// Walks the JPEG's segments to its end-of-image marker. Segment lengths are skipped, and
/// entropy-coded data ends at the first 0xFF not followed by a stuffed zero or a restart
/// marker, so a thumbnail's end marker inside an APP segment does not count.
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), String> {
    const TRUNCATED: &str = "the JPEG is truncated (its data ends before the end-of-image marker)";
    let mut pos = 2;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        while bytes.get(pos) == Some(&0xFF) && bytes.get(pos + 1) == Some(&0xFF) {
            pos += 1;
        }
        let (Some(&0xFF), Some(&marker)) = (bytes.get(pos), bytes.get(pos + 1)) else {
            return Err(TRUNCATED.to_string());
        };
        match marker {
            0xD9 => return Ok(()),
            0x01 | 0xD0..=0xD7 => pos += 2,
            _ => {
                let length = match bytes.get(pos + 2..pos + 4) {
                    Some(&[high, low]) => usize::from(u16::from_be_bytes([high, low])),
                    _ => return Err(TRUNCATED.to_string()),
                };
                if length < 2 {
                    return Err(format!("the JPEG is corrupt (segment length {length})"));
                }
                pos += 2 + length;
                if marker == 0xDA {
                    pos = end_of_entropy_data(bytes, pos).ok_or(TRUNCATED)?;
                }
            }
        }
    }
}

/// Position of the marker that ends the entropy-coded data starting at `pos`.
fn end_of_entropy_data(bytes: &[u8], mut pos: usize) -> Option<usize> {
    while pos + 1 < bytes.len() {
        if bytes[pos] == 0xFF && !matches!(bytes[pos + 1], 0x00 | 0xD0..=0xD7) {
            return Some(pos);
        }
        pos += 1;
    }
    None
}

/// JPEG decoding with libjpeg-turbo, as PIL does it.
#[cfg(feature = "libjpeg-turbo")]
mod turbo {
    use std::cell::RefCell;

    use turbojpeg::{Colorspace, Decompressor, Image, PixelFormat};

    use super::Pixels;

    thread_local! {
        /// One decompressor per decoding thread, reused for every image.
        static DECOMPRESSOR: RefCell<Option<Decompressor>> = const { RefCell::new(None) };
    }

    /// `Ok(None)` hands the file to the image crate: CMYK and YCCK JPEGs (TurboJPEG does not
    /// convert them to RGB), and files for which libjpeg only warns (such as stray bytes
    /// before a marker), which PIL accepts but TurboJPEG turns into errors.
    pub(super) fn decode(bytes: &[u8]) -> Result<Option<Pixels>, String> {
        DECOMPRESSOR.with_borrow_mut(|slot| {
            let decompressor = match slot {
                Some(decompressor) => decompressor,
                None => slot.insert(Decompressor::new().map_err(|error| error.to_string())?),
            };
            let header = match decompressor.read_header(bytes) {
                Ok(header) => header,
                Err(error) => return Err(error.to_string()),
            };
            let (format, channels) = match header.colorspace {
                Colorspace::Gray => (PixelFormat::GRAY, 1),
                Colorspace::CMYK | Colorspace::YCCK => return Ok(None),
                _ => (PixelFormat::RGB, 3),
            };
            let (width, height) = (header.width, header.height);
            let mut data = vec![0; width * height * channels];
            let image = Image {
                pixels: data.as_mut_slice(),
                width,
                pitch: width * channels,
                height,
                format,
            };
            match decompressor.decompress(bytes, image) {
                Ok(()) => Ok(Some(Pixels {
                    width,
                    height,
                    channels,
                    data,
                })),
                Err(error) if error.to_string().contains("Corrupt JPEG data") => Ok(None),
                Err(error) => Err(error.to_string()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x ^ y) * 3) as u8])
        });
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
            .encode_image(&image)
            .expect("encode");
        bytes
    }

    #[test]
    fn complete_jpeg_decodes_and_every_cut_is_refused() {
        let bytes = jpeg(40, 30);
        let pixels = decode_image(&bytes).expect("complete JPEG");
        assert_eq!((pixels.width, pixels.height, pixels.channels), (40, 30, 3));
        for cut in [bytes.len() / 2, bytes.len() - 2, bytes.len() - 1, 10] {
            let error = decode_image(&bytes[..cut]).expect_err("cut JPEG");
            assert!(error.contains("truncated"), "cut at {cut}: {error}");
        }
    }

    #[test]
    fn trailing_bytes_after_the_end_marker_are_accepted() {
        let mut bytes = jpeg(16, 16);
        bytes.extend_from_slice(&[0, 0, 0, 0x0A]);
        decode_image(&bytes).expect("JPEG with trailing bytes");
    }

    #[test]
    fn unknown_content_is_refused_by_content() {
        assert!(decode_image(b"GIF89a....").unwrap_err().contains("neither"));
        assert!(decode_image(b"").unwrap_err().contains("empty"));
    }
}
