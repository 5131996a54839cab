use super::split::split_indices;

/// Images in memory, u8, each image `height * width * channels` in HWC order, images back to back.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub pixels: Vec<u8>,
    /// One label per image, each an index into `class_names`.
    pub labels: Vec<u32>,
    pub class_names: Vec<String>,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image: `height * width * channels`.
    pub fn image_size(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Pixels of image `i` (HWC). Panics if `i >= len()`, like slice indexing.
    pub fn image(&self, i: usize) -> &[u8] {
        let size = self.image_size();
        &self.pixels[i * size..(i + 1) * size]
    }

    /// The images at `indices`, in that order (repeats allowed). Panics on an index `>= len()`.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let mut pixels = Vec::with_capacity(indices.len() * self.image_size());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        self.with_images(pixels, indices.iter().map(|&i| self.labels[i]).collect())
    }

    /// The first `n` images (all of them if there are fewer).
    pub fn take(&self, n: usize) -> ImageSet {
        let n = n.min(self.len());
        self.with_images(
            self.pixels[..n * self.image_size()].to_vec(),
            self.labels[..n].to_vec(),
        )
    }

    /// A set with this set's geometry and class names but other images.
    fn with_images(&self, pixels: Vec<u8>, labels: Vec<u32>) -> ImageSet {
        ImageSet {
            height: self.height,
            width: self.width,
            channels: self.channels,
            pixels,
            labels,
            class_names: self.class_names.clone(),
        }
    }
}

/// Splits `set` into (train, validation) with `round(len * fraction)` images in validation,
/// chosen by a permutation seeded with `seed`. `fraction` is clamped to `0..=1` (NaN counts as 0).
/// Both parts keep the original image order, so the split depends only on `seed`.
pub fn split_validation(set: &ImageSet, fraction: f32, seed: u64) -> (ImageSet, ImageSet) {
    let (train, validation) = split_indices(set.len(), fraction, seed);
    (set.subset(&train), set.subset(&validation))
}
