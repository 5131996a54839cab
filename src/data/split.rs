//! The (train, validation) index split shared by [`ImageSet`](super::ImageSet) and
//! [`DataSource`](super::DataSource), so that both split the same way for a given seed.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// (train, validation) indices: `round(len * fraction)` for validation by a permutation seeded
/// with `seed`; `fraction` is clamped to `0..=1` (NaN counts as 0); both parts sorted.
pub(crate) fn split_indices(len: usize, fraction: f32, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    let validation_len = ((len as f64) * f64::from(fraction)).round() as usize;
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let (validation, train) = order.split_at_mut(validation_len.min(len));
    validation.sort_unstable();
    train.sort_unstable();
    (train.to_vec(), validation.to_vec())
}
