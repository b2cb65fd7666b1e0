//! Tensors for `dsmilctl infer`: reading .npy/.npz files, making random
//! inputs, encoding to the KServe raw layout of the model's declared datatype,
//! and decoding raw outputs for display.

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
    Values { shape, data }
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
