//! Calibration and validation data: an .npz whose keys are the model's input
//! names (plus, for validation, an optional `labels`), each array holding
//! samples along its first axis. An array of the input's own rank holds one
//! row per sample (the input's first axis is the batch); an array one rank
//! higher holds whole inputs stacked on a new leading axis, which is how a
//! fixed-batch-1 model, a scalar input (a sample rate) or a state tensor
//! whose batch is not its first axis gets many samples. FP32, INT64 and BOOL
//! inputs are read (only FP32 tensors are calibrated). Checked against the model's signature before
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
    inputs: Vec<Column>,
    labels: Option<Vec<i64>>,
    count: usize,
}

/// One input's samples.
struct Column {
    name: String,
    values: Values,
    /// Whole inputs stacked on a new leading axis (else rows of a batch).
    stacked: bool,
}

enum Values {
    F32(ArrayD<f32>),
    I64(ArrayD<i64>),
    Bool(ArrayD<bool>),
}

impl Values {
    fn shape(&self) -> &[usize] {
        match self {
            Values::F32(a) => a.shape(),
            Values::I64(a) => a.shape(),
            Values::Bool(a) => a.shape(),
        }
    }
}

/// Samples `start..start + len` of `array`: rows of a batch (a slice of
/// the first axis, which keeps it as the batch), or one whole input when
/// the samples are stacked (its new leading axis dropped).
fn pick<A: Copy>(array: &ArrayD<A>, start: usize, len: usize, stacked: bool) -> (Vec<i64>, Vec<A>) {
    let view = match stacked {
        true => array.index_axis(Axis(0), start),
        false => array.slice_axis(Axis(0), ndarray::Slice::from(start..start + len)),
    };
    (
        view.shape().iter().map(|&d| d as i64).collect(),
        view.iter().copied().collect(),
    )
}

impl Column {
    /// Samples `start..start + len` as one input tensor (`len` is 1 for
    /// stacked samples).
    fn tensor(&self, start: usize, len: usize) -> Tensor {
        let (dtype, shape, data) = match &self.values {
            Values::F32(a) => {
                let (shape, v) = pick(a, start, len, self.stacked);
                (DataType::F32, shape, v.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
            Values::I64(a) => {
                let (shape, v) = pick(a, start, len, self.stacked);
                (DataType::I64, shape, v.iter().flat_map(|x| x.to_le_bytes()).collect())
            }
            Values::Bool(a) => {
                let (shape, v) = pick(a, start, len, self.stacked);
                (DataType::Bool, shape, v.iter().map(|&b| u8::from(b)).collect())
            }
        };
        Tensor {
            name: self.name.clone(),
            dtype,
            shape,
            data,
        }
    }
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
            let values = match spec.dtype {
                DataType::F32 => {
                    let array: ArrayD<f32> = npz.array(&spec.name, &["<f4", ">f4"], "float32").map_err(err)?;
                    if let Some(bad) = array.iter().position(|v| !v.is_finite()) {
                        return Err(err(format!("array {:?} holds NaN or Inf (element {bad})", spec.name)));
                    }
                    Values::F32(array)
                }
                DataType::I64 => Values::I64(npz.array(&spec.name, &["<i8", ">i8"], "int64").map_err(err)?),
                DataType::Bool => Values::Bool(npz.array(&spec.name, &["|b1"], "bool").map_err(err)?),
                other => {
                    return Err(err(format!(
                        "input {}: data for {other} inputs cannot be given yet (FP32, INT64 and BOOL can)",
                        spec.name
                    )));
                }
            };
            let shape: Vec<i64> = values.shape().iter().map(|&d| d as i64).collect();
            // Checked per sample: a row with its batch axis of 1 put back, or
            // a whole input.
            let row: Vec<i64> = std::iter::once(1).chain(shape.iter().skip(1).copied()).collect();
            let stacked = if !shape.is_empty() && spec.accepts_shape(&row) {
                false
            } else if shape.len() == spec.shape.len() + 1 && spec.accepts_shape(&shape[1..]) {
                true
            } else {
                return Err(err(format!(
                    "array {:?} has shape {:?}; the input is {}: give samples along a first axis, as rows of \
                     the input's batch ({}) or as whole inputs stacked on a new axis ([N{}])",
                    spec.name,
                    shape,
                    crate::backend::format_shape(&spec.shape),
                    crate::backend::format_shape(&spec.shape),
                    spec.shape
                        .iter()
                        .map(|d| if *d < 0 { ",?".to_owned() } else { format!(",{d}") })
                        .collect::<String>()
                )));
            };
            count = count.min(shape.first().copied().unwrap_or(0) as usize);
            inputs.push(Column {
                name: spec.name.clone(),
                values,
                stacked,
            });
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

    /// Samples `start..start + len` as one batch of `len` rows, when every
    /// input holds rows of a batch (None when some are stacked whole
    /// inputs, which cannot be joined). For a batched model, one run of
    /// this answers like `len` runs of [`Samples::sample`], row for row.
    pub fn rows(&self, start: usize, len: usize) -> Option<Vec<Tensor>> {
        if self.inputs.iter().any(|c| c.stacked) || start + len > self.count || len == 0 {
            return None;
        }
        Some(self.inputs.iter().map(|c| c.tensor(start, len)).collect())
    }

    /// The samples from `first` on, in runs: batches of up to `max_rows`
    /// rows for a batched model whose data is rows, else one sample per
    /// run. Yields each run's inputs and how many samples it holds.
    pub fn runs(
        &self,
        first: usize,
        batched: bool,
        max_rows: usize,
    ) -> impl Iterator<Item = (Vec<Tensor>, usize)> + '_ {
        let step = if batched && self.rows(0, 1).is_some() {
            max_rows.max(1)
        } else {
            1
        };
        (first.min(self.count)..self.count).step_by(step).map(move |start| {
            if step == 1 {
                return (self.sample(start), 1);
            }
            let len = step.min(self.count - start);
            (self.rows(start, len).expect("row data joins (checked above)"), len)
        })
    }

    /// How many rows of this data to run at once for work that only sums
    /// over samples (calibration's statistics, the gate's tallies): about
    /// 1 MiB of inputs, at most 32 rows, since every activation of the run
    /// is held at once.
    pub fn rows_per_run(&self) -> usize {
        let row_bytes: usize = self
            .inputs
            .iter()
            .map(|c| c.values.shape().iter().skip(1).product::<usize>() * 8)
            .sum();
        ((1 << 20) / row_bytes.max(1)).clamp(1, 32)
    }

    /// Sample `i` as one-row input tensors, in signature order.
    pub fn sample(&self, i: usize) -> Vec<Tensor> {
        self.inputs.iter().map(|c| c.tensor(i, 1)).collect()
    }
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
