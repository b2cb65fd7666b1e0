use dsmil_proto::inference::model_infer_request::InferInputTensor;
use dsmil_proto::inference::{InferTensorContents, ModelInferRequest};

use super::*;
use crate::backend::{DataType, RequestLimits, Signature, TensorSpec};
use crate::serve::InferError;

const LIMITS: RequestLimits = RequestLimits {
    max_bytes: 1 << 20,
    max_batch: 8,
};

fn signature() -> Signature {
    Signature {
        inputs: vec![
            TensorSpec {
                name: "x".into(),
                dtype: DataType::F32,
                shape: vec![-1, 2],
            },
            TensorSpec {
                name: "k".into(),
                dtype: DataType::I8,
                shape: vec![1],
            },
        ],
        outputs: vec![TensorSpec {
            name: "y".into(),
            dtype: DataType::F32,
            shape: vec![-1],
        }],
    }
}

fn input(name: &str, datatype: &str, shape: Vec<i64>) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: datatype.into(),
        shape,
        ..Default::default()
    }
}

fn raw_request() -> ModelInferRequest {
    ModelInferRequest {
        model_name: "m".into(),
        // Inputs in a different order from the signature on purpose.
        inputs: vec![input("k", "INT8", vec![1]), input("x", "FP32", vec![3, 2])],
        raw_input_contents: vec![
            vec![5].into(),
            [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ],
        ..Default::default()
    }
}

#[test]
fn raw_inputs_come_back_in_signature_order() {
    let tensors = request_inputs("m", &mut raw_request(), &signature(), LIMITS).unwrap();
    assert_eq!(tensors[0].name, "x");
    assert_eq!(tensors[0].shape, vec![3, 2]);
    assert_eq!(tensors[0].data.len(), 24);
    assert_eq!(tensors[1].data, vec![5]);
}

#[test]
fn typed_contents_are_encoded_and_range_checked() {
    let mut req = ModelInferRequest {
        model_name: "m".into(),
        ..Default::default()
    };
    let mut x = input("x", "FP32", vec![1, 2]);
    x.contents = Some(InferTensorContents {
        fp32_contents: vec![0.5, -1.0],
        ..Default::default()
    });
    let mut k = input("k", "INT8", vec![1]);
    k.contents = Some(InferTensorContents {
        int_contents: vec![-3],
        ..Default::default()
    });
    req.inputs = vec![x, k.clone()];
    let tensors = request_inputs("m", &mut req, &signature(), LIMITS).unwrap();
    assert_eq!(
        tensors[0].data,
        [0.5f32, -1.0].iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>()
    );
    assert_eq!(tensors[1].data, vec![(-3i8) as u8]);

    req.inputs[1].contents = Some(InferTensorContents {
        int_contents: vec![300],
        ..Default::default()
    });
    let err = request_inputs("m", &mut req, &signature(), LIMITS)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not fit INT8"), "{err}");
    req.inputs[1].contents = Some(InferTensorContents {
        int_contents: vec![1, 2],
        ..Default::default()
    });
    let err = request_inputs("m", &mut req, &signature(), LIMITS)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("input \"k\": 2 values in contents, but shape [1] needs 1"),
        "{err}"
    );
}

#[test]
fn each_mismatch_names_the_tensor_and_what_was_expected() {
    let sig = signature();
    let check = |mutate: &dyn Fn(&mut ModelInferRequest), needle: &str| {
        let mut req = raw_request();
        mutate(&mut req);
        let err = request_inputs("m", &mut req, &sig, LIMITS).unwrap_err().to_string();
        assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    };
    check(
        &|r| r.inputs[1].datatype = "FP64".into(),
        "input \"x\": datatype \"FP64\" given, the model expects FP32",
    );
    check(
        &|r| r.inputs[1].shape = vec![3, 3],
        "input \"x\": shape [3,3] does not fit the model's [?,2]",
    );
    check(&|r| r.inputs[1].shape = vec![6], "shape [6] does not fit");
    check(
        &|r| {
            let raw = &mut r.raw_input_contents[1];
            raw.truncate(raw.len().saturating_sub(1))
        },
        "input \"x\": 23 bytes of data, but shape [3,2] of FP32 needs 24",
    );
    check(
        &|r| r.inputs[0].name = "q".into(),
        "input \"q\" is not an input of m (inputs: x, k)",
    );
    check(
        &|r| {
            r.inputs.remove(0);
            r.raw_input_contents.remove(0);
        },
        "input(s) k missing",
    );
    check(&|r| r.inputs[1].name = "k".into(), "input \"k\" is given twice");
    check(
        &|r| {
            r.raw_input_contents.pop();
        },
        "raw_input_contents has 1 entries for 2 inputs",
    );
    check(
        &|r| r.inputs[0].contents = Some(InferTensorContents::default()),
        "use one or the other",
    );
}

