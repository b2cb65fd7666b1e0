//! A detector-shaped model with dynamic spatial dimensions cannot run at the
//! 1×1 size dsmil used to invent for its synthetic runs (its pooling needs
//! at least 2×2). On a real dsmild it deploys with `--input-shape` (the dry
//! run, warmup and health checks use that shape, recorded on the deployment
//! and kept across a restart) or with data (the data's shapes), and a shape
//! the model cannot take is refused naming the input.

mod common;

use common::onnx::{attr_int, attr_ints, attr_string, floats, model, node_with, value, weights};
use common::{Daemon, ctl_binary};
use dsmil_proto::onnx::{GraphProto, TensorShapeProto, tensor_shape_proto};
use rand::Rng;

/// x [1, 3, H, W] → MaxPool 2×2/2 → Resize ×2 → Concat with x → Conv 1×1 → y.
fn detector() -> Vec<u8> {
    let mut x = value("x", &[1, 3, 0, 0]);
    // H and W dynamic (named), the batch fixed at 1.
    if let Some(dsmil_proto::onnx::type_proto::Value::TensorType(t)) = x.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        let dim = |d: tensor_shape_proto::dimension::Value| tensor_shape_proto::Dimension {
            value: Some(d),
            denotation: None,
        };
        t.shape = Some(TensorShapeProto {
            dim: vec![
                dim(tensor_shape_proto::dimension::Value::DimValue(1)),
                dim(tensor_shape_proto::dimension::Value::DimValue(3)),
                dim(tensor_shape_proto::dimension::Value::DimParam("H".into())),
                dim(tensor_shape_proto::dimension::Value::DimParam("W".into())),
            ],
        });
    }
    let mut y = x.clone();
    y.name = Some("y".into());
    model(
        GraphProto {
            name: Some("detector".into()),
            node: vec![
                node_with(
                    "MaxPool",
                    &["x"],
                    &["p"],
                    vec![attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])],
                ),
                node_with(
                    "Resize",
                    &["p", "", "scales"],
                    &["u"],
                    vec![attr_string("mode", "nearest")],
                ),
                node_with("Concat", &["x", "u"], &["c"], vec![attr_int("axis", 1)]),
                node_with("Conv", &["c", "w"], &["y"], vec![attr_ints("kernel_shape", &[1, 1])]),
            ],
            input: vec![x],
            output: vec![y],
            initializer: vec![
                floats("scales", &[4], &[1.0, 1.0, 2.0, 2.0]),
                weights("w", &[3, 6, 1, 1], 5),
            ],
            ..Default::default()
        },
        &[("", 13)],
    )
}

#[test]
fn dynamic_spatial_dimensions_get_their_shape_from_the_operator_or_the_data() {
    let mut daemon = Daemon::start();
    let bytes = detector();

    // What used to happen: 1×1 synthetic inputs, which MaxPool refuses.
    let err = daemon
        .try_deploy(&bytes, &["--name", "det", "--layer", "3"])
        .expect_err("a 1x1 image cannot be pooled 2x2");
    assert!(err.contains("dry run") && err.contains("synthetic inputs"), "{err}");

    let err = daemon
        .try_deploy(&bytes, &["--name", "det", "--layer", "3", "--input-shape", "x=1,3,32"])
        .expect_err("a rank-3 shape for a rank-4 input");
    assert!(
        err.contains("--input-shape x=1,3,32: the input is declared [1,3,?,?]"),
        "{err}"
    );
    let err = daemon
        .try_deploy(
            &bytes,
            &["--name", "det", "--layer", "3", "--input-shape", "image=1,3,32,32"],
        )
        .expect_err("no such input");
    assert!(err.contains("no such input (it has x)"), "{err}");

    let deployed = daemon.deploy(
        &bytes,
        &["--name", "det", "--layer", "3", "--input-shape", "x=1,3,32,32"],
    );
    assert_eq!(deployed["state"], "Active", "{deployed}");
    let warmup = deployed["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["state"] == "HealthChecking")
        .expect("warmed up");
    assert!(warmup["detail"].as_str().unwrap().contains("warmup p50"), "{warmup}");

    // The shape is the deployment's: a restart restores it serving, and its
    // health probes (which run the recorded shape) keep it ready.
    let dir = daemon.stop();
    daemon = Daemon::start_in(dir, &[]);
    let ready = daemon.ctl_json(&["status"]);
    assert_eq!(ready["ready"], true, "{ready}");

    // With data, the data's shapes: a deploy of 48×48 images, INT8.
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let data = ndarray::Array4::from_shape_fn((8, 3, 48, 48), |_| rng.random_range(0.0f32..1.0));
    let calib = dir.path().join("calib.npz");
    let mut w = ndarray_npy::NpzWriter::new(std::fs::File::create(&calib).unwrap());
    w.add_array("x", &data).unwrap();
    w.finish().unwrap();
    let model = dir.path().join("det.onnx");
    std::fs::write(&model, &bytes).unwrap();
    let out = std::process::Command::new(ctl_binary())
        .arg("--socket")
        .arg(daemon.socket())
        .args([
            "--json",
            "deploy",
            model.to_str().unwrap(),
            "--name",
            "det2",
            "--layer",
            "3",
        ])
        .args(["--calib", calib.to_str().unwrap(), "--gate-metric", "cosine"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
