//! Bad input gets a clear error with the right code, and nothing is recorded.

mod common;

use common::*;
use dsmil_proto::control::{DeployRequest, DeploySpec, deploy_request::Part};
use dsmil_proto::inference as pb;
use sha2::{Digest, Sha256};
use tonic::Code;

/// Uploads `bytes` declaring `sha256`; returns the status the stream ends with.
async fn deploy_raw(daemon: &Daemon, name: &str, device: u32, bytes: Vec<u8>, sha256: String) -> tonic::Status {
    let mut control = daemon.control().await;
    let messages = vec![
        DeployRequest {
            part: Some(Part::Spec(DeploySpec {
                name: name.into(),
                device: Some(device),
                size_bytes: bytes.len() as u64,
                sha256,
                allow_fp32: true,
                ..Default::default()
            })),
        },
        DeployRequest {
            part: Some(Part::Chunk(bytes)),
        },
    ];
    let mut stream = match control.deploy(tokio_stream::iter(messages)).await {
        Ok(r) => r.into_inner(),
        Err(status) => return status,
    };
    loop {
        match stream.message().await {
            Ok(Some(p)) if p.done => panic!("the deploy of {name} succeeded"),
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without a verdict"),
            Err(status) => return status,
        }
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn assert_nothing_recorded(daemon: &Daemon) {
    let models = daemon.ctl_json(&["models"]);
    assert_eq!(models["models"].as_array().expect("models listed").len(), 0, "{models}");
    let deployments = daemon.ctl_json(&["deployments"]);
    assert_eq!(
        deployments["deployments"].as_array().expect("deployments listed").len(),
        0,
        "{deployments}"
    );
    let blobs = daemon.state_dir().join("blobs");
    assert_eq!(
        std::fs::read_dir(blobs.join("sha256")).unwrap().count(),
        0,
        "no blob stored"
    );
    assert_eq!(
        std::fs::read_dir(blobs.join("tmp")).unwrap().count(),
        0,
        "no temp file left"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_uploads_are_refused_and_leave_no_trace() {
    let daemon = Daemon::start();
    let model = std::fs::read(SAMPLE_MODEL).unwrap();

    let truncated = model[..model.len() / 2].to_vec();
    let status = deploy_raw(&daemon, "digits", 47, truncated.clone(), sha(&truncated)).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("ONNX"), "{}", status.message());

    let text = b"definitely not a model".to_vec();
    let status = deploy_raw(&daemon, "digits", 47, text.clone(), sha(&text)).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("not an ONNX model"), "{}", status.message());

    let status = deploy_raw(&daemon, "digits", 47, model.clone(), "00".repeat(32)).await;
    assert_eq!(status.code(), Code::DataLoss);
    assert!(
        status.message().contains(&sha(&model)),
        "the message names the actual hash: {}",
        status.message()
    );

    let status = deploy_raw(&daemon, "digits", 104, model.clone(), sha(&model)).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("device 104 does not exist"),
        "{}",
        status.message()
    );

    let status = deploy_raw(&daemon, "digits", 80, model.clone(), sha(&model)).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("reserved for the system"),
        "{}",
        status.message()
    );

    let status = deploy_raw(&daemon, "../etc", 47, model.clone(), sha(&model)).await;
    assert_eq!(status.code(), Code::InvalidArgument);

    assert_nothing_recorded(&daemon);

    // dsmilctl reports the same refusals with a non-zero exit.
    let out = daemon.ctl(&["deploy", SAMPLE_TEST_SET, "--name", "digits", "--device", "47"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("not an ONNX model"),
        "{stderr}"
    );
    assert_nothing_recorded(&daemon);
}

#[tokio::test(flavor = "multi_thread")]
async fn write_down_is_refused_and_audited() {
    let daemon = Daemon::start();
    let out = daemon.ctl(&[
        "deploy",
        SAMPLE_MODEL,
        "--allow-fp32",
        "--name",
        "digits",
        "--layer",
        "3",
        "--classification",
        "5",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PermissionDenied") && stderr.contains("write-down"),
        "{stderr}"
    );
    let events = daemon.ctl_json(&["events"]);
    assert_eq!(events["events"][0]["kind"], "refuse");
    assert_eq!(events["events"][0]["layer"], 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_name_the_tensor_and_what_was_expected() {
    let daemon = Daemon::start();
    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);
    let mut client = daemon.inference().await;
    let good = || digits_request(2, 1.0);
    client.model_infer(good()).await.unwrap();

    type Mutation = Box<dyn Fn(&mut pb::ModelInferRequest)>;
    let cases: Vec<(Mutation, Code, &str)> = vec![
        (
            Box::new(|r| r.model_name = "nope".into()),
            Code::NotFound,
            "model \"nope\" is not deployed",
        ),
        (
            Box::new(|r| r.inputs[0].name = "image".into()),
            Code::InvalidArgument,
            "input \"image\" is not an input of digits (inputs: pixels)",
        ),
        (
            Box::new(|r| r.inputs[0].datatype = "FP16".into()),
            Code::InvalidArgument,
            "datatype \"FP16\" given, the model expects FP32",
        ),
        (
            Box::new(|r| r.inputs[0].shape = vec![2, 63]),
            Code::InvalidArgument,
            "shape [2,63] does not fit the model's [?,64]",
        ),
        (
            Box::new(|r| r.raw_input_contents[0].truncate(100)),
            Code::InvalidArgument,
            "100 bytes of data, but shape [2,64] of FP32 needs 512",
        ),
        (
            Box::new(|r| {
                r.inputs.clear();
                r.raw_input_contents.clear();
            }),
            Code::InvalidArgument,
            "input(s) pixels missing",
        ),
    ];
    for (mutate, code, needle) in cases {
        let mut req = good();
        mutate(&mut req);
        let status = client.model_infer(req).await.unwrap_err();
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(
            status.message().contains(needle),
            "expected {needle:?} in {:?}",
            status.message()
        );
    }
    // Refusals cost nothing: the model still serves.
    client.model_infer(good()).await.unwrap();
}

#[test]
fn dsmilctl_fails_clearly_without_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let out = ctl_with_socket(&dir.path().join("absent.sock"), &["status"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach dsmild") && stderr.contains("absent.sock"),
        "{stderr}"
    );
}