/// A batched model: every input and output starts with a dynamic dimension.
fn batched() -> Signature {
    let spec = |name: &str, dtype, shape: Vec<i64>| TensorSpec {
        name: name.into(),
        dtype,
        shape,
    };
    Signature {
        inputs: vec![
            spec("a", DataType::F32, vec![-1, 4]),
            spec("b", DataType::I64, vec![-1]),
        ],
        outputs: vec![spec("y", DataType::F32, vec![-1])],
    }
}

fn typed(name: &str, datatype: &str, shape: Vec<i64>, contents: InferTensorContents) -> InferInputTensor {
    InferInputTensor {
        contents: Some(contents),
        ..input(name, datatype, shape)
    }
}

#[test]
fn sizes_from_the_header_are_checked_before_anything_is_allocated() {
    let sig = signature();
    // 2^40 x 2 floats and no values: the count is compared first (this
    // reserved 8 TiB and aborted the process).
    let mut req = ModelInferRequest {
        inputs: vec![
            typed("x", "FP32", vec![1 << 40, 2], InferTensorContents::default()),
            typed(
                "k",
                "INT8",
                vec![1],
                InferTensorContents {
                    int_contents: vec![1],
                    ..Default::default()
                },
            ),
        ],
        ..Default::default()
    };
    let err = request_inputs("m", &mut req, &sig, LIMITS).unwrap_err();
    assert!(matches!(err, InferError::ElementCount { got: 0, .. }), "{err}");
    // An element count that overflows (it wrapped to 0 and matched none).
    req.inputs[0].shape = vec![1 << 62, 2];
    let err = request_inputs("m", &mut req, &sig, LIMITS).unwrap_err();
    assert!(matches!(err, InferError::Overflow { .. }), "{err}");
    req.raw_input_contents = vec![vec![0; 8].into(), vec![1].into()];
    req.inputs.iter_mut().for_each(|i| i.contents = None);
    let err = request_inputs("m", &mut req, &sig, LIMITS).unwrap_err();
    assert!(matches!(err, InferError::Overflow { .. }), "{err}");
    // A shape that fits the address space but not the limit, with matching
    // data: RESOURCE_EXHAUSTED, naming the key.
    let rows = (LIMITS.max_bytes / 8 + 1) as i64;
    req.inputs[0].shape = vec![rows, 2];
    req.raw_input_contents[0] = vec![0; rows as usize * 8].into();
    let err = request_inputs("m", &mut req, &sig, LIMITS).unwrap_err();
    assert!(matches!(err, InferError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("serving.max_request_bytes"), "{err}");
    assert_eq!(crate::serve::status::infer_code(&err), tonic::Code::ResourceExhausted);
}

#[test]
fn a_batched_model_takes_at_most_its_max_batch_and_one_batch_size() {
    let sig = batched();
    let request = |a_rows: i64, b_rows: i64| ModelInferRequest {
        inputs: vec![input("a", "FP32", vec![a_rows, 4]), input("b", "INT64", vec![b_rows])],
        raw_input_contents: vec![
            vec![0; a_rows as usize * 16].into(),
            vec![0; b_rows as usize * 8].into(),
        ],
        ..Default::default()
    };
    assert_eq!(request_inputs("m", &mut request(8, 8), &sig, LIMITS).unwrap().len(), 2);
    let err = request_inputs("m", &mut request(9, 9), &sig, LIMITS).unwrap_err();
    assert!(
        err.to_string()
            .contains("input \"a\": a batch of 9 rows; this deployment takes at most 8"),
        "{err}"
    );
    let err = request_inputs("m", &mut request(2, 3), &sig, LIMITS).unwrap_err();
    assert!(matches!(err, InferError::BatchMismatch { .. }), "{err}");
    // Not batched (k has a fixed first dimension): rows are not limited.
    assert!(!signature().is_batched());
}

#[test]
fn unknown_requested_outputs_are_refused() {
    let err = select_outputs("m", &["nope".into()], &signature(), vec![])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("requested output \"nope\" is not an output of m (outputs: y)"),
        "{err}"
    );
}
