//! A KServe v2 REST infer reply: the gRPC path's outputs as JSON `data`, or
//! as Triton's binary tensor data after a JSON header, element bytes read in
//! place.

use dsmil_proto::inference as pb;
use serde::{Serialize, Serializer};

use super::request::BinaryOutputs;
use super::*;
use crate::backend::DataType;

#[derive(Serialize)]
pub(super) struct InferReply<'a> {
    pub(super) model_name: &'a str,
    pub(super) model_version: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub(super) id: &'a str,
    pub(super) outputs: Vec<OutputReply<'a>>,
}

#[derive(Serialize)]
pub(super) struct OutputReply<'a> {
    pub(super) name: &'a str,
    pub(super) datatype: &'a str,
    pub(super) shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) parameters: Option<BinarySize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) data: Option<Elements<'a>>,
}

#[derive(Serialize)]
pub(super) struct BinarySize {
    pub(super) binary_data_size: usize,
}

/// A raw output, written as a flat JSON array of its values.
pub(super) struct Elements<'a> {
    pub(super) dtype: Option<DataType>,
    pub(super) bytes: &'a [u8],
}

pub(super) fn le<const N: usize>(chunk: &[u8]) -> [u8; N] {
    chunk.try_into().expect("chunks_exact gives N bytes")
}

impl Serialize for Elements<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.bytes;
        let Some(dtype) = self.dtype else {
            return s.collect_seq(std::iter::empty::<u8>());
        };
        match dtype {
            DataType::Bool => s.collect_seq(b.iter().map(|&x| x != 0)),
            DataType::U8 => s.collect_seq(b.iter()),
            DataType::I8 => s.collect_seq(b.iter().map(|&x| x as i8)),
            DataType::U16 => s.collect_seq(b.chunks_exact(2).map(|c| u16::from_le_bytes(le(c)))),
            DataType::I16 => s.collect_seq(b.chunks_exact(2).map(|c| i16::from_le_bytes(le(c)))),
            DataType::U32 => s.collect_seq(b.chunks_exact(4).map(|c| u32::from_le_bytes(le(c)))),
            DataType::I32 => s.collect_seq(b.chunks_exact(4).map(|c| i32::from_le_bytes(le(c)))),
            DataType::U64 => s.collect_seq(b.chunks_exact(8).map(|c| u64::from_le_bytes(le(c)))),
            DataType::I64 => s.collect_seq(b.chunks_exact(8).map(|c| i64::from_le_bytes(le(c)))),
            DataType::F16 => s.collect_seq(b.chunks_exact(2).map(|c| half::f16::from_le_bytes(le(c)).to_f32())),
            DataType::BF16 => s.collect_seq(b.chunks_exact(2).map(|c| half::bf16::from_le_bytes(le(c)).to_f32())),
            // Non-finite values have no JSON spelling: serde_json writes null.
            DataType::F32 => s.collect_seq(b.chunks_exact(4).map(|c| f32::from_le_bytes(le(c)))),
            DataType::F64 => s.collect_seq(b.chunks_exact(8).map(|c| f64::from_le_bytes(le(c)))),
        }
    }
}

/// The gRPC answer as KServe's JSON; outputs asked for as binary data
/// follow the JSON, in order, and `Inference-Header-Content-Length` says
/// where the JSON ends.
pub(super) fn infer_reply(response: pb::ModelInferResponse, binary: &BinaryOutputs) -> Reply {
    let empty = bytes::Bytes::new();
    let mut tail: Vec<&[u8]> = Vec::new();
    let outputs = response
        .outputs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let raw = response.raw_output_contents.get(i).unwrap_or(&empty);
            let as_binary = binary.wants(&o.name);
            if as_binary {
                tail.push(raw);
            }
            OutputReply {
                name: &o.name,
                datatype: &o.datatype,
                shape: &o.shape,
                parameters: as_binary.then_some(BinarySize {
                    binary_data_size: raw.len(),
                }),
                data: (!as_binary).then_some(Elements {
                    dtype: DataType::from_kserve_name(&o.datatype),
                    bytes: raw,
                }),
            }
        })
        .collect();
    let reply = InferReply {
        model_name: &response.model_name,
        model_version: &response.model_version,
        id: &response.id,
        outputs,
    };
    let mut body = serde_json::to_vec(&reply).expect("a reply serializes");
    let builder = Response::builder().status(StatusCode::OK);
    let builder = if tail.is_empty() {
        builder.header(CONTENT_TYPE, "application/json")
    } else {
        let json_length = body.len();
        body.reserve(tail.iter().map(|t| t.len()).sum());
        tail.iter().for_each(|t| body.extend_from_slice(t));
        builder
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(HEADER_LENGTH, json_length)
    };
    builder
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}
