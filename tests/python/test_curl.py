"""The KServe v2 REST listener as an operator or a load balancer meets it:
the real curl binary, no client library. Health, server and model metadata,
inference with JSON tensors and with Triton's binary-data extension, and an
error with its HTTP status."""

import json
import struct
import subprocess

import numpy as np
import onnxruntime as ort

from conftest import SAMPLE


def curl(url, *args):
    """(HTTP status, headers text, body bytes) of one curl call."""
    out = subprocess.run(
        ["curl", "-sS", "-D", "-", "--max-time", "30", *args, url],
        capture_output=True, check=True,
    )
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1"), body


def test_health_and_metadata(daemon):
    base = f"http://{daemon['http']}/v2"
    assert curl(f"{base}/health/live")[0] == 200
    assert curl(f"{base}/health/ready")[0] == 200
    status, _, body = curl(base)
    assert status == 200 and json.loads(body)["name"] == "dsmild"
    status, _, body = curl(f"{base}/models/digits")
    meta = json.loads(body)
    assert status == 200
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]
    assert curl(f"{base}/models/absent")[0] == 404


def test_infer_json_and_binary_agree_with_onnxruntime(daemon):
    url = f"http://{daemon['http']}/v2/models/digits/infer"
    pixels = np.load(SAMPLE / "test.npz")["pixels"][:2].astype(np.float32)
    want = ort.InferenceSession(str(SAMPLE / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"pixels": pixels})[0]

    request = {
        "inputs": [{"name": "pixels", "shape": [2, 64], "datatype": "FP32", "data": pixels.flatten().tolist()}],
        "outputs": [{"name": "probabilities"}],
    }
    status, _, body = curl(url, "-X", "POST", "-H", "Content-Type: application/json", "--data-binary",
                           json.dumps(request))
    assert status == 200, body
    out = json.loads(body)["outputs"][0]
    assert out["shape"] == [2, 10]
    np.testing.assert_allclose(np.array(out["data"]).reshape(2, 10), want, rtol=1e-5, atol=1e-6)

    # Triton's binary-data extension: a JSON header, then the raw tensor;
    # the output asked for in binary too.
    raw = pixels.tobytes()
    header = json.dumps({
        "inputs": [{"name": "pixels", "shape": [2, 64], "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}}],
    }).encode()
    status, head, body = _binary(url, header + raw, len(header))
    assert status == 200, body
    json_len = int(next(line.split(":", 1)[1] for line in head.split("\r\n")
                        if line.lower().startswith("inference-header-content-length")))
    meta = json.loads(body[:json_len])["outputs"][0]
    assert meta["parameters"]["binary_data_size"] == 2 * 10 * 4
    got = np.array(struct.unpack("<20f", body[json_len:json_len + 80])).reshape(2, 10)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

    status, _, body = curl(url, "-X", "POST", "--data-binary", "{not json")
    assert status == 400 and "not a KServe v2 inference request" in json.loads(body)["error"]


def _binary(url, payload, header_length):
    """curl reading the binary body from stdin."""
    out = subprocess.run(
        ["curl", "-sS", "-D", "-", "--max-time", "30", "-X", "POST",
         "-H", f"Inference-Header-Content-Length: {header_length}",
         "-H", "Content-Type: application/octet-stream", "--data-binary", "@-", url],
        input=payload, capture_output=True, check=True,
    )
    head, _, body = out.stdout.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head.decode("latin-1"), body
