//! The safetensors file layer: exact round trips, other writers' dtypes, clear errors on bad
//! files, and crash-safe replacement.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use mobilenet_wgpu::weights::{
    load_safetensors, save_safetensors, write_atomic, LoadedFile, NamedTensor, WeightsError,
};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// What `save_safetensors` takes for one tensor: name, shape, values.
type TensorRef<'a> = (&'a str, &'a [usize], &'a [f32]);

fn metadata(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Names of everything in `dir`, sorted.
fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Writes a file with the safetensors crate itself, as PyTorch exports would be.
fn write_foreign(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: Vec<(&str, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            (
                *name,
                TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn le_bytes<const N: usize, T: Copy>(values: &[T], to_bytes: fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|&v| to_bytes(v)).collect()
}

/// A small model-like file: unsorted names, a scalar, an empty tensor, special values.
fn sample() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    vec![
        (
            "stem.conv.weight".into(),
            vec![2, 1, 3, 3],
            (0..18).map(|i| i as f32 * 0.25 - 2.0).collect(),
        ),
        (
            "bn.running_var".into(),
            vec![4],
            vec![-0.0, f32::MIN_POSITIVE / 2.0, f32::MAX, f32::NAN],
        ),
        ("empty".into(), vec![0, 3], vec![]),
        ("alpha".into(), vec![], vec![0.1]),
        ("classifier.bias".into(), vec![3], vec![1.0, -1.0, 1e-30]),
    ]
}

fn save_sample(
    path: &Path,
    meta: &BTreeMap<String, String>,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let tensors = sample();
    let refs: Vec<TensorRef> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_str(), s.as_slice(), v.as_slice()))
        .collect();
    save_safetensors(path, &refs, meta).unwrap();
    tensors
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn round_trip_keeps_values_shapes_order_and_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let meta = metadata(&[
        ("format", "pt"),
        ("epoch", "3"),
        ("note", "ünïcode \"quoted\""),
    ]);
    let saved = save_sample(&path, &meta);

    let loaded = load_safetensors(&path).unwrap();
    assert_eq!(loaded.metadata, meta);
    assert!(loaded.skipped.is_empty());
    let names: Vec<&str> = loaded.tensors.iter().map(|t| t.name.as_str()).collect();
    let expected: Vec<&str> = saved.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, expected, "tensors must come back in the order saved");
    for (t, (_, shape, values)) in loaded.tensors.iter().zip(&saved) {
        assert_eq!(&t.shape, shape, "{}", t.name);
        // Bit equality: covers -0.0, subnormals and NaN, which `==` cannot.
        assert_eq!(bits(&t.values), bits(values), "{}", t.name);
    }
}

#[test]
fn saved_file_is_standard_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let saved = save_sample(&path, &metadata(&[("k", "v")]));

    let bytes = fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(header_len % 8, 0, "data should start 8-byte aligned");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), saved.len());
    for (name, shape, values) in &saved {
        let view = st.tensor(name).unwrap();
        assert_eq!(view.dtype(), Dtype::F32);
        assert_eq!(view.shape(), shape.as_slice());
        assert_eq!(view.data(), le_bytes(values, f32::to_le_bytes).as_slice());
    }
}

#[test]
fn empty_file_without_metadata_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing.safetensors");
    save_safetensors(&path, &[], &BTreeMap::new()).unwrap();
    assert_eq!(load_safetensors(&path).unwrap(), LoadedFile::default());
}

#[test]
fn half_bfloat_and_double_files_load_as_f32() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.safetensors");
    let wanted = [0.1f32, -2.5, 65504.0, 3.0e-5];
    let halves: Vec<f16> = wanted.iter().map(|&v| f16::from_f32(v)).collect();
    let brains: Vec<bf16> = wanted.iter().map(|&v| bf16::from_f32(v)).collect();
    let doubles = [0.1f64, -2.5, 1.0e10, 1.0 / 3.0];
    write_foreign(
        &path,
        &[
            (
                "h",
                Dtype::F16,
                vec![2, 2],
                le_bytes(&halves, f16::to_le_bytes),
            ),
            (
                "b",
                Dtype::BF16,
                vec![4],
                le_bytes(&brains, bf16::to_le_bytes),
            ),
            (
                "d",
                Dtype::F64,
                vec![4, 1],
                le_bytes(&doubles, f64::to_le_bytes),
            ),
        ],
    );

    let loaded = load_safetensors(&path).unwrap();
    let by_name =
        |name: &str| -> &NamedTensor { loaded.tensors.iter().find(|t| t.name == name).unwrap() };
    let h = by_name("h");
    assert_eq!(h.shape, vec![2, 2]);
    assert_eq!(
        h.values,
        halves.iter().map(|v| v.to_f32()).collect::<Vec<_>>()
    );
    assert!(
        (h.values[0] - 0.1).abs() < 1e-4,
        "f16 0.1 decoded as {}",
        h.values[0]
    );
    let b = by_name("b");
    assert_eq!(
        b.values,
        brains.iter().map(|v| v.to_f32()).collect::<Vec<_>>()
    );
    assert_eq!(b.values[1], -2.5);
    let d = by_name("d");
    assert_eq!(d.shape, vec![4, 1]);
    assert_eq!(d.values, vec![0.1f32, -2.5, 1.0e10, 1.0f32 / 3.0]);
}

