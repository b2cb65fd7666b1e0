//! Calibration/validation data (an .npz) as a deploy's --calib and --val
//! upload it, through `compress::Samples`. Every sample it accepts must be
//! readable whole.

#![no_main]

use std::io::Cursor;

use dsmild::backend::{DataType, Signature, TensorSpec};
use dsmild::compress::Samples;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let signature = Signature {
        inputs: vec![TensorSpec {
            name: "x".into(),
            dtype: DataType::F32,
            shape: vec![-1, 4],
        }],
        outputs: vec![],
    };
    match Samples::from_reader(Cursor::new(data), "fuzz.npz", &signature, 1000) {
        Ok(samples) => {
            assert!(!samples.is_empty());
            for i in 0..samples.len() {
                let row = samples.sample(i);
                assert_eq!(row[0].shape, vec![1, 4]);
                assert_eq!(row[0].data.len(), 16);
            }
            if let Some(labels) = samples.labels() {
                assert_eq!(labels.len(), samples.len());
            }
        }
        Err(e) => {
            // As a deploy reports it: the pipeline's error, then the status.
            let _ = tonic::Status::from(dsmild::deploy::DeployError::from(e));
        }
    }
});
