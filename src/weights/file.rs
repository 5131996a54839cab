//! Encoding and decoding of safetensors files.
//!
//! Saving writes the header itself instead of calling `safetensors::serialize`, because that
//! sorts tensors by dtype and name, and the model wants its own order kept in the file.
//! Loading uses the crate's header parser and validation.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use half::{bf16, f16};
use safetensors::tensor::TensorInfo;
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use serde_json::{json, Map, Value};

use super::WeightsError;

/// One tensor as the model uses it: row-major f32 values.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

/// Everything usable in a safetensors file, tensors in file (data offset) order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadedFile {
    pub tensors: Vec<NamedTensor>,
    /// The header's `__metadata__` map (empty when the file has none).
    pub metadata: BTreeMap<String, String>,
    /// Integer (or bool) tensors that are not weights, e.g. PyTorch's `num_batches_tracked` (I64): (name, dtype as text).
    pub skipped: Vec<(String, String)>,
}

/// One tensor as stored: its dtype and its values' little-endian bytes, row-major.
#[doc(hidden)]
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// A safetensors file as stored: tensors in file order and the header's metadata.
#[doc(hidden)]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawFile {
    pub tensors: Vec<RawTensor>,
    pub metadata: BTreeMap<String, String>,
}

/// The `format` metadata of the int8 files `mobilenet quantize` writes; float loaders
/// refuse files that carry it.
pub const INT8_FORMAT: &str = "mobilenet-wgpu-int8";

/// A JSON value of a safetensors file's metadata (checkpoints and int8 files keep their
/// configuration this way), or what is wrong with it.
pub fn parse_metadata<T: serde::de::DeserializeOwned>(
    meta: &BTreeMap<String, String>,
    key: &str,
) -> Result<T, String> {
    let text = meta
        .get(key)
        .ok_or_else(|| format!("metadata `{key}` is missing"))?;
    serde_json::from_str(text).map_err(|e| format!("metadata `{key}` is unreadable: {e}"))
}

/// [`crate::atomic_file::write_atomic`], failing with this module's error (which adds a
/// next step to the common I/O failures).
#[doc(hidden)]
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WeightsError> {
    Ok(crate::atomic_file::write_atomic(path, bytes)?)
}

/// The header key that holds string metadata instead of a tensor.
const METADATA_KEY: &str = "__metadata__";

/// Bytes before the JSON header: its length as little-endian u64.
const HEADER_SIZE_LEN: usize = 8;

/// The safetensors crate rejects longer headers; a larger header size means "not safetensors".
const MAX_HEADER_LEN: u64 = 100_000_000;

/// F32 little-endian, tensors in the given order, metadata in the safetensors header
/// `__metadata__`. Atomic (temp + fsync + rename).
///
/// Each tensor is `(name, shape, values)` with row-major values; names must be unique and
/// `values.len()` must equal the product of `shape`. On error nothing is written.
pub fn save_safetensors(
    path: &Path,
    tensors: &[(&str, &[usize], &[f32])],
    metadata: &BTreeMap<String, String>,
) -> Result<(), WeightsError> {
    let bytes = encode(path, tensors, metadata)?;
    write_atomic(path, &bytes)
}

