//! Tensors for `dsmilctl infer`: reading .npy/.npz files, making random
//! inputs, encoding to the KServe raw layout of the model's declared datatype,
//! and decoding raw outputs for display. A file whose values the model's
//! datatype cannot hold exactly (float64 into FP32, floats into integers)
//! is refused, never cast: the model would answer for other inputs than
//! the file's. A conversion that changes no value (a uint8 image into FP32)
//! goes ahead.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, bail};
use ndarray::{ArrayD, IxDyn, OwnedRepr};
use ndarray_npy::{NpzReader, ReadNpyExt};
use rand::Rng;

/// A tensor read from a file, as numbers; encoded per the model's datatype.
pub struct Values {
    pub shape: Vec<i64>,
    pub data: Vec<f64>,
    /// The file's element type as numpy names it ("float64"); "" for values
    /// made for the model's own datatype (--random).
    pub dtype: &'static str,
}

macro_rules! try_types {
    ($read:expr, $($t:ty),+) => {{
        let mut first: Option<anyhow::Error> = None;
        $(
            match $read(std::marker::PhantomData::<$t>) {
                Ok(array) => {
                    let array: ArrayD<$t> = array;
                    return Ok(Values {
                        shape: array.shape().iter().map(|&d| d as i64).collect(),
                        data: array.iter().map(|&v| v as f64).collect(),
                        dtype: numpy_name(std::any::type_name::<$t>()),
                    });
                }
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        )+
        first
    }};
}

pub fn read_npy(path: &Path) -> anyhow::Result<Values> {
    let last = try_types!(
        |_: std::marker::PhantomData<_>| {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            ArrayD::read_npy(file).map_err(anyhow::Error::from)
        },
        f32,
        f64,
        i64,
        i32,
        i16,
        i8,
        u8,
        u16,
        u32,
        u64
    );
    let bools = File::open(path)
        .map_err(anyhow::Error::from)
        .and_then(|f| ArrayD::<bool>::read_npy(f).map_err(Into::into));
    if let Ok(array) = bools {
        return Ok(Values {
            shape: array.shape().iter().map(|&d| d as i64).collect(),
            data: array.iter().map(|&v| f64::from(u8::from(v))).collect(),
            dtype: "bool",
        });
    }
    Err(last.expect("at least one type was tried")).with_context(|| format!("reading {} as .npy", path.display()))
}

pub fn read_npz_entry(path: &Path, name: &str) -> anyhow::Result<Values> {
    let last = try_types!(
        |_: std::marker::PhantomData<_>| {
            let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let mut npz = NpzReader::new(file).with_context(|| format!("{} is not an .npz file", path.display()))?;
            npz.by_name::<OwnedRepr<_>, IxDyn>(name).map_err(anyhow::Error::from)
        },
        f32,
        f64,
        i64,
        i32,
        i16,
        i8,
        u8,
        u16,
        u32,
        u64
    );
    Err(last.expect("at least one type was tried")).with_context(|| format!("reading {name:?} from {}", path.display()))
}

pub fn npz_names(path: &Path) -> anyhow::Result<Vec<String>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut npz = NpzReader::new(file).with_context(|| format!("{} is not an .npz file", path.display()))?;
    Ok(npz
        .names()?
        .into_iter()
        .map(|n| n.trim_end_matches(".npy").to_owned())
        .collect())
}

/// Random values for a declared input: dynamic dimensions become `batch`.
pub fn random(datatype: &str, shape: &[i64], batch: i64) -> Values {
    let shape: Vec<i64> = shape.iter().map(|&d| if d < 0 { batch } else { d }).collect();
    let count: i64 = shape.iter().product();
    let mut rng = rand::rng();
    let data = (0..count)
        .map(|_| match datatype {
            "FP32" | "FP64" | "FP16" | "BF16" => rng.random::<f64>(),
            "BOOL" => f64::from(rng.random::<bool>()),
            _ => f64::from(rng.random_range(0..10u8)),
        })
        .collect();
    Values { shape, data, dtype: "" }
}

/// numpy's name for a Rust element type.
fn numpy_name(rust: &str) -> &'static str {
    match rust {
        "f32" => "float32",
        "f64" => "float64",
        "i8" => "int8",
        "i16" => "int16",
        "i32" => "int32",
        "i64" => "int64",
        "u8" => "uint8",
        "u16" => "uint16",
        "u32" => "uint32",
        "u64" => "uint64",
        _ => "bool",
    }
}

