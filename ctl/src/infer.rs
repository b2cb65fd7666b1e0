//! `dsmilctl infer`: ModelInfer with inputs from files or random. A batch
//! larger than the model's max batch (ModelConfig) is sent in chunks of at
//! most that many rows, and the answers joined, as Triton's clients do.

use std::path::PathBuf;

use anyhow::{Context, bail};
use dsmil_proto::inference::model_infer_request::InferInputTensor;
use dsmil_proto::inference::{ModelConfigRequest, ModelInferRequest, ModelInferResponse, ModelMetadataRequest};

use crate::client::Clients;
use crate::output;
use crate::tensors::{self, Values};

pub struct Args {
    pub model: String,
    pub version: String,
    /// FILE.npy, FILE.npz or NAME=FILE.npy, repeatable.
    pub inputs: Vec<String>,
    pub random: bool,
    pub batch: i64,
}

pub async fn run(clients: &mut Clients, args: Args, json: bool) -> anyhow::Result<()> {
    let meta = clients
        .inference
        .model_metadata(ModelMetadataRequest {
            name: args.model.clone(),
            version: args.version.clone(),
        })
        .await?
        .into_inner();
    let mut values: Vec<(String, String, Values)> = Vec::new();
    for input in &meta.inputs {
        let v = if args.random {
            tensors::random(&input.datatype, &input.shape, args.batch)
        } else {
            let v = find_input(&args.inputs, &input.name, meta.inputs.len())?;
            tensors::check_exact(&v, &input.datatype).with_context(|| format!("input {:?}", input.name))?;
            v
        };
        values.push((input.name.clone(), input.datatype.clone(), v));
    }
    let max_batch = clients
        .inference
        .model_config(ModelConfigRequest {
            name: args.model.clone(),
            version: args.version.clone(),
        })
        .await?
        .into_inner()
        .config
        .map_or(0, |c| c.max_batch_size.max(0) as usize);
    let mut encoded = Vec::new();
    for (name, datatype, v) in &values {
        encoded.push((name, datatype, v.shape.clone(), tensors::encode(v, datatype)?));
    }
    // A batched model takes its rows in chunks of at most max_batch.
    let rows = encoded
        .first()
        .and_then(|e| e.2.first())
        .map_or(1, |&r| r.max(0) as usize);
    let chunk = if max_batch > 0 && rows > max_batch {
        max_batch
    } else {
        rows.max(1)
    };
    let mut response: Option<ModelInferResponse> = None;
    // Each output's rows as they arrive, joined once at the end.
    let mut joined_raw: Vec<Vec<u8>> = Vec::new();
    for start in (0..rows.max(1)).step_by(chunk) {
        let take = chunk.min(rows.saturating_sub(start)).max(1);
        let mut request = ModelInferRequest {
            model_name: args.model.clone(),
            model_version: args.version.clone(),
            ..Default::default()
        };
        for (name, datatype, shape, raw) in &encoded {
            let (shape, raw) = if chunk < rows {
                let row_bytes = raw.len() / rows;
                let mut part = shape.clone();
                part[0] = take as i64;
                (part, raw[start * row_bytes..(start + take) * row_bytes].to_vec())
            } else {
                (shape.clone(), raw.clone())
            };
            request.inputs.push(InferInputTensor {
                name: (*name).clone(),
                datatype: (*datatype).clone(),
                shape,
                ..Default::default()
            });
            request.raw_input_contents.push(raw.into());
        }
        let part = clients.inference.model_infer(request).await?.into_inner();
        if joined_raw.is_empty() {
            joined_raw = part.raw_output_contents.iter().map(|raw| raw.to_vec()).collect();
        } else {
            for (raw, more) in joined_raw.iter_mut().zip(&part.raw_output_contents) {
                raw.extend_from_slice(more);
            }
        }
        response = Some(match response {
            None => part,
            Some(mut joined) => {
                for (i, out) in joined.outputs.iter_mut().enumerate() {
                    if let (Some(first), Some(more)) = (out.shape.first_mut(), part.outputs.get(i)) {
                        *first += more.shape.first().copied().unwrap_or(0);
                    }
                }
                joined
            }
        });
    }
    let mut response = response.context("no request was sent")?;
    response.raw_output_contents = joined_raw.into_iter().map(Into::into).collect();
    let mut outputs = Vec::new();
    for (i, out) in response.outputs.iter().enumerate() {
        let raw = response
            .raw_output_contents
            .get(i)
            .with_context(|| format!("output {} came without data", out.name))?;
        outputs.push(serde_json::json!({
            "name": out.name,
            "datatype": out.datatype,
            "shape": out.shape,
            "data": tensors::decode(raw, &out.datatype)?,
        }));
    }
    let doc = serde_json::json!({
        "model": response.model_name,
        "version": response.model_version,
        "outputs": outputs,
    });
    output::print(&doc, json, || print_outputs(&response, &outputs))
}

/// The outputs for people: at most the first 20 values of each.
fn print_outputs(response: &ModelInferResponse, outputs: &[serde_json::Value]) {
    println!("{} version {}", response.model_name, response.model_version);
    for out in outputs {
        let data = out["data"].as_array().expect("built above");
        let shown: Vec<String> = data.iter().take(20).map(|v| v.to_string()).collect();
        let more = if data.len() > 20 {
            format!(" … ({} values)", data.len())
        } else {
            String::new()
        };
        println!(
            "  {} {} {}: [{}]{more}",
            out["name"].as_str().unwrap_or(""),
            out["datatype"].as_str().unwrap_or(""),
            out["shape"],
            shown.join(", ")
        );
    }
}

fn find_input(args: &[String], name: &str, input_count: usize) -> anyhow::Result<Values> {
    for arg in args {
        if let Some((key, file)) = arg.split_once('=') {
            if key == name {
                return tensors::read_npy(&PathBuf::from(file));
            }
            continue;
        }
        let path = PathBuf::from(arg);
        if arg.ends_with(".npz") {
            if tensors::npz_names(&path)?.iter().any(|n| n == name) {
                return tensors::read_npz_entry(&path, name);
            }
        } else if input_count == 1 {
            return tensors::read_npy(&path);
        }
    }
    bail!(
        "no data for input {name:?}: pass --input FILE.npy, --input {name}=FILE.npy, an .npz with key {name:?}, or --random"
    )
}
