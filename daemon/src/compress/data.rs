//! Calibration and validation data: an .npz whose keys are the model's input
//! names (plus, for validation, an optional `labels`), each array holding
//! samples along its first axis. Checked against the model's signature before
//! anything runs: a missing name, a wrong dtype or shape, NaN or Inf is a
//! clear error, never a half-calibrated model.
//!
//! The file comes from whoever can deploy, so it is hostile until proven
//! otherwise: a 500-byte .npz can declare a (10^12, 64) array, and a reader
//! that trusts the header allocates that before noticing the bytes are not
//! there (an abort, not an error). So each entry is read through `npz.rs`,
//! which checks its declared size against the bytes that are there first.

use std::io::{Read, Seek};
use std::path::Path;

use ndarray::{ArrayD, Axis};

use super::CompressError;
use super::npz::Npz;
use crate::backend::{DataType, Signature, Tensor};

/// Samples, one batch of inputs each (rows of the arrays), plus labels.
pub struct Samples {
    /// Per input, in signature order: the whole array.
    inputs: Vec<(String, ArrayD<f32>)>,
    labels: Option<Vec<i64>>,
    count: usize,
}

impl Samples {
    /// Reads `path`, keeping at most `limit` samples.
    pub fn read(path: &Path, signature: &Signature, limit: usize) -> Result<Samples, CompressError> {
        let file = std::fs::File::open(path).map_err(|e| CompressError::Data {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Samples::from_reader(file, &path.display().to_string(), signature, limit)
    }

    /// Reads an .npz from `reader`; `source` names it in errors (a path, or
    /// whatever the bytes came from).
    pub fn from_reader<R: Read + Seek>(
        reader: R,
        source: &str,
        signature: &Signature,
        limit: usize,
    ) -> Result<Samples, CompressError> {
        let err = |detail: String| CompressError::Data {
            path: source.to_owned(),
            detail,
        };
        let mut npz = Npz::open(reader).map_err(|e| err(format!("not an .npz file: {e}")))?;
        let names = npz.names();
        let mut inputs = Vec::new();
        let mut count = usize::MAX;
        for spec in &signature.inputs {
            if !names.contains(&spec.name) {
                return Err(err(format!(
                    "no array named {:?} (the model's input); it has {}",
                    spec.name,
                    names.join(", ")
                )));
            }
            if spec.dtype != DataType::F32 {
                return Err(err(format!(
                    "input {}: only FP32 inputs can be calibrated (it is {})",
                    spec.name, spec.dtype
                )));
            }
            let array: ArrayD<f32> = npz.array(&spec.name, &["<f4", ">f4"], "float32").map_err(err)?;
            let shape: Vec<i64> = array.shape().iter().map(|&d| d as i64).collect();
            if !spec.accepts_shape(&shape) {
                return Err(err(format!(
                    "array {:?} has shape {:?}; the input is {} (samples along the first axis)",
                    spec.name,
                    shape,
                    crate::backend::format_shape(&spec.shape)
                )));
            }
            if let Some(bad) = array.iter().position(|v| !v.is_finite()) {
                return Err(err(format!("array {:?} holds NaN or Inf (element {bad})", spec.name)));
            }
            count = count.min(array.shape().first().copied().unwrap_or(0));
            inputs.push((spec.name.clone(), array));
        }
        let labels = if names.iter().any(|n| n == "labels") {
            let labels: ArrayD<i64> = npz.array("labels", &["<i8", ">i8"], "int64 class ids").map_err(err)?;
            Some(labels.iter().copied().collect::<Vec<_>>())
        } else {
            None
        };
        if count == 0 || count == usize::MAX {
            return Err(err("no samples".into()));
        }
        if let Some(l) = &labels
            && l.len() < count
        {
            return Err(err(format!("{} labels for {count} samples", l.len())));
        }
        Ok(Samples {
            inputs,
            labels,
            count: count.min(limit),
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn labels(&self) -> Option<&[i64]> {
        self.labels.as_deref().map(|l| &l[..self.count])
    }

    /// Sample `i` as one-row input tensors, in signature order.
    pub fn sample(&self, i: usize) -> Vec<Tensor> {
        self.inputs
            .iter()
            .map(|(name, array)| {
                let row = array.index_axis(Axis(0), i).insert_axis(Axis(0));
                Tensor {
                    name: name.clone(),
                    dtype: DataType::F32,
                    shape: row.shape().iter().map(|&d| d as i64).collect(),
                    data: row.iter().flat_map(|v| v.to_le_bytes()).collect(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
