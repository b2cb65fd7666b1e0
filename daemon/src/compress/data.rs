//! Calibration and validation data: an .npz whose keys are the model's input
//! names (plus, for validation, an optional `labels`), each array holding
//! samples along its first axis. Checked against the model's signature before
//! anything runs: a missing name, a wrong dtype or shape, NaN or Inf is a
//! clear error, never a half-calibrated model.

use std::path::Path;

use ndarray::{ArrayD, Axis, IxDyn};
use ndarray_npy::NpzReader;

use super::CompressError;
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
        let err = |detail: String| CompressError::Data {
            path: path.display().to_string(),
            detail,
        };
        let file = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
        let mut npz = NpzReader::new(file).map_err(|e| err(format!("not an .npz file: {e}")))?;
        let names: Vec<String> = npz
            .names()
            .map_err(|e| err(e.to_string()))?
            .iter()
            .map(|n| n.trim_end_matches(".npy").to_owned())
            .collect();
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
            let array: ArrayD<f32> = npz
                .by_name::<ndarray::OwnedRepr<f32>, IxDyn>(&spec.name)
                .map_err(|e| err(format!("array {:?}: {e} (expected float32)", spec.name)))?;
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
            let labels: ArrayD<i64> = npz
                .by_name::<ndarray::OwnedRepr<i64>, IxDyn>("labels")
                .map_err(|e| err(format!("array \"labels\": {e} (expected int64 class ids)")))?;
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