/// `v` as `datatype` holds it (NaN stays NaN; out of range saturates).
fn as_datatype(v: f64, datatype: &str) -> f64 {
    match datatype {
        "FP32" => f64::from(v as f32),
        "FP16" => half::f16::from_f64(v).to_f64(),
        "BF16" => half::bf16::from_f64(v).to_f64(),
        "INT8" => f64::from(v as i8),
        "INT16" => f64::from(v as i16),
        "INT32" => f64::from(v as i32),
        "INT64" => v as i64 as f64,
        "UINT8" => f64::from(v as u8),
        "UINT16" => f64::from(v as u16),
        "UINT32" => f64::from(v as u32),
        "UINT64" => v as u64 as f64,
        "BOOL" => f64::from(u8::from(v != 0.0)),
        _ => v,
    }
}

/// Refuses values read from a file of another element type than
/// `datatype` if converting would change any of them, saying how many,
/// the first, and how to save the file instead.
pub fn check_exact(values: &Values, datatype: &str) -> anyhow::Result<()> {
    if values.dtype.is_empty() {
        return Ok(());
    }
    let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
    let mut changed = values
        .data
        .iter()
        .map(|&v| (v, as_datatype(v, datatype)))
        .filter(|&(v, held)| !same(v, held));
    let Some((v, held)) = changed.next() else {
        return Ok(());
    };
    let count = 1 + changed.count();
    let wanted = match datatype {
        "FP32" => "float32",
        "FP64" => "float64",
        "FP16" => "float16",
        "INT8" => "int8",
        "INT16" => "int16",
        "INT32" => "int32",
        "INT64" => "int64",
        "UINT8" => "uint8",
        "UINT16" => "uint16",
        "UINT32" => "uint32",
        "UINT64" => "uint64",
        "BOOL" => "bool",
        other => other,
    };
    bail!(
        "the file holds {} values and the model takes {datatype}: {count} of {} would change in conversion \
         (the first: {v} becomes {held}); dsmilctl does not cast them. Save the array as {wanted} \
         (numpy: a.astype(np.{wanted})) to send it",
        values.dtype,
        values.data.len()
    )
}

/// Encodes values as the raw little-endian bytes of `datatype`.
pub fn encode(values: &Values, datatype: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(values.data.len() * 8);
    for &v in &values.data {
        match datatype {
            "FP32" => out.extend((v as f32).to_le_bytes()),
            "FP64" => out.extend(v.to_le_bytes()),
            "FP16" => out.extend(half::f16::from_f64(v).to_le_bytes()),
            "BF16" => out.extend(half::bf16::from_f64(v).to_le_bytes()),
            "INT8" => out.extend((v as i8).to_le_bytes()),
            "INT16" => out.extend((v as i16).to_le_bytes()),
            "INT32" => out.extend((v as i32).to_le_bytes()),
            "INT64" => out.extend((v as i64).to_le_bytes()),
            "UINT8" => out.extend((v as u8).to_le_bytes()),
            "UINT16" => out.extend((v as u16).to_le_bytes()),
            "UINT32" => out.extend((v as u32).to_le_bytes()),
            "UINT64" => out.extend((v as u64).to_le_bytes()),
            "BOOL" => out.push(u8::from(v != 0.0)),
            other => bail!("datatype {other} is not supported by dsmilctl infer"),
        }
    }
    Ok(out)
}

/// Decodes raw output bytes to JSON numbers.
pub fn decode(raw: &[u8], datatype: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    macro_rules! each {
        ($n:expr, $conv:expr) => {
            raw.chunks_exact($n)
                .map(|c| serde_json::json!($conv(c.try_into().expect("chunk size"))))
                .collect()
        };
    }
    Ok(match datatype {
        "FP32" => each!(4, f32::from_le_bytes),
        "FP64" => each!(8, f64::from_le_bytes),
        "FP16" => each!(2, |b| half::f16::from_le_bytes(b).to_f32()),
        "BF16" => each!(2, |b| half::bf16::from_le_bytes(b).to_f32()),
        "INT8" => each!(1, i8::from_le_bytes),
        "INT16" => each!(2, i16::from_le_bytes),
        "INT32" => each!(4, i32::from_le_bytes),
        "INT64" => each!(8, i64::from_le_bytes),
        "UINT8" => each!(1, u8::from_le_bytes),
        "UINT16" => each!(2, u16::from_le_bytes),
        "UINT32" => each!(4, u32::from_le_bytes),
        "UINT64" => each!(8, u64::from_le_bytes),
        "BOOL" => raw.iter().map(|&b| serde_json::json!(b != 0)).collect(),
        other => bail!("datatype {other} is not supported by dsmilctl infer"),
    })
}