#[test]
fn integer_buffers_are_skipped_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bn.safetensors");
    write_foreign(
        &path,
        &[
            (
                "bn.weight",
                Dtype::F32,
                vec![2],
                le_bytes(&[1.0f32, 2.0], f32::to_le_bytes),
            ),
            (
                "bn.num_batches_tracked",
                Dtype::I64,
                vec![],
                1234i64.to_le_bytes().to_vec(),
            ),
            ("mask", Dtype::BOOL, vec![2], vec![1, 0]),
        ],
    );
    let loaded = load_safetensors(&path).unwrap();
    assert_eq!(
        loaded.tensors,
        vec![NamedTensor {
            name: "bn.weight".into(),
            shape: vec![2],
            values: vec![1.0, 2.0],
        }]
    );
    let mut skipped = loaded.skipped.clone();
    skipped.sort();
    assert_eq!(
        skipped,
        vec![
            ("bn.num_batches_tracked".to_string(), "I64".to_string()),
            ("mask".to_string(), "BOOL".to_string()),
        ]
    );
}

#[test]
fn unsupported_dtypes_are_errors_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    for (dtype, tensor) in [(Dtype::U8, "quant.weight"), (Dtype::F8_E4M3, "fp8.weight")] {
        let path = dir.path().join(format!("{dtype}.safetensors"));
        write_foreign(
            &path,
            &[
                ("ok", Dtype::F32, vec![1], 1.0f32.to_le_bytes().to_vec()),
                (tensor, dtype, vec![4], vec![1, 2, 3, 4]),
            ],
        );
        let err = load_safetensors(&path).unwrap_err();
        assert!(
            matches!(&err, WeightsError::UnsupportedDtype { tensor: t, dtype: d, .. }
                if t == tensor && *d == dtype.to_string()),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(tensor), "{msg}");
        assert!(msg.contains(&dtype.to_string()), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("convert it to float32"), "{msg}");
    }
}

/// Asserts a `NotSafetensors` error that names the file and explains with `reason_part`.
fn assert_not_safetensors(path: &Path, reason_part: &str) {
    let err = load_safetensors(path).unwrap_err();
    assert!(
        matches!(err, WeightsError::NotSafetensors { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains(reason_part),
        "expected `{reason_part}` in: {msg}"
    );
}

#[test]
fn damaged_files_give_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.safetensors");
    save_sample(&good, &metadata(&[("k", "v")]));
    let bytes = fs::read(&good).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;

    let case = |name: &str, content: &[u8]| -> PathBuf {
        let path = dir.path().join(name);
        fs::write(&path, content).unwrap();
        path
    };
    assert_not_safetensors(&case("empty.safetensors", b""), "empty");
    assert_not_safetensors(&case("tiny.safetensors", b"{}"), "only 2 bytes");
    assert_not_safetensors(
        &case("cut-data.safetensors", &bytes[..bytes.len() - 3]),
        "truncated",
    );
    assert_not_safetensors(
        &case("cut-header.safetensors", &bytes[..8 + header_len / 2]),
        "truncated",
    );
    assert_not_safetensors(
        &case(
            "garbage.safetensors",
            b"this is certainly not a tensor file at all",
        ),
        "does not start with a safetensors header",
    );
    let mut bad_json = (16u64).to_le_bytes().to_vec();
    bad_json.extend_from_slice(b"{not json here!}");
    assert_not_safetensors(
        &case("badjson.safetensors", &bad_json),
        "not valid tensor metadata",
    );

    let missing = dir.path().join("missing.safetensors");
    let err = load_safetensors(&missing).unwrap_err();
    assert!(matches!(err, WeightsError::Io { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&missing.display().to_string()), "{msg}");
    assert!(msg.contains("check the path"), "{msg}");
}

#[test]
fn save_rejects_inconsistent_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    let none = BTreeMap::new();
    let cases: [(&[TensorRef], &str); 3] = [
        (
            &[("w", &[2, 3], &[1.0; 5])],
            "shape [2, 3] (6 values) but 5",
        ),
        (&[("w", &[1], &[1.0]), ("w", &[1], &[2.0])], "appears twice"),
        (&[("__metadata__", &[1], &[1.0])], "reserves"),
    ];
    for (tensors, part) in cases {
        let err = save_safetensors(&path, tensors, &none).unwrap_err();
        assert!(matches!(err, WeightsError::InvalidTensor { .. }), "{err:?}");
        assert!(err.to_string().contains(part), "{err}");
    }
    assert!(dir_entries(dir.path()).is_empty(), "nothing may be written");
}

#[test]
fn save_leaves_no_temporary_file_and_replaces_completely() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save_sample(&path, &metadata(&[("old", "yes"), ("epoch", "1")]));
    let big_len = fs::metadata(&path).unwrap().len();
    assert_eq!(dir_entries(dir.path()), vec!["model.safetensors"]);

    // A much smaller file over the big one: no old bytes or metadata may survive.
    save_safetensors(&path, &[("x", &[1], &[7.0])], &metadata(&[("epoch", "2")])).unwrap();
    assert_eq!(dir_entries(dir.path()), vec!["model.safetensors"]);
    assert!(fs::metadata(&path).unwrap().len() < big_len);
    let loaded = load_safetensors(&path).unwrap();
    assert_eq!(loaded.metadata, metadata(&[("epoch", "2")]));
    assert_eq!(
        loaded.tensors,
        vec![NamedTensor {
            name: "x".into(),
            shape: vec![1],
            values: vec![7.0],
        }]
    );
}

