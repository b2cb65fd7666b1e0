//! Tensors as they cross the daemon: a name, an element type, a shape and
//! the raw little-endian bytes in row-major order (the KServe v2 raw layout,
//! which both runtimes take without conversion).

use std::fmt;

use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F16,
    BF16,
    F32,
    F64,
}

impl DataType {
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::BF16,
        DataType::F32,
        DataType::F64,
    ];

    /// The KServe v2 datatype name.
    pub fn kserve_name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::BF16 => "BF16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
        }
    }

    pub fn from_kserve_name(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.kserve_name() == name)
    }

    pub fn byte_size(self) -> usize {
        match self {
            DataType::Bool | DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 | DataType::F16 | DataType::BF16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::U64 | DataType::I64 | DataType::F64 => 8,
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kserve_name())
    }
}

/// An output borrowed from the runtime (see `LoadedModel::run_visit`).
pub struct TensorView<'a> {
    pub name: &'a str,
    pub dtype: DataType,
    pub shape: &'a [i64],
    /// Little-endian element bytes.
    pub data: &'a [u8],
}

/// A model input or output as declared: -1 marks a dimension chosen per request.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: DataType,
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// Whether a concrete shape fits this declaration.
    pub fn accepts_shape(&self, shape: &[i64]) -> bool {
        shape.len() == self.shape.len()
            && shape
                .iter()
                .zip(&self.shape)
                .all(|(&got, &want)| got >= 0 && (want < 0 || got == want))
    }

    /// The shape with dynamic dimensions set to `fill`.
    pub fn concrete_shape(&self, fill: i64) -> Vec<i64> {
        self.shape.iter().map(|&d| if d < 0 { fill } else { d }).collect()
    }
}

