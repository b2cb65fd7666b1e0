//! The REST front's unit tests: routes, the JSON and binary forms, the
//! code mapping.

use super::reply::*;
use super::request::*;
use super::*;
use crate::backend::DataType;

#[test]
fn routes_are_kserve_v2s() {
    assert_eq!(Route::of("/v2"), Some(Route::Server));
    assert_eq!(Route::of("/v2/"), Some(Route::Server));
    assert_eq!(Route::of("/v2/health/live"), Some(Route::Live));
    assert_eq!(Route::of("/v2/health/ready"), Some(Route::Ready));
    assert_eq!(
        Route::of("/v2/models/digits"),
        Some(Route::Metadata {
            name: "digits",
            version: ""
        })
    );
    assert_eq!(
        Route::of("/v2/models/digits/versions/3/infer"),
        Some(Route::Infer {
            name: "digits",
            version: "3"
        })
    );
    assert_eq!(
        Route::of("/v2/models/digits/versions/3/ready"),
        Some(Route::ModelReady {
            name: "digits",
            version: "3"
        })
    );
    for nothing in [
        "/",
        "/v1/models/x",
        "/v2x",
        "/v2/models",
        "/v2/models//infer",
        "/v2/health",
    ] {
        assert_eq!(Route::of(nothing), None, "{nothing}");
    }
}

#[test]
fn data_is_flattened_whether_flat_or_nested() {
    let flat: Values = serde_json::from_str("[1, 2, 3, 4]").unwrap();
    let nested: Values = serde_json::from_str("[[1, 2], [3, 4]]").unwrap();
    assert_eq!(flat, Values::Ints(vec![1, 2, 3, 4]));
    assert_eq!(nested, flat);
    let floats: Values = serde_json::from_str("[[1, 2.5], [3]]").unwrap();
    assert_eq!(floats, Values::Floats(vec![1.0, 2.5, 3.0]));
    let bools: Values = serde_json::from_str("[true, [false]]").unwrap();
    assert_eq!(bools, Values::Bools(vec![true, false]));
    for refused in ["[1, true]", "[\"a\"]", "[{}]", "[18446744073709551615]"] {
        assert!(serde_json::from_str::<Values>(refused).is_err(), "{refused}");
    }
}

#[test]
fn json_values_become_the_typed_contents_grpc_carries() {
    let c = typed_contents("x", DataType::F32, Values::Ints(vec![1, 2])).unwrap();
    assert_eq!(c.fp32_contents, vec![1.0, 2.0]);
    let c = typed_contents("x", DataType::I64, Values::Ints(vec![-1, 1 << 40])).unwrap();
    assert_eq!(c.int64_contents, vec![-1, 1 << 40]);
    let c = typed_contents("x", DataType::U8, Values::Ints(vec![0, 255])).unwrap();
    assert_eq!(c.uint_contents, vec![0, 255]);
    let err = typed_contents("x", DataType::U32, Values::Ints(vec![-1])).unwrap_err();
    assert_eq!(err.to_string(), "input x: a value does not fit UINT32");
    let err = typed_contents("x", DataType::I64, Values::Floats(vec![0.5])).unwrap_err();
    assert_eq!(err.to_string(), "input x: INT64 data must be integers");
    assert!(typed_contents("x", DataType::Bool, Values::Ints(vec![1])).is_err());
}

#[test]
fn a_request_with_binary_inputs_takes_its_bytes_after_the_json() {
    let json = br#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","parameters":{"binary_data_size":8}}],
        "outputs":[{"name":"y","parameters":{"binary_data":false}}],"parameters":{"binary_data_output":true}}"#;
    let mut body = json.to_vec();
    body.extend(1.0f32.to_le_bytes());
    body.extend(2.0f32.to_le_bytes());
    let (request, binary) = parse_infer("m", "", &Bytes::from(body), Some(json.len())).unwrap();
    assert_eq!(
        request.raw_input_contents,
        vec![[1.0f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat()]
    );
    assert!(request.inputs[0].contents.is_none());
    assert!(!binary.wants("y") && binary.wants("z"));

    let mut short = json.to_vec();
    short.extend([0u8; 4]);
    let err = parse_infer("m", "", &Bytes::from(short), Some(json.len())).unwrap_err();
    assert!(matches!(err, RestError::BinarySize { claimed: 8, body: 4 }), "{err}");
    let err = parse_infer("m", "", &Bytes::from_static(b"{}"), Some(3)).unwrap_err();
    assert!(matches!(err, RestError::HeaderBeyondBody { .. }), "{err}");
}

#[test]
fn outputs_are_json_arrays_or_binary_after_the_json() {
    let response = pb::ModelInferResponse {
        model_name: "m".into(),
        model_version: "1".into(),
        outputs: vec![
            pb::model_infer_response::InferOutputTensor {
                name: "p".into(),
                datatype: "FP32".into(),
                shape: vec![1, 2],
                ..Default::default()
            },
            pb::model_infer_response::InferOutputTensor {
                name: "l".into(),
                datatype: "INT64".into(),
                shape: vec![1],
                ..Default::default()
            },
        ],
        raw_output_contents: vec![
            [0.5f32.to_le_bytes(), f32::NAN.to_le_bytes()].concat().into(),
            7i64.to_le_bytes().to_vec().into(),
        ],
        ..Default::default()
    };
    let binary = BinaryOutputs {
        default: false,
        named: [("l".to_owned(), true)].into(),
    };
    let reply = infer_reply(response, &binary);
    let length: usize = reply.headers()[HEADER_LENGTH].to_str().unwrap().parse().unwrap();
    let body = futures_body(reply);
    let head: serde_json::Value = serde_json::from_slice(&body[..length]).unwrap();
    assert_eq!(head["outputs"][0]["data"], serde_json::json!([0.5, null]));
    assert_eq!(head["outputs"][1]["parameters"]["binary_data_size"], 8);
    assert!(head.get("id").is_none());
    assert_eq!(&body[length..], 7i64.to_le_bytes());
}

fn futures_body(reply: Reply) -> Bytes {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(reply.into_body().collect()).unwrap().to_bytes()
}

#[test]
fn grpc_codes_become_the_http_statuses_clients_expect() {
    use tonic::Code;
    assert_eq!(http_status(Code::InvalidArgument), StatusCode::BAD_REQUEST);
    assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
    assert_eq!(http_status(Code::Unavailable), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(http_status(Code::ResourceExhausted), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(http_status(Code::Internal), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(RestError::TooLarge(1).status(), StatusCode::PAYLOAD_TOO_LARGE);
}
