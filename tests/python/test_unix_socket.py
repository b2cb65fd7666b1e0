"""Stock grpcio and tritonclient on dsmild's Unix socket with no options: gRPC
C-core sends the percent-encoded socket path as :authority, which dsmild
makes acceptable (daemon/src/serve/authority.rs) instead of resetting the
stream."""

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from conftest import SAMPLE, running_daemon


@pytest.fixture(scope="module")
def socket_url(tmp_path_factory):
    # A socket path with characters C-core percent-encodes.
    tmp = tmp_path_factory.mktemp("unix socket")
    with running_daemon(tmp) as ctl:
        ctl("deploy", SAMPLE / "model.onnx", "--allow-fp32", "--name", "digits", "--device", "47")
        yield f"unix://{tmp / 'dsmild.sock'}"


def test_plain_grpcio_channel_calls_repeatedly(socket_url):
    # Several calls on one channel: the later ones name the authority by
    # its HPACK dynamic-table index, which must still decode.
    with grpc.insecure_channel(socket_url) as channel:
        live = channel.unary_unary("/inference.GRPCInferenceService/ServerLive")
        for _ in range(5):
            assert live(b"", timeout=10) == b"\x08\x01"  # live: true


def test_tritonclient_over_the_unix_socket(socket_url):
    client = grpcclient.InferenceServerClient(url=socket_url)
    assert client.is_server_live()
    assert client.is_model_ready("digits")
    pixels = np.load(SAMPLE / "test.npz")["pixels"][:8]
    inp = grpcclient.InferInput("pixels", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels)
    for _ in range(3):
        result = client.infer("digits", [inp])
        assert result.as_numpy("label").shape == (8,)
    index = client.get_model_repository_index(as_json=True)
    assert [m["name"] for m in index["models"]] == ["digits"]
