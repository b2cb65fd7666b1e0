//! An inference request off the wire, through the daemon's request checking
//! (`serve::convert::request_inputs`), against a batched and an unbatched
//! signature. Whatever it accepts must be what the runtime is promised:
//! every input, of the declared dtype, a shape the signature admits, and
//! exactly as many bytes as that shape holds, within the limits.

#![no_main]

use dsmil_proto::inference::ModelInferRequest;
use dsmild::backend::{DataType, RequestLimits, Signature, TensorSpec};
use libfuzzer_sys::fuzz_target;
use prost::Message;

const LIMITS: RequestLimits = RequestLimits {
    max_bytes: 1 << 20,
    max_batch: 64,
};

fn spec(name: &str, dtype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
    }
}

fn signatures() -> [Signature; 2] {
    let batched = Signature {
        inputs: vec![
            spec("x", DataType::F32, &[-1, 4]),
            spec("ids", DataType::I64, &[-1, 3]),
            spec("mask", DataType::Bool, &[-1]),
            spec("h", DataType::F16, &[-1, 2, -1]),
        ],
        outputs: vec![spec("y", DataType::F32, &[-1, 2])],
    };
    let fixed = Signature {
        inputs: vec![spec("x", DataType::F32, &[2, 4]), spec("b", DataType::U8, &[-1, 3])],
        outputs: vec![spec("y", DataType::F32, &[2])],
    };
    [batched, fixed]
}

fuzz_target!(|data: &[u8]| {
    let Ok(request) = ModelInferRequest::decode(data) else {
        return;
    };
    for signature in signatures() {
        let mut req = request.clone();
        match dsmild::serve::convert::request_inputs("fuzz", &mut req, &signature, LIMITS) {
            Ok(tensors) => check(&signature, &tensors),
            Err(e) => {
                // The message and status a client would get must build too.
                let _ = tonic::Status::from(e);
            }
        }
    }
});

fn check(signature: &Signature, tensors: &[dsmild::backend::Tensor]) {
    assert_eq!(tensors.len(), signature.inputs.len(), "every input, once");
    let mut total = 0usize;
    let mut rows = None;
    for (tensor, spec) in tensors.iter().zip(&signature.inputs) {
        assert_eq!(tensor.name, spec.name);
        assert_eq!(tensor.dtype, spec.dtype);
        assert!(
            spec.accepts_shape(&tensor.shape),
            "{:?} for {:?}",
            tensor.shape,
            spec.shape
        );
        let elements = tensor
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
            .expect("an accepted shape's size fits");
        assert_eq!(tensor.data.len(), elements * spec.dtype.byte_size(), "{}", spec.name);
        total += tensor.data.len();
        if signature.is_batched() {
            let batch = tensor.shape[0];
            assert!(batch.unsigned_abs() <= LIMITS.max_batch);
            assert_eq!(*rows.get_or_insert(batch), batch, "one batch size");
        }
    }
    assert!(total <= LIMITS.max_bytes, "{total} bytes accepted");
}
