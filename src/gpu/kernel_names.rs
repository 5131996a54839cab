//! The kernel candidates' names, which `MOBILENET_TUNE`, the tuner's cache and the reports
//! share. The device checks `MOBILENET_TUNE` against them when it opens; `ops` says which
//! dispatches each name can run.

/// The GEMM kernels by the names the tuner, its cache, `MOBILENET_TUNE` and the reports
/// use; the first that applies on an adapter is its default, which another must beat by
/// 10% to displace. The 32x32 tile comes first: of the lavapipe shapes where it and the
/// 16x32 one timed within 10% of each other, it was the faster on 58 of 83.
/// `subgroup-rows` (a lane per row of C, all its columns) takes only the training GEMMs
/// with batch-norm statistics or backward sums whose K and N are 16 or less.
pub const GEMM_KERNELS: [&str; 7] = [
    "subgroup-32x32",
    "subgroup-16x32",
    "subgroup-32x64",
    "subgroup-rows",
    "blocked-8x8",
    "tiled-64x64",
    "tiled-128x64",
];

/// The int8 GEMM kernels (pointwise, the stem, the classifier), the first that applies the
/// default: on 8-lane subgroups the bytes unpacked to i32 once per load ("widened") or
/// multiplied by dot4I8Packed, on 32x32 tiles (pointwise and the stem) or 16x32 ones,
/// elsewhere 8x8 blocks per invocation. The widened 32x32 tile comes first: at 224 batch 8
/// on lavapipe it took the int8 GEMMs from 106-112 to 97-101 ms against the 16x32 one.
/// Its f32 form (K of at most 1024) is for CPUs whose i32 vector multiplies are slow:
/// Intel's, where the tuner picks it.
pub const INT8_GEMM_KERNELS: [&str; 6] = [
    "subgroup-32x32-widened",
    "subgroup-32x32-widened-f32",
    "subgroup-16x32-widened",
    "subgroup-16x32-dot4",
    "subgroup-32x32-dot4",
    "blocked-8x8",
];

/// The forms of depthwise and batch-norm passes on channel counts divisible by 4: whole
/// vec4 accesses (the default) or the scalar kernel they were spliced from.
pub const ACCESS_KERNELS: [&str; 2] = ["vec4", "scalar"];

/// The vec4 depthwise and batch-norm kernels and the update moving their activations (or
/// vectors) as 64-bit words, offered where the device has 64-bit integers; there the
/// default (lavapipe loads storage word by word).
pub const WORDS64_KERNEL: &str = "words64";

/// Every kernel name `MOBILENET_TUNE` may force.
pub const KERNELS: [&str; 15] = [
    GEMM_KERNELS[0],
    GEMM_KERNELS[1],
    GEMM_KERNELS[2],
    GEMM_KERNELS[3],
    GEMM_KERNELS[4],
    GEMM_KERNELS[5],
    GEMM_KERNELS[6],
    ACCESS_KERNELS[0],
    ACCESS_KERNELS[1],
    WORDS64_KERNEL,
    INT8_GEMM_KERNELS[0],
    INT8_GEMM_KERNELS[1],
    INT8_GEMM_KERNELS[2],
    INT8_GEMM_KERNELS[3],
    INT8_GEMM_KERNELS[4],
];
