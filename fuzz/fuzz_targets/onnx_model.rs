//! An uploaded model's bytes through what a deploy does before any runtime
//! sees them: decode, structural checks, the security scan
//! (`model::inspect_onnx`), operator support and the memory estimate.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match dsmild::model::inspect_onnx(data) {
        Ok(info) => {
            let _ = dsmild::model::check_operators(&info, &["com.microsoft".to_owned()]);
            let _ = dsmild::deploy::admission::estimate(&info, 4, 64);
            let _ = info.is_quantized();
        }
        Err(e) => {
            let _ = tonic::Status::from(dsmild::deploy::DeployError::from(e));
        }
    }
});
