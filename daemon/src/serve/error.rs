//! Why an inference request was refused. Request-shape errors name the
//! tensor and what was expected, so a client author can fix the call from the
//! message alone.

use crate::backend::PoolError;

#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("model {0:?} is not deployed")]
    ModelNotFound(String),
    #[error("model {model:?} has no version {asked} serving (serving: {serving})")]
    VersionNotFound { model: String, asked: String, serving: u32 },
    #[error("the server is not ready yet (restoring deployments)")]
    NotReady,
    #[error("input {name:?} is not an input of {model} (inputs: {expected})")]
    UnknownInput {
        model: String,
        name: String,
        expected: String,
    },
    #[error("input {0:?} is given twice")]
    DuplicateInput(String),
    #[error("input(s) {missing} missing (the model needs {expected})")]
    MissingInput { missing: String, expected: String },
    #[error("input {name:?}: datatype {got:?} given, the model expects {expected}")]
    Datatype {
        name: String,
        got: String,
        expected: String,
    },
    #[error("input {name:?}: shape {got} does not fit the model's {expected} (? = any size)")]
    Shape {
        name: String,
        got: String,
        expected: String,
    },
    #[error("input {name:?}: {got} bytes of data, but shape {shape} of {dtype} needs {expected}")]
    ByteSize {
        name: String,
        got: usize,
        expected: usize,
        shape: String,
        dtype: String,
    },
    #[error("input {name:?}: {got} values in contents, but shape {shape} needs {expected}")]
    ElementCount {
        name: String,
        got: usize,
        expected: usize,
        shape: String,
    },
    #[error("input {name:?}: {detail}")]
    Contents { name: String, detail: String },
    #[error("raw_input_contents has {raw} entries for {inputs} inputs; send one per input, or none")]
    RawCount { raw: usize, inputs: usize },
    #[error("input {0:?} has typed contents while raw_input_contents is used; use one or the other")]
    MixedContents(String),
    #[error("requested output {name:?} is not an output of {model} (outputs: {expected})")]
    UnknownOutput {
        model: String,
        name: String,
        expected: String,
    },
    #[error(transparent)]
    Pool(#[from] PoolError),
}
