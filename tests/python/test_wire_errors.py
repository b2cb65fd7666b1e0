"""What a stock gRPC client sees when its bytes are wrong: the codes gRPC's
own servers give (not tonic's INTERNAL / OUT_OF_RANGE), on a real dsmild
that keeps serving."""

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

INFER = "/inference.GRPCInferenceService/ModelInfer"


@pytest.fixture(scope="module")
def channel(daemon):
    with grpc.insecure_channel(daemon["tcp"]) as channel:
        yield channel


def raw_call(channel, method, body: bytes):
    call = channel.unary_unary(method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as err:
        call(body, timeout=30)
    return err.value


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xff\xff\xff",  # a field key with no end
        b"\x0a\x80\x80\x80\x80\x10",  # model_name claiming 4 GiB
        b"\x22\x05\x0a\x03ab",  # an input tensor message cut short
    ],
)
def test_a_body_that_does_not_decode_is_invalid_argument(channel, daemon, body):
    err = raw_call(channel, INFER, body)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert "not a valid protobuf message" in err.details()
    client = grpcclient.InferenceServerClient(url=daemon["tcp"])
    assert client.is_model_ready("digits")


def test_the_server_keeps_answering_after_garbage(channel, daemon):
    for _ in range(20):
        raw_call(channel, INFER, b"\xff" * 64)
    client = grpcclient.InferenceServerClient(url=daemon["tcp"])
    x = grpcclient.InferInput("pixels", [1, 64], "FP32")
    x.set_data_from_numpy(np.zeros((1, 64), dtype=np.float32))
    assert client.infer("digits", [x]).as_numpy("label").shape == (1,)
