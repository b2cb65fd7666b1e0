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
//! A recurrent model's state (`--state IN=OUT`: output OUT of one call is
//! input IN of the next) is carried by the model itself, as a caller
//! streaming audio does: the samples are then one ordered stream, split
//! into sequences where an optional `sequence_start` array (bool or int64,
//! one per sample) is set. A sequence starts from the data's state input
//! when the file has it, else from zeros. [`Stepper`] feeds one model.
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
    /// Recurrent state: (input index, output name), see [`Stepper`].
    state: Vec<(usize, String)>,
    /// Samples that start a sequence (empty: only the first).
    starts: Vec<bool>,
}

/// A recurrent model's state link as the operator names it: output
/// `output` of one call becomes input `input` of the next.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StateLink {
    pub input: String,
    pub output: String,
}

/// Most state links one model may have.
pub const MAX_STATE_LINKS: usize = 16;

impl std::str::FromStr for StateLink {
    type Err = String;

    /// "IN=OUT".
    fn from_str(s: &str) -> Result<StateLink, String> {
        match s.split_once('=') {
            Some((input, output)) if !input.is_empty() && !output.is_empty() && !output.contains('=') => {
                Ok(StateLink {
                    input: input.to_owned(),
                    output: output.to_owned(),
                })
            }
            _ => Err(format!(
                "--state {s:?}: expected INPUT=OUTPUT (the output of one call that is the input of the next)"
            )),
        }
    }
}

/// One input's samples.
struct Column {
    name: String,
    values: Values,
    /// Whole inputs stacked on a new leading axis (else rows of a batch).
    stacked: bool,
    /// One whole input that every sample reads.
    shared: bool,
}

/// Most bytes of zeros a state the data leaves out may take: a recurrent
/// state is small, and the shape comes from a client's model.
const MAX_ZERO_STATE_BYTES: usize = 64 << 20;

