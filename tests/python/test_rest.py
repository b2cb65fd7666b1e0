"""Triton's own Python HTTP client (tritonclient.http) against dsmild's KServe
v2 REST listener: health, metadata, inference with binary tensor data (the
client's default) and with JSON tensors, and errors with their HTTP status."""

import json
import urllib.error
import urllib.request

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import SAMPLE


@pytest.fixture(scope="module")
def client(daemon):
    return httpclient.InferenceServerClient(url=daemon["http"])


@pytest.fixture(scope="module")
def test_set():
    data = np.load(SAMPLE / "test.npz")
    return data["pixels"], data["labels"]


@pytest.fixture(scope="module")
def expected(test_set):
    session = ort.InferenceSession(str(SAMPLE / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {"pixels": test_set[0]})


def test_server_is_live_and_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("digits")
    assert not client.is_model_ready("absent")
    meta = client.get_server_metadata()
    assert meta["name"] == "dsmild"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_describes_the_signature(client):
    meta = client.get_model_metadata("digits")
    assert meta["name"] == "digits"
    assert meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in meta["outputs"]] == [
        ("probabilities", "FP32", [-1, 10]),
        ("label", "INT64", [-1]),
    ]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_matches_onnxruntime(client, test_set, expected, binary):
    pixels, labels = test_set
    inp = httpclient.InferInput("pixels", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("probabilities", binary_data=binary),
        httpclient.InferRequestedOutput("label", binary_data=binary),
    ]
    result = client.infer("digits", [inp], outputs=outputs, request_id="r1")
    want_probs, want_labels = expected
    np.testing.assert_allclose(result.as_numpy("probabilities"), want_probs, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(result.as_numpy("label"), want_labels)
    assert (result.as_numpy("label") == labels).mean() >= 0.95
    assert result.get_response()["id"] == "r1"


def test_infer_without_outputs_returns_them_all(client, test_set, expected):
    pixels, _ = test_set
    inp = httpclient.InferInput("pixels", [2, 64], "FP32")
    inp.set_data_from_numpy(pixels[:2])
    result = client.infer("digits", [inp], model_version="1")
    np.testing.assert_array_equal(result.as_numpy("label"), expected[1][:2])


def test_errors_reach_the_client_with_their_status(client, daemon):
    bad = httpclient.InferInput("pixels", [1, 63], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 63), dtype=np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("digits", [bad])
    assert err.value.status() == "400"
    assert "[?,64]" in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("absent")
    assert err.value.status() == "404"

    # And without a client library: curl's view.
    request = urllib.request.Request(
        f"http://{daemon['http']}/v2/models/digits/infer", data=b"{not json", method="POST"
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 400
    assert "not a KServe v2 inference request" in json.load(err.value)["error"]
