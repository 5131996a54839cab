use std::io::Read;
use std::path::Path;

use flate2::read::MultiGzDecoder;

use super::error::DataError;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a whole file into memory.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|source| DataError::io(path, source))
}

/// Reads a whole file, decompressing it if it is gzip. Gzip is recognised by its magic bytes, so
/// a decompressed file that kept its `.gz` name still loads; a `.gz` file without the magic
/// bytes is reported instead of being parsed as garbage.
pub(crate) fn read_maybe_gzip(path: &Path, help: &str) -> Result<Vec<u8>, DataError> {
    let bytes = read_file(path)?;
    let named_gz = path
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("gz"));
    if !bytes.starts_with(&GZIP_MAGIC) {
        if named_gz {
            return Err(DataError::invalid(
                path,
                "named .gz but does not start with the gzip magic bytes 1f 8b",
                help,
            ));
        }
        return Ok(bytes);
    }
    // Compressed IDX data expands about 2x; reserving avoids repeated reallocation of ~50 MB.
    let mut decompressed = Vec::with_capacity(bytes.len().saturating_mul(2));
    MultiGzDecoder::new(bytes.as_slice())
        .read_to_end(&mut decompressed)
        .map_err(|error| {
            DataError::invalid(
                path,
                format!("gzip data is truncated or corrupt ({error})"),
                help,
            )
        })?;
    Ok(decompressed)
}

/// Fails with a [`DataError::Missing`] carrying `help` unless `dir` is an existing directory.
pub(crate) fn require_dir(dir: &Path, help: &str) -> Result<(), DataError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(DataError::Missing {
            path: dir.to_path_buf(),
            help: help.to_string(),
        })
    }
}