/// A state input the data does not give: every sample reads zeros of the
/// input's shape (dynamic dimensions 1).
fn zeros(spec: &crate::backend::TensorSpec) -> Result<Column, String> {
    let dims: Vec<i64> = spec.shape.iter().map(|&d| d.max(1)).collect();
    match Tensor::byte_len(spec.dtype, &dims) {
        Some(bytes) if bytes <= MAX_ZERO_STATE_BYTES => {}
        _ => {
            return Err(format!(
                "state input {} is declared {}: more than {} MiB of zeros to start from; give its first \
                 state in the data",
                spec.name,
                crate::backend::format_shape(&spec.shape),
                MAX_ZERO_STATE_BYTES >> 20
            ));
        }
    }
    // One whole input, stacked: a leading axis of 1.
    let shape: Vec<usize> = std::iter::once(1).chain(dims.iter().map(|&d| d as usize)).collect();
    let values = match spec.dtype {
        DataType::F32 => Values::F32(ArrayD::zeros(shape)),
        DataType::I64 => Values::I64(ArrayD::zeros(shape)),
        DataType::Bool => Values::Bool(ArrayD::from_elem(shape, false)),
        other => {
            return Err(format!(
                "state input {}: {other} state cannot start from zeros",
                spec.name
            ));
        }
    };
    Ok(Column {
        name: spec.name.clone(),
        values,
        stacked: true,
        shared: true,
    })
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
        Samples::read_with_state(path, signature, limit, &[])
    }

    /// Reads an .npz from `reader`; `source` names it in errors (a path, or
    /// whatever the bytes came from).
    pub fn from_reader<R: Read + Seek>(
        reader: R,
        source: &str,
        signature: &Signature,
        limit: usize,
    ) -> Result<Samples, CompressError> {
        Samples::from_reader_with_state(reader, source, signature, limit, &[])
    }

    /// [`Samples::read`] for a recurrent model whose `state` links are
    /// carried from sample to sample.
    pub fn read_with_state(
        path: &Path,
        signature: &Signature,
        limit: usize,
        state: &[StateLink],
    ) -> Result<Samples, CompressError> {
        let file = std::fs::File::open(path).map_err(|e| CompressError::Data {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Samples::from_reader_with_state(file, &path.display().to_string(), signature, limit, state)
    }

    /// [`Samples::from_reader`] with `state` links (see the module doc).
    pub fn from_reader_with_state<R: Read + Seek>(
        reader: R,
        source: &str,
        signature: &Signature,
        limit: usize,
        state: &[StateLink],
    ) -> Result<Samples, CompressError> {
        let err = |detail: String| CompressError::Data {
            path: source.to_owned(),
            detail,
        };
        // A bad link is the flag's problem, not the data file's.
        let links = links(signature, state).map_err(CompressError::InvalidOption)?;
        let mut npz = Npz::open(reader).map_err(|e| err(format!("not an .npz file: {e}")))?;
        let names = npz.names();
        let mut inputs = Vec::new();
        let mut count = usize::MAX;
        for (index, spec) in signature.inputs.iter().enumerate() {
            if !names.contains(&spec.name) && links.iter().any(|(i, _)| *i == index) {
                inputs.push(zeros(spec).map_err(err)?);
                continue;
            }
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
                shared: false,
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
        let starts = if names.iter().any(|n| n == "sequence_start") {
            if links.is_empty() {
                return Err(err(
                    "array \"sequence_start\" is given but no --state links the model's calls".into(),
                ));
            }
            let (starts, rank): (Vec<bool>, usize) = match npz.array::<bool>("sequence_start", &["|b1"], "bool") {
                Ok(a) => (a.iter().copied().collect(), a.ndim()),
                Err(_) => {
                    let a = npz
                        .array::<i64>("sequence_start", &["<i8", ">i8"], "bool or int64")
                        .map_err(err)?;
                    (a.iter().map(|v| *v != 0).collect(), a.ndim())
                }
            };
            if rank != 1 {
                return Err(err(format!(
                    "array \"sequence_start\" has {rank} dimensions; it holds one flag per sample"
                )));
            }
            if starts.len() < count {
                return Err(err(format!(
                    "{} sequence_start values for {count} samples",
                    starts.len()
                )));
            }
            starts
        } else {
            Vec::new()
        };
        if let Some(l) = &labels
            && l.len() < count
        {
            return Err(err(format!("{} labels for {count} samples", l.len())));
        }
        Ok(Samples {
            inputs,
            labels,
            count: count.min(limit),
            state: links,
            starts,
        })
    }

    /// Whether the samples are one stream whose state the model carries
    /// (then they run one at a time, in order, each model by its
    /// [`Stepper`]).
    pub fn is_sequential(&self) -> bool {
        !self.state.is_empty()
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
        if self.is_sequential() || self.inputs.iter().any(|c| c.stacked) || start + len > self.count || len == 0 {
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

    /// Sample `i` as one-row input tensors, in signature order (a state
    /// input as the data gives it, or zeros: no state carried).
    pub fn sample(&self, i: usize) -> Vec<Tensor> {
        self.inputs
            .iter()
            .map(|c| c.tensor(if c.shared { 0 } else { i }, 1))
            .collect()
    }

    fn starts_sequence(&self, i: usize) -> bool {
        i == 0 || self.starts.get(i).copied().unwrap_or(false)
    }
}

/// The signature's (input index, output name) of each link, checked: both
/// names exist and the types match.
fn links(signature: &Signature, state: &[StateLink]) -> Result<Vec<(usize, String)>, String> {
    if state.len() > MAX_STATE_LINKS {
        return Err(format!("{} --state links; at most {MAX_STATE_LINKS}", state.len()));
    }
    let names =
        |specs: &[crate::backend::TensorSpec]| specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ");
    let refuse = |link: &StateLink, why: String| format!("--state {}={}: {why}", link.input, link.output);
    if let Some((i, link)) = state
        .iter()
        .enumerate()
        .find(|(i, l)| state[..*i].iter().any(|m| m.input == l.input))
    {
        return Err(refuse(
            link,
            format!("input {:?} is linked twice (link {})", link.input, i + 1),
        ));
    }
    state
        .iter()
        .map(|link| {
            let Some(index) = signature.inputs.iter().position(|s| s.name == link.input) else {
                let why = format!(
                    "the model has no input {:?} (its inputs: {})",
                    link.input,
                    names(&signature.inputs)
                );
                return Err(refuse(link, why));
            };
            let Some(output) = signature.outputs.iter().find(|s| s.name == link.output) else {
                let why = format!(
                    "the model has no output {:?} (its outputs: {})",
                    link.output,
                    names(&signature.outputs)
                );
                return Err(refuse(link, why));
            };
            let input = &signature.inputs[index];
            if input.dtype != output.dtype {
                return Err(refuse(
                    link,
                    format!("the input is {} but the output is {}", input.dtype, output.dtype),
                ));
            }
            // Where the output's shape is fixed, the input must take it.
            if output.shape.iter().all(|&d| d >= 0) && !input.accepts_shape(&output.shape) {
                let (o, i) = (
                    crate::backend::format_shape(&output.shape),
                    crate::backend::format_shape(&input.shape),
                );
                return Err(refuse(link, format!("the output is {o} but the input is {i}")));
            }
            Ok((index, link.output.clone()))
        })
        .collect()
}

/// Feeds one model the samples in order, carrying its state outputs into
/// the next sample's state inputs until a sequence starts again. For
/// samples without state links it is [`Samples::sample`].
pub struct Stepper<'a> {
    samples: &'a Samples,
    /// Per link, the state the last run left.
    carried: Vec<Option<Tensor>>,
}

impl<'a> Stepper<'a> {
    pub fn new(samples: &'a Samples) -> Stepper<'a> {
        Stepper {
            samples,
            carried: vec![None; samples.state.len()],
        }
    }

    /// Sample `i`'s inputs, its state inputs taken from the last run
    /// unless `i` starts a sequence.
    pub fn inputs(&self, i: usize) -> Vec<Tensor> {
        let mut inputs = self.samples.sample(i);
        if !self.samples.starts_sequence(i) {
            for ((index, _), carried) in self.samples.state.iter().zip(&self.carried) {
                if let Some(state) = carried {
                    inputs[*index] = Tensor {
                        name: inputs[*index].name.clone(),
                        ..state.clone()
                    };
                }
            }
        }
        inputs
    }

    /// Keeps the state outputs of the run just made.
    pub fn keep(&mut self, outputs: &[Tensor]) {
        for ((_, name), carried) in self.samples.state.iter().zip(&mut self.carried) {
            if let Some(t) = outputs.iter().find(|t| &t.name == name) {
                *carried = Some(t.clone());
            }
        }
    }

    /// [`Stepper::keep`] for one output seen by a visiting run.
    pub fn keep_view(&mut self, t: &crate::backend::TensorView) {
        for ((_, name), carried) in self.samples.state.iter().zip(&mut self.carried) {
            if name == t.name {
                *carried = Some(Tensor {
                    name: t.name.to_owned(),
                    dtype: t.dtype,
                    shape: t.shape.to_vec(),
                    data: bytes::Bytes::copy_from_slice(t.data),
                });
            }
        }
    }
}

#[cfg(test)]
#[path = "data_tests.rs"]
mod tests;
