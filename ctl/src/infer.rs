//! `dsmilctl infer`: one ModelInfer call with inputs from files or random.

use std::path::PathBuf;

use anyhow::{Context, bail};
use dsmil_proto::inference::model_infer_request::InferInputTensor;
use dsmil_proto::inference::{ModelInferRequest, ModelMetadataRequest};

use crate::client::Clients;
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
            find_input(&args.inputs, &input.name, meta.inputs.len())?
        };
        values.push((input.name.clone(), input.datatype.clone(), v));
    }
    let mut request = ModelInferRequest {
        model_name: args.model.clone(),
        model_version: args.version.clone(),
        ..Default::default()
    };
    for (name, datatype, v) in &values {
        request.inputs.push(InferInputTensor {
            name: name.clone(),
            datatype: datatype.clone(),
            shape: v.shape.clone(),
            ..Default::default()
        });
        request.raw_input_contents.push(tensors::encode(v, datatype)?);
    }
    let response = clients.inference.model_infer(request).await?.into_inner();
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
    if json {
        let doc = serde_json::json!({
            "model": response.model_name,
            "version": response.model_version,
            "outputs": outputs,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("{} version {}", response.model_name, response.model_version);
    for out in &outputs {
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
    Ok(())
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
