//! Latency of one-row ModelInfer calls over dsmild's Unix socket, against the
//! same model and input run by ONNX Runtime in this process. Run it through
//! bench/latency.sh, which starts a release dsmild and deploys the model.
//!
//!     infer_latency SOCKET MODEL_NAME MODEL_FILE [ITERATIONS]
//!
//! Prints one JSON line: p50/p90/p99 in microseconds for both paths.

use std::time::{Duration, Instant};

use dsmil_proto::inference::ModelInferRequest;
use dsmil_proto::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use dsmil_proto::inference::model_infer_request::InferInputTensor;
use dsmild::backend::{Backend, LoadOptions, OnnxRuntime, Tensor, locate_onnxruntime};

fn percentiles(mut samples: Vec<Duration>) -> [f64; 3] {
    samples.sort();
    [0.50, 0.90, 0.99].map(|q| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e6
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, name, file, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: infer_latency SOCKET MODEL_NAME MODEL_FILE [ITERATIONS]");
    };
    let iterations: usize = rest.first().map_or(Ok(2000), |s| s.parse())?;
    let warmup = iterations / 10;

    // The served model's signature decides the input: one row, values 1.0.
    let bytes = std::fs::read(file)?;
    let runtime = OnnxRuntime::load(&locate_onnxruntime(None)?)?;
    let mut local = runtime.load(&bytes, &LoadOptions::default())?;
    let inputs: Vec<Tensor> = local
        .signature()
        .inputs
        .iter()
        .map(|spec| {
            let shape = spec.concrete_shape(1);
            let mut t = Tensor::synthetic(spec, shape);
            t.data = vec![0; t.data.len()].into();
            t
        })
        .collect();

    let mut in_process = Vec::with_capacity(iterations);
    for i in 0..warmup + iterations {
        let started = Instant::now();
        local.run(&inputs)?;
        if i >= warmup {
            in_process.push(started.elapsed());
        }
    }

    let path = socket.clone();
    let channel = tonic::transport::Endpoint::from_static("http://dsmild.bench")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await?;
    let mut client = GrpcInferenceServiceClient::new(channel);
    let request = ModelInferRequest {
        model_name: name.clone(),
        inputs: inputs
            .iter()
            .map(|t| InferInputTensor {
                name: t.name.clone(),
                datatype: t.dtype.kserve_name().into(),
                shape: t.shape.clone(),
                ..Default::default()
            })
            .collect(),
        raw_input_contents: inputs.iter().map(|t| t.data.clone()).collect(),
        ..Default::default()
    };
    let mut over_socket = Vec::with_capacity(iterations);
    for i in 0..warmup + iterations {
        let started = Instant::now();
        client.model_infer(request.clone()).await?;
        if i >= warmup {
            over_socket.push(started.elapsed());
        }
    }

    let [lp50, lp90, lp99] = percentiles(in_process);
    let [sp50, sp90, sp99] = percentiles(over_socket);
    println!(
        "{{\"iterations\":{iterations},\"in_process_us\":{{\"p50\":{lp50:.1},\"p90\":{lp90:.1},\"p99\":{lp99:.1}}},\
         \"socket_us\":{{\"p50\":{sp50:.1},\"p90\":{sp90:.1},\"p99\":{sp99:.1}}}}}"
    );
    Ok(())
}
