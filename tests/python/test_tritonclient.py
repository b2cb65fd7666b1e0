"""Triton's own Python gRPC client against dsmild over TCP: the proof that
third-party Open Inference Protocol clients work unchanged."""

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import SAMPLE


@pytest.fixture(scope="module")
def client(daemon):
    return grpcclient.InferenceServerClient(url=daemon["tcp"])


@pytest.fixture(scope="module")
def test_set():
    data = np.load(SAMPLE / "test.npz")
    return data["pixels"], data["labels"]


def test_server_is_live_and_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("digits")
    assert not client.is_model_ready("absent")
    assert client.get_server_metadata().name == "dsmild"


def test_model_metadata_describes_the_signature(client):
    meta = client.get_model_metadata("digits")
    assert meta.name == "digits"
    assert list(meta.versions) == ["1"]
    assert [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == [("pixels", "FP32", [-1, 64])]
    assert [(o.name, o.datatype, list(o.shape)) for o in meta.outputs] == [
        ("probabilities", "FP32", [-1, 10]),
        ("label", "INT64", [-1]),
    ]


def test_model_config_follows_tritons_batching_convention(client):
    config = client.get_model_config("digits").config
    assert config.max_batch_size > 0
    assert list(config.input[0].dims) == [64]


def test_infer_with_raw_contents_matches_onnxruntime(client, test_set):
    pixels, labels = test_set
    inp = grpcclient.InferInput("pixels", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels)  # raw_input_contents
    outputs = [grpcclient.InferRequestedOutput("probabilities"), grpcclient.InferRequestedOutput("label")]
    result = client.infer("digits", [inp], outputs=outputs)

    session = ort.InferenceSession(str(SAMPLE / "model.onnx"), providers=["CPUExecutionProvider"])
    want_probs, want_labels = session.run(None, {"pixels": pixels})
    np.testing.assert_allclose(result.as_numpy("probabilities"), want_probs, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(result.as_numpy("label"), want_labels)
    assert (result.as_numpy("label") == labels).mean() >= 0.95


def test_errors_reach_the_client_with_their_code(client):
    bad = grpcclient.InferInput("pixels", [1, 63], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 63), dtype=np.float32))
    with pytest.raises(InferenceServerException) as err:
        client.infer("digits", [bad])
    assert "INVALID_ARGUMENT" in str(err.value.status())
    assert "[?,64]" in err.value.message()
    with pytest.raises(InferenceServerException) as err:
        client.get_model_metadata("absent")
    assert "NOT_FOUND" in str(err.value.status())


def test_statistics_count_the_requests(client, test_set):
    pixels, _ = test_set
    before = client.get_inference_statistics("digits").model_stats[0].inference_stats.success.count
    inp = grpcclient.InferInput("pixels", [1, 64], "FP32")
    inp.set_data_from_numpy(pixels[:1])
    client.infer("digits", [inp])
    after = client.get_inference_statistics("digits").model_stats[0].inference_stats.success.count
    assert after == before + 1