pub fn format_shape(shape: &[i64]) -> String {
    let dims: Vec<String> = shape
        .iter()
        .map(|&d| if d < 0 { "?".to_owned() } else { d.to_string() })
        .collect();
    format!("[{}]", dims.join(","))
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Signature {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl Signature {
    /// Triton's convention: when every input and output has a leading
    /// dynamic dimension, that dimension is the batch. Such a model takes
    /// at most its deployment's max batch rows per request.
    pub fn is_batched(&self) -> bool {
        !self.inputs.is_empty()
            && self
                .inputs
                .iter()
                .chain(&self.outputs)
                .all(|s| s.shape.first() == Some(&-1))
    }
}

/// What one inference request may ask of a deployment, fixed when the
/// deployment starts serving. Checked before anything of the request's size
/// is allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Bytes of all the request's input tensors, decoded
    /// (`serving.max_request_bytes`).
    pub max_bytes: usize,
    /// Rows along the batch dimension of a batched model (see
    /// [`Signature::is_batched`]); ignored for other models.
    pub max_batch: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dtype: DataType,
    pub shape: Vec<i64>,
    /// Little-endian element bytes. Shared, not copied: a request's raw
    /// contents are a slice of the message they arrived in, an ONNX Runtime
    /// answer is the runtime's own buffer.
    pub data: Bytes,
}

impl Tensor {
    /// Elements of `shape`; None when a dimension is negative or the
    /// product overflows.
    pub fn element_count(shape: &[i64]) -> Option<usize> {
        shape.iter().try_fold(1usize, |acc, &d| {
            usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        })
    }

    /// Bytes of a tensor of `dtype` and `shape`; None on overflow.
    pub fn byte_len(dtype: DataType, shape: &[i64]) -> Option<usize> {
        Tensor::element_count(shape)?.checked_mul(dtype.byte_size())
    }

    /// A tensor of the spec's type and the given shape, filled with small
    /// deterministic values: for warmup, health checks and dry runs.
    pub fn synthetic(spec: &TensorSpec, shape: Vec<i64>) -> Tensor {
        let count = Tensor::element_count(&shape).unwrap_or(0);
        let mut data = Vec::with_capacity(count * spec.dtype.byte_size());
        for i in 0..count {
            let v = (i % 7) as f32 * 0.25;
            match spec.dtype {
                DataType::Bool => data.push((i % 2) as u8),
                DataType::U8 | DataType::I8 => data.push((i % 7) as u8),
                DataType::U16 | DataType::I16 => data.extend_from_slice(&((i % 7) as u16).to_le_bytes()),
                DataType::U32 | DataType::I32 => data.extend_from_slice(&((i % 7) as u32).to_le_bytes()),
                DataType::U64 | DataType::I64 => data.extend_from_slice(&((i % 7) as u64).to_le_bytes()),
                DataType::F16 => data.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                DataType::BF16 => data.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes()),
                DataType::F32 => data.extend_from_slice(&v.to_le_bytes()),
                DataType::F64 => data.extend_from_slice(&f64::from(v).to_le_bytes()),
            }
        }
        Tensor {
            name: spec.name.clone(),
            dtype: spec.dtype,
            shape,
            data: data.into(),
        }
    }

    /// The elements of an integer or bool tensor as i64 (None for floats).
    pub fn integers(&self) -> Option<Vec<i64>> {
        let size = self.dtype.byte_size();
        let values = self.data.chunks_exact(size.max(1));
        Some(match self.dtype {
            DataType::Bool | DataType::U8 => values.map(|b| i64::from(b[0])).collect(),
            DataType::I8 => values.map(|b| i64::from(b[0] as i8)).collect(),
            DataType::I16 => values.map(|b| i64::from(i16::from_le_bytes([b[0], b[1]]))).collect(),
            DataType::U16 => values.map(|b| i64::from(u16::from_le_bytes([b[0], b[1]]))).collect(),
            DataType::I32 => values
                .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            DataType::U32 => values
                .map(|b| i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            DataType::I64 | DataType::U64 => values
                .map(|b| i64::from_le_bytes(b.try_into().expect("chunks of 8")))
                .collect(),
            DataType::F16 | DataType::BF16 | DataType::F32 | DataType::F64 => return None,
        })
    }

    /// A `spec`-typed tensor of `shape` holding `values` (the inverse of
    /// [`Tensor::integers`]); None when the count does not match the shape
    /// or the type is not an integer or bool.
    pub fn from_integers(spec: &TensorSpec, shape: Vec<i64>, values: &[i64]) -> Option<Tensor> {
        if Tensor::element_count(&shape)? != values.len() {
            return None;
        }
        let data = match spec.dtype {
            DataType::Bool => values.iter().map(|v| u8::from(*v != 0)).collect(),
            DataType::U8 | DataType::I8 => values.iter().map(|v| *v as u8).collect(),
            DataType::U16 | DataType::I16 => values.iter().flat_map(|v| (*v as u16).to_le_bytes()).collect(),
            DataType::U32 | DataType::I32 => values.iter().flat_map(|v| (*v as u32).to_le_bytes()).collect(),
            DataType::U64 | DataType::I64 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            DataType::F16 | DataType::BF16 | DataType::F32 | DataType::F64 => return None,
        };
        Some(Tensor {
            name: spec.name.clone(),
            dtype: spec.dtype,
            shape,
            data,
        })
    }

    /// False if a floating-point element is NaN or infinite.
    pub fn is_finite(&self) -> bool {
        match self.dtype {
            DataType::F32 => self
                .data
                .chunks_exact(4)
                .all(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")).is_finite()),
            DataType::F64 => self
                .data
                .chunks_exact(8)
                .all(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")).is_finite()),
            DataType::F16 => self
                .data
                .chunks_exact(2)
                .all(|c| half::f16::from_le_bytes([c[0], c[1]]).is_finite()),
            DataType::BF16 => self
                .data
                .chunks_exact(2)
                .all(|c| half::bf16::from_le_bytes([c[0], c[1]]).is_finite()),
            DataType::Bool
            | DataType::U8
            | DataType::U16
            | DataType::U32
            | DataType::U64
            | DataType::I8
            | DataType::I16
            | DataType::I32
            | DataType::I64 => true,
        }
    }
}

/// Little-endian f32 values read from tensor bytes in place.
pub fn f32s(bytes: &[u8]) -> impl Iterator<Item = f32> + Clone + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
}

/// The mean of little-endian f32 `bytes` (0 when empty), summed in eight
/// independent lanes: a single running sum is one long chain of dependent
/// additions the compiler may not reorder, which made the drift tracker's
/// row mean of an image-sized output cost ~0.1 ms per request. Eight lanes
/// vectorise, and their rounding differs from the serial sum's only in the
/// last bits.
pub fn mean_f32(bytes: &[u8]) -> f32 {
    const LANES: usize = 8;
    let mut lanes = [0f32; LANES];
    let mut blocks = bytes.chunks_exact(4 * LANES);
    for block in &mut blocks {
        for (lane, c) in lanes.iter_mut().zip(block.chunks_exact(4)) {
            *lane += f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    }
    let tail: f32 = f32s(blocks.remainder()).sum();
    let count = bytes.len() / 4;
    if count == 0 {
        return 0.0;
    }
    (lanes.iter().sum::<f32>() + tail) / count as f32
}

/// Little-endian bytes of `values`: the tests' way to write an FP32 tensor.
#[cfg(test)]
pub fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The index and value of the largest value (the first, on ties): a
/// classifier row's top-1.
pub fn argmax(values: impl Iterator<Item = f32>) -> (usize, f32) {
    values.enumerate().fold(
        (0, f32::NEG_INFINITY),
        |best, (i, v)| if v > best.1 { (i, v) } else { best },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_in_lanes_matches_the_serial_mean() {
        // Lengths around the lane block (8 floats), with a remainder.
        for n in [0usize, 1, 7, 8, 9, 31, 1000, 150_528] {
            let values: Vec<f32> = (0..n).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
            let serial = if n == 0 {
                0.0
            } else {
                values.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64
            };
            let lanes = f64::from(mean_f32(&f32_bytes(&values)));
            assert!(
                (lanes - serial).abs() <= 1e-4 * serial.abs().max(1.0),
                "n={n}: {lanes} vs {serial}"
            );
        }
        assert_eq!(mean_f32(&f32_bytes(&[2.0, 4.0])), 3.0);
    }
}
