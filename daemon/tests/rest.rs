//! KServe v2 REST over real HTTP/1.1 (a small client on a TcpStream): health,
//! server and model metadata, readiness, inference with JSON tensors (flat
//! and nested) and with Triton's binary data extension, answering what the
//! gRPC path answers, and the error codes: malformed JSON, a wrong shape, an
//! unknown model, a wrong method, a body over serving.max_request_bytes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use dsmil_proto::inference as pb;

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `{"error": ...}` message of a refusal with `status`.
    fn error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", String::from_utf8_lossy(&self.body));
        self.json()["error"].as_str().expect("an error message").to_owned()
    }
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body` on a fresh connection; the whole reply (the server closes).
fn exchange(addr: &str, head: &str, body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream
        .write_all(format!("{head}\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    // The server may answer (413) before reading all of it.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP reply: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn get(addr: &str, path: &str) -> Reply {
    exchange(addr, &format!("GET {path} HTTP/1.1"), b"")
}

fn post(addr: &str, path: &str, body: &[u8], extra: &str) -> Reply {
    exchange(
        addr,
        &format!(
            "POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}{extra}",
            body.len()
        ),
        body,
    )
}

/// The first `rows` rows of the sample's test set.
fn rows(rows: usize) -> Vec<Vec<f32>> {
    let (pixels, _) = test_set();
    pixels.outer_iter().take(rows).map(|r| r.to_vec()).collect()
}

fn f32s(value: &serde_json::Value) -> Vec<f32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kserve_v2_rest_answers_what_grpc_answers() {
    let (_config_dir, config) = config_with(&[("max_request_bytes = 67_108_864", "max_request_bytes = 65_536")]);
    let daemon = Daemon::start_in(
        tempfile::tempdir().unwrap(),
        &["--config", &config, "--http", "127.0.0.1:0"],
    );
    let status = daemon.ctl_json(&["status"]);
    let addr = status["http_address"].as_str().unwrap().to_owned();
    assert!(addr.starts_with("127.0.0.1:"), "{status}");

    // Health, before any model.
    let live = get(&addr, "/v2/health/live");
    assert_eq!((live.status, live.json()["live"].clone()), (200, true.into()));
    assert_eq!(get(&addr, "/v2/health/ready").status, 200);
    let server = get(&addr, "/v2").json();
    assert_eq!(server["name"], "dsmild");
    assert!(
        server["extensions"]
            .as_array()
            .unwrap()
            .contains(&"binary_tensor_data".into())
    );

    daemon.deploy_sample(&["--name", "digits", "--device", "47"]);

    // Model metadata and readiness.
    let meta = get(&addr, "/v2/models/digits");
    assert_eq!(meta.status, 200);
    assert_eq!(meta.header("content-type"), Some("application/json"));
    let meta = meta.json();
    assert_eq!(meta["versions"], serde_json::json!(["1"]));
    assert_eq!(
        meta["inputs"],
        serde_json::json!([{ "name": "pixels", "datatype": "FP32", "shape": [-1, 64] }])
    );
    assert_eq!(meta["outputs"][1]["name"], "label");
    assert_eq!(get(&addr, "/v2/models/digits/versions/1").status, 200);
    assert!(
        get(&addr, "/v2/models/digits/versions/9")
            .error(404)
            .contains("version")
    );
    assert_eq!(get(&addr, "/v2/models/digits/ready").status, 200);
    assert!(get(&addr, "/v2/models/absent/ready").error(404).contains("absent"));

    // Inference: nested JSON data, the same answer as gRPC's.
    let two = rows(2);
    let body = serde_json::json!({
        "id": "rest-1",
        "inputs": [{ "name": "pixels", "shape": [2, 64], "datatype": "FP32", "data": two }],
    });
    let reply = post(&addr, "/v2/models/digits/infer", body.to_string().as_bytes(), "");
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let answer = reply.json();
    assert_eq!(
        (answer["model_name"].clone(), answer["id"].clone()),
        ("digits".into(), "rest-1".into())
    );
    assert_eq!(answer["model_version"], "1");
    let probabilities = &answer["outputs"][0];
    assert_eq!(probabilities["name"], "probabilities");
    assert_eq!(probabilities["datatype"], "FP32");
    assert_eq!(probabilities["shape"], serde_json::json!([2, 10]));
    let labels = &answer["outputs"][1];
    assert_eq!(
        (labels["datatype"].clone(), labels["shape"].clone()),
        ("INT64".into(), serde_json::json!([2]))
    );

    let flat: Vec<f32> = two.concat();
    let grpc = daemon
        .inference()
        .await
        .model_infer(pb::ModelInferRequest {
            model_name: "digits".into(),
            inputs: vec![pb::model_infer_request::InferInputTensor {
                name: "pixels".into(),
                datatype: "FP32".into(),
                shape: vec![2, 64],
                ..Default::default()
            }],
            raw_input_contents: vec![f32_bytes(&flat).into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(f32s(&probabilities["data"]), f32_values(&grpc.raw_output_contents[0]));
    let rest_labels: Vec<i64> = labels["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(rest_labels, i64_values(&grpc.raw_output_contents[1]));

    // A flat array, one output asked for, as binary data after the JSON.
    let head = serde_json::json!({
        "inputs": [{ "name": "pixels", "shape": [2, 64], "datatype": "FP32", "parameters": { "binary_data_size": 512 } }],
        "outputs": [{ "name": "probabilities", "parameters": { "binary_data": true } }],
    })
    .to_string();
    let mut body = head.clone().into_bytes();
    body.extend(f32_bytes(&flat));
    let reply = post(
        &addr,
        "/v2/models/digits/versions/1/infer",
        &body,
        &format!("\r\nInference-Header-Content-Length: {}", head.len()),
    );
    assert_eq!(reply.status, 200, "{}", String::from_utf8_lossy(&reply.body));
    let json_length: usize = reply
        .header("inference-header-content-length")
        .unwrap()
        .parse()
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&reply.body[..json_length]).unwrap();
    assert_eq!(
        answer["outputs"].as_array().unwrap().len(),
        1,
        "only what was asked for"
    );
    assert_eq!(answer["outputs"][0]["parameters"]["binary_data_size"], 80);
    assert_eq!(&reply.body[json_length..], &grpc.raw_output_contents[0][..]);

    // Refusals, each with its code and a message saying what is wrong.
    let infer = "/v2/models/digits/infer";
    let malformed = post(&addr, infer, b"{\"inputs\": [", "").error(400);
    assert!(malformed.contains("not a KServe v2 inference request"), "{malformed}");
    let shape = serde_json::json!({
        "inputs": [{ "name": "pixels", "shape": [2, 63], "datatype": "FP32", "data": vec![0.5f32; 126] }],
    });
    let shape = post(&addr, infer, shape.to_string().as_bytes(), "").error(400);
    assert!(
        shape.contains("pixels") && shape.contains("[2,63]") && shape.contains("[?,64]"),
        "{shape}"
    );
    let count = serde_json::json!({
        "inputs": [{ "name": "pixels", "shape": [2, 64], "datatype": "FP32", "data": [0.5, 0.5] }],
    });
    assert!(
        post(&addr, infer, count.to_string().as_bytes(), "")
            .error(400)
            .contains("pixels")
    );
    let absent = post(&addr, "/v2/models/absent/infer", body_of(&two).as_bytes(), "").error(404);
    assert!(absent.contains("absent"), "{absent}");
    let wrong_version = post(
        &addr,
        "/v2/models/digits/versions/7/infer",
        body_of(&two).as_bytes(),
        "",
    );
    assert_eq!(wrong_version.status, 404);
    let method = get(&addr, infer);
    assert_eq!((method.status, method.header("allow")), (405, Some("POST")));
    assert_eq!(get(&addr, "/v2/nothing/here").status, 404);

    // Over serving.max_request_bytes (64 KiB here): refused before the body
    // is read, whether its length is declared or it comes in chunks.
    let declared = exchange(
        &addr,
        &format!("POST {infer} HTTP/1.1\r\nContent-Length: 10000000"),
        b"",
    );
    assert!(declared.error(413).contains("serving.max_request_bytes"));
    let mut chunked = format!("{:x}\r\n", 70_000).into_bytes();
    chunked.extend(vec![b' '; 70_000]);
    chunked.extend(b"\r\n0\r\n\r\n");
    let streamed = exchange(
        &addr,
        &format!("POST {infer} HTTP/1.1\r\nTransfer-Encoding: chunked"),
        &chunked,
    );
    assert!(streamed.error(413).contains("65536"));

    // The REST requests went through the gRPC path's bookkeeping: Triton's
    // statistics count them (2 successes here, 1 gRPC, the rest refused).
    let stats = daemon
        .inference()
        .await
        .model_statistics(pb::ModelStatisticsRequest {
            name: "digits".into(),
            version: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let success = stats.model_stats[0]
        .inference_stats
        .as_ref()
        .unwrap()
        .success
        .as_ref()
        .unwrap();
    assert_eq!(success.count, 3, "{stats:?}");
    daemon.still_serves("digits").await;
}

fn body_of(rows: &[Vec<f32>]) -> String {
    serde_json::json!({
        "inputs": [{ "name": "pixels", "shape": [rows.len(), 64], "datatype": "FP32", "data": rows }],
    })
    .to_string()
}

#[test]
fn the_http_listener_is_off_unless_configured() {
    let daemon = Daemon::start();
    assert_eq!(daemon.ctl_json(&["status"])["http_address"], "");
}