fn encode(
    path: &Path,
    tensors: &[(&str, &[usize], &[f32])],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, WeightsError> {
    let raw: Vec<RawTensor> = tensors
        .iter()
        .map(|&(name, shape, values)| RawTensor {
            name: name.to_string(),
            dtype: Dtype::F32,
            shape: shape.to_vec(),
            bytes: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        })
        .collect();
    encode_raw(path, &raw, metadata)
}

/// [`save_safetensors`] for tensors of any dtype, already encoded little-endian (the int8
/// file of `quant` holds I8, I32 and F32 tensors). Same order, checks and atomic write.
#[doc(hidden)]
pub fn save_safetensors_raw(
    path: &Path,
    tensors: &[RawTensor],
    metadata: &BTreeMap<String, String>,
) -> Result<(), WeightsError> {
    let bytes = encode_raw(path, tensors, metadata)?;
    write_atomic(path, &bytes)
}

fn encode_raw(
    path: &Path,
    tensors: &[RawTensor],
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, WeightsError> {
    let invalid = |tensor: &str, problem: String| WeightsError::InvalidTensor {
        path: path.to_path_buf(),
        tensor: tensor.to_string(),
        problem,
    };

    let mut header = Map::new();
    if !metadata.is_empty() {
        header.insert(METADATA_KEY.to_string(), json!(metadata));
    }
    let mut offset = 0usize;
    for tensor in tensors {
        let (name, shape) = (tensor.name.as_str(), &tensor.shape);
        if let Some(problem) = raw_tensor_problem(tensor) {
            return Err(invalid(name, problem));
        }
        let end = offset + tensor.bytes.len();
        let info = json!({
            "dtype": tensor.dtype.to_string(),
            "shape": shape,
            "data_offsets": [offset, end],
        });
        if header.insert(name.to_string(), info).is_some() {
            return Err(invalid(
                name,
                "appears twice; tensor names must be unique".into(),
            ));
        }
        offset = end;
    }

    let mut header_bytes = Value::Object(header).to_string().into_bytes();
    // The format recommends padding the header with spaces so tensor data starts 8-byte aligned.
    header_bytes.resize(header_bytes.len().next_multiple_of(8), b' ');

    let mut out = Vec::with_capacity(HEADER_SIZE_LEN + header_bytes.len() + offset);
    out.extend_from_slice(&(header_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    for tensor in tensors {
        out.extend_from_slice(&tensor.bytes);
    }
    Ok(out)
}

/// What makes `tensor` unwritable on its own: the reserved metadata name, or bytes that do
/// not match its shape and dtype.
fn raw_tensor_problem(tensor: &RawTensor) -> Option<String> {
    if tensor.name == METADATA_KEY {
        return Some("uses the name safetensors reserves for metadata; rename the tensor".into());
    }
    let count = tensor
        .shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let element = tensor.dtype.bitsize() / 8;
    if count.and_then(|c| c.checked_mul(element)) == Some(tensor.bytes.len()) {
        return None;
    }
    let expected = count.map_or_else(|| "too many".to_string(), |c| c.to_string());
    Some(format!(
        "has shape {:?} ({expected} values) but {} values were given",
        tensor.shape,
        tensor.bytes.len() / element.max(1)
    ))
}

/// Reads F32, F64, F16 and BF16 tensors converted to f32; integer/bool tensors go to `skipped`;
/// other dtypes: error naming the tensor.
///
/// 8-bit integers (U8, I8) are errors rather than skipped: in checkpoints they are quantised
/// weights, and silently dropping them would hide that the file cannot be used. The int8
/// files `mobilenet quantize` writes are refused here, by their metadata, with a message
/// saying so: this is where every float weight file is read. Tensors come back in file
/// order (by data offset).
pub fn load_safetensors(path: &Path) -> Result<LoadedFile, WeightsError> {
    let raw = load_safetensors_raw(path)?;
    if raw.metadata.get("format").map(String::as_str) == Some(INT8_FORMAT) {
        return Err(WeightsError::Int8File {
            path: path.to_path_buf(),
        });
    }
    let mut loaded = LoadedFile {
        metadata: raw.metadata,
        ..LoadedFile::default()
    };
    for tensor in raw.tensors {
        match to_f32(tensor.dtype, &tensor.bytes) {
            Some(values) => loaded.tensors.push(NamedTensor {
                name: tensor.name,
                shape: tensor.shape,
                values,
            }),
            None if is_skippable(tensor.dtype) => {
                loaded.skipped.push((tensor.name, tensor.dtype.to_string()));
            }
            None => {
                return Err(WeightsError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    tensor: tensor.name,
                    dtype: tensor.dtype.to_string(),
                })
            }
        }
    }
    Ok(loaded)
}

/// Every tensor of a safetensors file as stored (dtype and little-endian bytes), in file
/// order, with the header's metadata: for readers of files that are not float weights (the
/// int8 file). Checks the file's structure only.
#[doc(hidden)]
pub fn load_safetensors_raw(path: &Path) -> Result<RawFile, WeightsError> {
    let bytes = fs::read(path).map_err(|error| WeightsError::Io {
        path: path.to_path_buf(),
        action: "read",
        error,
    })?;
    let not_safetensors = |reason: String| WeightsError::NotSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    let (header_len, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| not_safetensors(describe(&bytes, e)))?;
    let data = bytes
        .get(HEADER_SIZE_LEN + header_len..)
        .unwrap_or_default();

    let mut infos: Vec<(String, &TensorInfo)> = header.tensors().into_iter().collect();
    // Zero-size tensors share an offset with their neighbour; the name keeps the order stable.
    infos.sort_by(|(an, a), (bn, b)| a.data_offsets.cmp(&b.data_offsets).then(an.cmp(bn)));

    let mut raw = RawFile::default();
    if let Some(metadata) = header.metadata() {
        raw.metadata = metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
    }
    for (name, info) in infos {
        let (start, end) = info.data_offsets;
        let bytes = data.get(start..end).ok_or_else(|| {
            not_safetensors(format!("the data of tensor `{name}` lies outside the file"))
        })?;
        raw.tensors.push(RawTensor {
            name,
            dtype: info.dtype,
            shape: info.shape.clone(),
            bytes: bytes.to_vec(),
        });
    }
    Ok(raw)
}

/// Little-endian floats to f32; `None` for non-float dtypes and floats this loader does not
/// know (the FP8/FP6/FP4 formats).
fn to_f32(dtype: Dtype, raw: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => decode(raw, f32::from_le_bytes),
        Dtype::F64 => decode(raw, |b| f64::from_le_bytes(b) as f32),
        Dtype::F16 => decode(raw, |b| f16::from_le_bytes(b).to_f32()),
        Dtype::BF16 => decode(raw, |b| bf16::from_le_bytes(b).to_f32()),
        _ => return None,
    })
}

fn decode<const N: usize>(raw: &[u8], convert: impl Fn([u8; N]) -> f32) -> Vec<f32> {
    raw.chunks_exact(N)
        .map(|chunk| {
            let mut element = [0u8; N];
            element.copy_from_slice(chunk);
            convert(element)
        })
        .collect()
}

/// Integer and bool tensors that are bookkeeping rather than weights (step counters, ids, masks).
fn is_skippable(dtype: Dtype) -> bool {
    matches!(
        dtype,
        Dtype::BOOL | Dtype::I16 | Dtype::U16 | Dtype::I32 | Dtype::U32 | Dtype::I64 | Dtype::U64
    )
}

/// Turns the parser's terse error into what is actually wrong with the file.
fn describe(bytes: &[u8], error: SafeTensorError) -> String {
    let Some(size_bytes) = bytes.first_chunk::<HEADER_SIZE_LEN>() else {
        return if bytes.is_empty() {
            "it is empty (0 bytes)".to_string()
        } else {
            format!(
                "it is only {} bytes long, shorter than the 8-byte header size",
                bytes.len()
            )
        };
    };
    let header_len = u64::from_le_bytes(*size_bytes);
    let available = (bytes.len() - HEADER_SIZE_LEN) as u64;
    match error {
        SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength
            if header_len > MAX_HEADER_LEN =>
        {
            format!(
                "it does not start with a safetensors header size \
                 (the first 8 bytes read as {header_len})"
            )
        }
        SafeTensorError::HeaderTooLarge | SafeTensorError::InvalidHeaderLength => format!(
            "it is truncated (its header should be {header_len} bytes, \
             but only {available} bytes follow the header size)"
        ),
        SafeTensorError::InvalidHeader(_)
        | SafeTensorError::InvalidHeaderStart
        | SafeTensorError::InvalidHeaderDeserialization(_) => {
            format!("its header is not valid tensor metadata ({error})")
        }
        SafeTensorError::MetadataIncompleteBuffer => format!(
            "the tensor data ({} bytes) is not the size the header declares \
             (the file is truncated or has bytes appended)",
            available.saturating_sub(header_len)
        ),
        other => format!("its header is inconsistent ({other})"),
    }
}
