//! A KServe v2 REST infer request (JSON, or a JSON header followed by
//! Triton's binary tensor data) turned into the protobuf request the gRPC
//! path takes: names, datatypes, shapes and values checked as they are read,
//! nested `data` flattened, nothing of a size the body does not hold
//! allocated.

use std::collections::HashMap;
use std::fmt;

use dsmil_proto::inference as pb;
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::*;
use crate::backend::DataType;

// --- The inference request -------------------------------------------------

#[derive(Deserialize)]
pub(super) struct InferBody {
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) parameters: Parameters,
    pub(super) inputs: Vec<InputBody>,
    #[serde(default)]
    pub(super) outputs: Vec<OutputBody>,
}

#[derive(Deserialize)]
pub(super) struct InputBody {
    pub(super) name: String,
    pub(super) shape: Vec<i64>,
    pub(super) datatype: String,
    #[serde(default)]
    pub(super) parameters: Parameters,
    #[serde(default)]
    pub(super) data: Option<Values>,
}

#[derive(Deserialize)]
pub(super) struct OutputBody {
    pub(super) name: String,
    #[serde(default)]
    pub(super) parameters: Parameters,
}

/// The parameters this server reads; others are ignored, as KServe allows.
#[derive(Default, Deserialize)]
pub(super) struct Parameters {
    /// Request: every output as binary data unless it says otherwise.
    #[serde(default)]
    pub(super) binary_data_output: Option<bool>,
    /// Input: this many bytes of the binary part are its data.
    #[serde(default)]
    pub(super) binary_data_size: Option<u64>,
    /// Output: as binary data, or JSON.
    #[serde(default)]
    pub(super) binary_data: Option<bool>,
}

/// Which outputs go back as binary data: by name, else the default.
#[derive(Debug)]
pub(super) struct BinaryOutputs {
    pub(super) default: bool,
    pub(super) named: HashMap<String, bool>,
}

impl BinaryOutputs {
    pub(super) fn wants(&self, name: &str) -> bool {
        self.named.get(name).copied().unwrap_or(self.default)
    }
}

/// The JSON (and binary) body as the gRPC request it means.
pub(super) fn parse_infer(
    name: &str,
    version: &str,
    body: &Bytes,
    header_length: Option<usize>,
) -> Result<(pb::ModelInferRequest, BinaryOutputs), RestError> {
    let json_length = header_length.unwrap_or(body.len());
    if json_length > body.len() {
        return Err(RestError::HeaderBeyondBody {
            length: json_length,
            body: body.len(),
        });
    }
    let parsed: InferBody = serde_json::from_slice(&body[..json_length])?;
    let binary_part = body.slice(json_length..);

    let binary_inputs = parsed
        .inputs
        .iter()
        .filter(|i| i.parameters.binary_data_size.is_some())
        .count();
    if binary_inputs != 0 && binary_inputs != parsed.inputs.len() {
        return Err(RestError::MixedBinary);
    }
    let mut raw = Vec::new();
    if binary_inputs > 0 {
        let claimed = parsed.inputs.iter().try_fold(0u64, |sum, i| {
            sum.checked_add(i.parameters.binary_data_size.unwrap_or(0))
        });
        if claimed != Some(binary_part.len() as u64) {
            return Err(RestError::BinarySize {
                claimed: claimed.unwrap_or(u64::MAX),
                body: binary_part.len(),
            });
        }
        let mut at = 0usize;
        for input in &parsed.inputs {
            // Within the body: the sizes add up to its length.
            let size = input.parameters.binary_data_size.unwrap_or(0) as usize;
            raw.push(binary_part.slice(at..at + size));
            at += size;
        }
    } else if !binary_part.is_empty() {
        return Err(RestError::BinarySize {
            claimed: 0,
            body: binary_part.len(),
        });
    }

    let binary = BinaryOutputs {
        default: parsed.parameters.binary_data_output.unwrap_or(false),
        named: parsed
            .outputs
            .iter()
            .filter_map(|o| o.parameters.binary_data.map(|b| (o.name.clone(), b)))
            .collect(),
    };
    let mut inputs = Vec::with_capacity(parsed.inputs.len());
    for input in parsed.inputs {
        let contents = match (binary_inputs, input.data) {
            (0, Some(values)) => match DataType::from_kserve_name(&input.datatype) {
                Some(dtype) => Some(typed_contents(&input.name, dtype, values)?),
                // Not a type dsmil serves: the domain says so, naming the
                // input's expected type.
                None => None,
            },
            (0, None) => {
                return Err(RestError::Input {
                    name: input.name,
                    detail: "no data (give \"data\", or binary_data_size and the bytes after the JSON)".into(),
                });
            }
            _ => None,
        };
        inputs.push(pb::model_infer_request::InferInputTensor {
            name: input.name,
            datatype: input.datatype,
            shape: input.shape,
            contents,
            ..Default::default()
        });
    }
    let request = pb::ModelInferRequest {
        model_name: name.to_owned(),
        model_version: version.to_owned(),
        id: parsed.id.unwrap_or_default(),
        inputs,
        outputs: parsed
            .outputs
            .into_iter()
            .map(|o| pb::model_infer_request::InferRequestedOutputTensor {
                name: o.name,
                ..Default::default()
            })
            .collect(),
        raw_input_contents: raw,
        ..Default::default()
    };
    Ok((request, binary))
}

