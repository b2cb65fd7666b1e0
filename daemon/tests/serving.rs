//! Deploy and serve the sample model on a real dsmild; compare with ONNX
//! Runtime run in this process.

mod common;

use std::sync::OnceLock;

use common::*;
use dsmil_proto::inference as pb;
use dsmil_proto::inference::model_infer_request::InferInputTensor;
use dsmild::backend::{Backend, DataType, LoadOptions, OnnxRuntime, Tensor, locate_onnxruntime};
use tonic::Code;

fn in_process_runtime() -> &'static OnnxRuntime {
    static RUNTIME: OnceLock<OnnxRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| OnnxRuntime::load(&locate_onnxruntime(None).unwrap()).unwrap())
}

fn raw_request(model: &str, version: &str, pixels: &[f32], rows: usize) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: model.into(),
        model_version: version.into(),
        inputs: vec![InferInputTensor {
            name: "pixels".into(),
            datatype: "FP32".into(),
            shape: vec![rows as i64, 64],
            ..Default::default()
        }],
        raw_input_contents: vec![f32_bytes(pixels).into()],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn deployed_sample_answers_like_onnxruntime_and_reaches_95_percent() {
    let daemon = Daemon::start();
    // The whole test set in one request: past the default max batch of 64.
    let deployed = daemon.deploy_sample(&["--name", "digits", "--device", "47", "--max-batch", "512"]);
    assert_eq!(deployed["state"], "Active");
    assert_eq!(deployed["version"], 1);
    assert_eq!(deployed["device"], 47);
    assert_eq!(deployed["layer"], 7);
    let stages: Vec<&str> = deployed["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        [
            "Uploaded",
            "Validating",
            "Quantizing",
            "Compiling",
            "Loading",
            "WarmingUp",
            "HealthChecking",
            "Active"
        ]
    );

    let (pixels, labels) = test_set();
    let rows = labels.len();
    let flat: Vec<f32> = pixels.iter().copied().collect();
    let mut client = daemon.inference().await;
    let response = client
        .model_infer(raw_request("digits", "", &flat, rows))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.model_version, "1");
    assert_eq!(response.outputs.len(), 2);
    assert_eq!(response.outputs[0].name, "probabilities");
    assert_eq!(response.outputs[0].shape, vec![rows as i64, 10]);
    assert_eq!(response.outputs[1].datatype, "INT64");
    let served_probs = f32_values(&response.raw_output_contents[0]);
    let served_labels = i64_values(&response.raw_output_contents[1]);

    // The same bytes through ONNX Runtime in this process.
    let bytes = std::fs::read(SAMPLE_MODEL).unwrap();
    let mut local = in_process_runtime().load(&bytes, &LoadOptions::default()).unwrap();
    let input = Tensor {
        name: "pixels".into(),
        dtype: DataType::F32,
        shape: vec![rows as i64, 64],
        data: f32_bytes(&flat).into(),
    };
    let expected = local.run(&[input]).unwrap();
    assert_eq!(
        served_probs,
        f32_values(&expected[0].data),
        "probabilities differ from in-process ONNX Runtime"
    );
    assert_eq!(served_labels, i64_values(&expected[1].data));

    let correct = served_labels.iter().zip(labels.iter()).filter(|(a, b)| a == b).count();
    let accuracy = correct as f64 / rows as f64;
    assert!(accuracy >= 0.95, "accuracy {accuracy:.4} through dsmild is below 0.95");

    // Typed contents give the same answer as raw contents.
    let one = &flat[..64];
    let typed = pb::ModelInferRequest {
        model_name: "digits".into(),
        inputs: vec![InferInputTensor {
            name: "pixels".into(),
            datatype: "FP32".into(),
            shape: vec![1, 64],
            contents: Some(pb::InferTensorContents {
                fp32_contents: one.to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        outputs: vec![pb::model_infer_request::InferRequestedOutputTensor {
            name: "label".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let typed = client.model_infer(typed).await.unwrap().into_inner();
    assert_eq!(typed.outputs.len(), 1, "only the requested output comes back");
    assert_eq!(i64_values(&typed.raw_output_contents[0]), vec![served_labels[0]]);
}

/// ONNX Runtime's answers are served from its own output buffers, not
/// copies (`backend/onnxruntime.rs`): each answer must keep its bytes
/// through later runs and after its model is gone (an undeploy while the
/// answer is still being sent).
#[test]
fn answers_from_the_runtimes_buffers_survive_later_runs_and_their_model() {
    let bytes = std::fs::read(SAMPLE_MODEL).unwrap();
    let mut model = in_process_runtime().load(&bytes, &LoadOptions::default()).unwrap();
    let input = |value: f32| Tensor {
        name: "pixels".into(),
        dtype: DataType::F32,
        shape: vec![3, 64],
        data: f32_bytes(&(0..3 * 64).map(|i| value * (i % 17) as f32).collect::<Vec<_>>()).into(),
    };
    // What the runtime wrote, copied out while the run was alive.
    let mut seen: Vec<Vec<u8>> = Vec::new();
    model
        .run_visit(&[input(0.25)], &mut |t| seen.push(t.data.to_vec()))
        .unwrap();
    let first = model.run(&[input(0.25)]).unwrap();
    let second = model.run(&[input(3.0)]).unwrap();
    assert_ne!(
        first[0].data, second[0].data,
        "two different inputs gave the same probabilities: the test proves nothing"
    );
    drop(model);
    assert_eq!(first.len(), seen.len());
    for (answer, expected) in first.iter().zip(&seen) {
        assert_eq!(
            &answer.data[..],
            &expected[..],
            "{}: an answer's bytes changed after a later run or after its model was dropped",
            answer.name
        );
    }
}

/// A graph may answer with memory that is not the run's own: an output
/// that is an input, or an Identity or Reshape that ONNX Runtime runs as an
/// alias of it (the request's bytes, lent for the run), or an initializer
/// (the model's). Such an answer must stay intact after the request and the
/// model are gone.
#[test]
fn an_answer_that_aliases_its_request_outlives_the_request() {
    use common::onnx::{floats, int64s, model, node, value};
    use dsmil_proto::onnx::GraphProto;

    let graph = |nodes, output: &str, initializer| GraphProto {
        name: Some("alias".into()),
        node: nodes,
        input: vec![value("x", &[-1, 4])],
        output: vec![value(output, &[-1, 4])],
        initializer,
        ..Default::default()
    };
    let values: Vec<f32> = (0..4096).map(|i| i as f32 * 0.5).collect();
    let weights = || vec![floats("w", &[1024, 4], &values)];
    let cases = [
        ("an output that is the input", graph(vec![], "x", vec![])),
        ("an output that is an initializer", graph(vec![], "w", weights())),
        (
            "Identity of an initializer",
            graph(vec![node("Identity", &["w"], &["y"])], "y", weights()),
        ),
        ("Identity", graph(vec![node("Identity", &["x"], &["y"])], "y", vec![])),
        (
            "Reshape",
            graph(
                vec![node("Reshape", &["x", "shape"], &["y"])],
                "y",
                vec![int64s("shape", &[-1, 4])],
            ),
        ),
    ];
    for (what, graph) in cases {
        let bytes = model(graph, &[("", 13)]);
        let mut loaded = in_process_runtime().load(&bytes, &LoadOptions::default()).unwrap();
        let input = Tensor {
            name: "x".into(),
            dtype: DataType::F32,
            shape: vec![1024, 4],
            data: f32_bytes(&values).into(),
        };
        assert!(
            input.data.as_ptr().cast::<f32>().is_aligned(),
            "the runtime must read the request in place"
        );
        let answer = loaded.run(&[input]).unwrap();
        drop(loaded);
        // The request and the model are gone; reuse their memory.
        let scribble: Vec<Vec<u8>> = (0..8).map(|_| vec![0xAB; 4096 * 4]).collect();
        assert!(
            f32_values(&answer[0].data) == values,
            "{what}: the answer changed once its request and model were dropped"
        );
        drop(scribble);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_deploy_makes_version_2_and_undeploy_stops_serving() {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let second = daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    assert_eq!(second["version"], 2);

    let mut client = daemon.inference().await;
    let meta = client
        .model_metadata(pb::ModelMetadataRequest {
            name: "digits".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.versions, vec!["2"]);
    assert_eq!(meta.inputs[0].shape, vec![-1, 64]);
    assert_eq!(meta.inputs[0].datatype, "FP32");
    let old = client
        .model_infer(raw_request("digits", "1", &[0.0; 64], 1))
        .await
        .unwrap_err();
    assert_eq!(old.code(), Code::NotFound);
    assert!(old.message().contains("serving: 2"), "{}", old.message());
    client
        .model_infer(raw_request("digits", "2", &[0.0; 64], 1))
        .await
        .unwrap();

    let deployments = daemon.ctl_json(&["deployments"]);
    let states: Vec<(u64, &str)> = deployments["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["version"].as_u64().unwrap(), d["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, vec![(1, "Retired"), (2, "Active")]);

    let devices = daemon.ctl_json(&["devices"]);
    let d47 = &devices["devices"][47];
    assert_eq!(
        (d47["model"].as_str(), d47["version"].as_u64()),
        (Some("digits"), Some(2))
    );

    let mut health = tonic_health::pb::health_client::HealthClient::new(daemon.channel().await);
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: "digits".into(),
        })
        .await
        .unwrap()
        .into_inner();
    use tonic_health::pb::health_check_response::ServingStatus;
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    daemon.ctl_json(&["undeploy", "digits"]);
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::NotServing as i32
    );
    let gone = client
        .model_infer(raw_request("digits", "", &[0.0; 64], 1))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let ready = client
        .model_ready(pb::ModelReadyRequest {
            name: "digits".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!ready.ready);
    let models = daemon.ctl_json(&["models"]);
    assert_eq!(
        models["models"][0]["versions"].as_array().unwrap().len(),
        2,
        "versions stay in the registry"
    );
    assert_eq!(
        models["models"][0]["active_version"]
            .as_u64()
            .expect("active_version present"),
        0,
        "{models}"
    );
    // Both versions' blobs stay in the store (same bytes: one blob).
    assert_eq!(
        std::fs::read_dir(daemon.state_dir().join("blobs/sha256"))
            .unwrap()
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn triton_config_statistics_and_grpc_health_answer() {
    let daemon = Daemon::start();
    assert_eq!(
        daemon.health_check("").await,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    daemon.deploy_sample(&["--name", "digits", "--layer", "7"]);
    let mut client = daemon.inference().await;
    let live = client.server_live(pb::ServerLiveRequest {}).await.unwrap().into_inner();
    let ready = client
        .server_ready(pb::ServerReadyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(live.live && ready.ready);
    let meta = client
        .server_metadata(pb::ServerMetadataRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(meta.name, "dsmild");

    let config = client
        .model_config(pb::ModelConfigRequest {
            name: "digits".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .config
        .unwrap();
    assert!(config.max_batch_size > 0);
    assert_eq!(config.input[0].dims, vec![64], "the batch dimension is left out");
    assert_eq!(config.input[0].data_type, pb::DataType::TypeFp32 as i32);
    assert_eq!(config.output[1].data_type, pb::DataType::TypeInt64 as i32);

    for _ in 0..3 {
        client
            .model_infer(raw_request("digits", "", &[1.0; 128], 2))
            .await
            .unwrap();
    }
    client
        .model_infer(raw_request("digits", "", &[1.0; 10], 1))
        .await
        .unwrap_err();
    let stats = client
        .model_statistics(pb::ModelStatisticsRequest {
            name: "digits".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let s = &stats.model_stats[0];
    let inference = s.inference_stats.as_ref().unwrap();
    assert_eq!(inference.success.as_ref().unwrap().count, 3);
    assert_eq!(inference.fail.as_ref().unwrap().count, 1);
    assert_eq!(s.inference_count, 6, "three requests of two rows");
    assert!(inference.compute_infer.as_ref().unwrap().ns > 0);
    assert!(s.last_inference > 0);
}

/// Image-sized answers through clients that take HTTP/2's default 16 KiB
/// frames (tonic's, as Go and Java clients), several calls at once on one
/// connection, over TCP and the Unix socket: dsmild joins the frames it
/// writes into larger writes (serve::coalesce), and every answer must still
/// come back whole, byte for byte, to its own call.
#[tokio::test(flavor = "multi_thread")]
async fn image_sized_answers_come_back_byte_exact_to_each_call_over_tcp_and_the_unix_socket() {
    use common::onnx::{model, node, value};
    use dsmil_proto::onnx::GraphProto;

    const SHAPE: [i64; 4] = [1, 3, 224, 224];
    let echo = model(
        GraphProto {
            name: Some("echo".into()),
            node: vec![node("Identity", &["image"], &["same"])],
            input: vec![value("image", &SHAPE)],
            output: vec![value("same", &SHAPE)],
            ..Default::default()
        },
        &[("", 13)],
    );
    let daemon = Daemon::start();
    daemon.deploy(&echo, &["--name", "echo", "--allow-fp32", "--device", "47"]);
    let tcp = daemon.ctl_json(&["status"])["tcp_address"].as_str().unwrap().to_owned();
    let over_tcp = tonic::transport::Endpoint::from_shared(format!("http://{tcp}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let elements = SHAPE.iter().product::<i64>() as usize;
    for (transport, channel) in [("tcp", over_tcp), ("unix", daemon.channel().await)] {
        let client = pb::grpc_inference_service_client::GrpcInferenceServiceClient::new(channel)
            .max_decoding_message_size(64 << 20);
        let mut calls = tokio::task::JoinSet::new();
        for call in 0..6 {
            let mut client = client.clone();
            let values: Vec<f32> = (0..elements).map(|i| (call * elements + i) as f32).collect();
            let request = pb::ModelInferRequest {
                model_name: "echo".into(),
                inputs: vec![InferInputTensor {
                    name: "image".into(),
                    datatype: "FP32".into(),
                    shape: SHAPE.to_vec(),
                    ..Default::default()
                }],
                raw_input_contents: vec![f32_bytes(&values).into()],
                ..Default::default()
            };
            calls.spawn(async move { (call, f32_bytes(&values), client.model_infer(request).await) });
        }
        while let Some(done) = calls.join_next().await {
            let (call, sent, answer) = done.unwrap();
            let answer = answer
                .unwrap_or_else(|e| panic!("{transport} call {call}: {e}"))
                .into_inner();
            assert_eq!(answer.raw_output_contents.len(), 1, "{transport} call {call}");
            assert!(
                answer.raw_output_contents[0] == sent,
                "{transport} call {call}: the answer differs from what was sent ({} bytes of {})",
                answer.raw_output_contents[0].len(),
                sent.len()
            );
        }
    }
}