#[test]
fn stale_temporary_files_do_not_interfere() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save_sample(&path, &BTreeMap::new());

    // Leftovers of "killed" writes: another process's, and ones with this process's id (as
    // after a reboot that reused it), which the next save must step over, not reuse.
    let pid = std::process::id();
    let mut stale: Vec<String> = (0..64)
        .map(|n| format!("model.safetensors.{pid}-{n}.tmp"))
        .collect();
    stale.push("model.safetensors.1-0.tmp".into());
    for name in &stale {
        fs::write(dir.path().join(name), b"half-written garbage").unwrap();
    }

    assert_eq!(
        load_safetensors(&path).unwrap().tensors.len(),
        sample().len()
    );
    save_safetensors(&path, &[("y", &[2], &[1.0, 2.0])], &BTreeMap::new()).unwrap();
    let loaded = load_safetensors(&path).unwrap();
    assert_eq!(loaded.tensors.len(), 1);
    assert_eq!(loaded.tensors[0].values, vec![1.0, 2.0]);

    let mut expected = stale.clone();
    expected.push("model.safetensors".into());
    expected.sort();
    assert_eq!(
        dir_entries(dir.path()),
        expected,
        "stale files untouched, no new ones"
    );
    for name in &stale {
        assert_eq!(
            fs::read(dir.path().join(name)).unwrap(),
            b"half-written garbage"
        );
    }
}

#[test]
fn failed_saves_leave_the_existing_file_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save_sample(&path, &metadata(&[("keep", "me")]));
    let before = fs::read(&path).unwrap();

    // Invalid input: refused before anything touches the disk.
    let err = save_safetensors(&path, &[("w", &[3], &[1.0])], &BTreeMap::new()).unwrap_err();
    assert!(matches!(err, WeightsError::InvalidTensor { .. }), "{err:?}");
    assert_eq!(fs::read(&path).unwrap(), before);

    // The rename fails (the target is a directory): the temporary file must be cleaned up.
    let blocker = dir.path().join("blocked.safetensors");
    fs::create_dir(&blocker).unwrap();
    fs::write(blocker.join("inside"), b"keep").unwrap();
    let err = save_safetensors(&blocker, &[("w", &[1], &[1.0])], &BTreeMap::new()).unwrap_err();
    assert!(matches!(err, WeightsError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&blocker.display().to_string()),
        "{err}"
    );
    assert_eq!(fs::read(blocker.join("inside")).unwrap(), b"keep");
    assert_eq!(
        dir_entries(dir.path()),
        vec!["blocked.safetensors", "model.safetensors"]
    );
    assert_eq!(fs::read(&path).unwrap(), before);

    // The directory does not exist: a clear error, nothing created.
    let nowhere = dir.path().join("no-such-dir").join("model.safetensors");
    let err = save_safetensors(&nowhere, &[("w", &[1], &[1.0])], &BTreeMap::new()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&nowhere.display().to_string()), "{msg}");
    assert!(msg.contains("directory must exist"), "{msg}");
    assert!(!dir.path().join("no-such-dir").exists());
    assert_eq!(fs::read(&path).unwrap(), before);
}

#[test]
fn write_atomic_replaces_content_and_keeps_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.json");
    write_atomic(&path, b"{\"first\": true, \"long\": \"xxxxxxxxxxxxxxxx\"}").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    }
    write_atomic(&path, b"{}").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"{}");
    assert_eq!(dir_entries(dir.path()), vec!["run.json"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    let err = write_atomic(Path::new("/"), b"x").unwrap_err();
    assert!(err.to_string().contains("no file name"), "{err}");
}