/// A tensor's JSON `data`, flattened in row-major order: KServe allows a
/// flat array or one nested like the shape. Each value takes 8 bytes, and
/// JSON spends at least 2 on one, so this is at most 4 times the body.
#[derive(Debug, Default, PartialEq)]
pub(super) enum Values {
    #[default]
    Empty,
    Ints(Vec<i64>),
    Floats(Vec<f64>),
    Bools(Vec<bool>),
}

pub(super) const MIXED: &str = "data mixes booleans and numbers";

impl Values {
    fn push_int(&mut self, v: i64) -> Result<(), &'static str> {
        match self {
            Values::Empty => *self = Values::Ints(vec![v]),
            Values::Ints(all) => all.push(v),
            Values::Floats(all) => all.push(v as f64),
            Values::Bools(_) => return Err(MIXED),
        }
        Ok(())
    }

    fn push_float(&mut self, v: f64) -> Result<(), &'static str> {
        match self {
            Values::Empty => *self = Values::Floats(vec![v]),
            Values::Ints(all) => {
                let mut floats: Vec<f64> = all.iter().map(|&i| i as f64).collect();
                floats.push(v);
                *self = Values::Floats(floats);
            }
            Values::Floats(all) => all.push(v),
            Values::Bools(_) => return Err(MIXED),
        }
        Ok(())
    }

    fn push_bool(&mut self, v: bool) -> Result<(), &'static str> {
        match self {
            Values::Empty => *self = Values::Bools(vec![v]),
            Values::Bools(all) => all.push(v),
            Values::Ints(_) | Values::Floats(_) => return Err(MIXED),
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Values {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Values, D::Error> {
        let mut values = Values::Empty;
        Flatten(&mut values).deserialize(deserializer)?;
        Ok(values)
    }
}

/// Appends a value, or every value of a (nested) array, to the `Values`.
pub(super) struct Flatten<'a>(&'a mut Values);

impl<'de> DeserializeSeed<'de> for Flatten<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("numbers or booleans, in a flat or nested array (string data is not served)")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.0.push_bool(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.0.push_int(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        match i64::try_from(v) {
            Ok(v) => self.0.push_int(v),
            Err(_) => Err("an integer above 2^63 - 1"),
        }
        .map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.0.push_float(v).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let values = self.0;
        while seq.next_element_seed(Flatten(&mut *values))?.is_some() {}
        Ok(())
    }
}

/// JSON values as the typed contents of the gRPC request for `dtype` (half
/// types travel as fp32, as in gRPC); the domain checks the count against
/// the shape and narrow types' ranges.
pub(super) fn typed_contents(
    name: &str,
    dtype: DataType,
    values: Values,
) -> Result<pb::InferTensorContents, RestError> {
    let bad = |detail: String| RestError::Input {
        name: name.to_owned(),
        detail,
    };
    let range = |what: &str| bad(format!("a value does not fit {what}"));
    let mut c = pb::InferTensorContents::default();
    match (dtype, values) {
        (_, Values::Empty) => {}
        (DataType::Bool, Values::Bools(v)) => c.bool_contents = v,
        (DataType::F16 | DataType::BF16 | DataType::F32, Values::Floats(v)) => {
            c.fp32_contents = v.into_iter().map(|x| x as f32).collect();
        }
        (DataType::F16 | DataType::BF16 | DataType::F32, Values::Ints(v)) => {
            c.fp32_contents = v.into_iter().map(|x| x as f32).collect();
        }
        (DataType::F64, Values::Floats(v)) => c.fp64_contents = v,
        (DataType::F64, Values::Ints(v)) => c.fp64_contents = v.into_iter().map(|x| x as f64).collect(),
        (DataType::I8 | DataType::I16 | DataType::I32, Values::Ints(v)) => {
            c.int_contents = v
                .into_iter()
                .map(i32::try_from)
                .collect::<Result<_, _>>()
                .map_err(|_| range(dtype.kserve_name()))?;
        }
        (DataType::I64, Values::Ints(v)) => c.int64_contents = v,
        (DataType::U8 | DataType::U16 | DataType::U32, Values::Ints(v)) => {
            c.uint_contents = v
                .into_iter()
                .map(u32::try_from)
                .collect::<Result<_, _>>()
                .map_err(|_| range(dtype.kserve_name()))?;
        }
        (DataType::U64, Values::Ints(v)) => {
            c.uint64_contents = v
                .into_iter()
                .map(u64::try_from)
                .collect::<Result<_, _>>()
                .map_err(|_| range(dtype.kserve_name()))?;
        }
        (DataType::Bool, _) => return Err(bad("BOOL data is true or false".into())),
        (_, Values::Bools(_)) => return Err(bad(format!("booleans given for {}", dtype.kserve_name()))),
        (_, Values::Floats(_)) => return Err(bad(format!("{} data must be integers", dtype.kserve_name()))),
    }
    Ok(c)
}

// --- The inference response ------------------------------------------------
