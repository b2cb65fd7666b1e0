"""Triton's RPCs beyond KServe v2, gRPC reflection and grpc.health.v1 by
service name, each through a stock client (tritonclient, grpcio,
grpcio-reflection) against a real dsmild over TCP."""

import queue

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from tritonclient.utils import InferenceServerException

from conftest import SAMPLE, running_daemon

SERVICES = {"inference.GRPCInferenceService", "dsmil.v1.Control", "grpc.health.v1.Health"}


@pytest.fixture(scope="module")
def client(daemon):
    return grpcclient.InferenceServerClient(url=daemon["tcp"])


@pytest.fixture(scope="module")
def channel(daemon):
    with grpc.insecure_channel(daemon["tcp"]) as channel:
        yield channel


def _pixels(rows=4):
    return np.load(SAMPLE / "test.npz")["pixels"][:rows]


def _input(pixels):
    inp = grpcclient.InferInput("pixels", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels)
    return inp


def test_reflection_v1alpha_lists_the_services_and_resolves_their_methods(channel):
    db = ProtoReflectionDescriptorDatabase(channel)
    assert SERVICES <= set(db.get_services())
    pool = descriptor_pool.DescriptorPool(db)
    infer = pool.FindServiceByName("inference.GRPCInferenceService")
    assert {"ModelInfer", "ModelStreamInfer", "RepositoryIndex"} <= {m.name for m in infer.methods}
    control = pool.FindServiceByName("dsmil.v1.Control")
    assert control.methods


def test_reflection_v1_lists_the_services(channel):
    # grpcio-reflection ships v1alpha stubs; v1's messages are the same.
    call = channel.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    answers = list(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    names = {s.name for s in answers[0].list_services_response.service}
    assert SERVICES <= names


@pytest.mark.parametrize("service", ["inference.GRPCInferenceService", "dsmil.v1.Control", ""])
def test_health_by_service_name_is_serving(channel, service):
    # The health messages come from the server's own reflection.
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    request = message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckRequest"))
    response = message_factory.GetMessageClass(pool.FindMessageTypeByName("grpc.health.v1.HealthCheckResponse"))
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=request.SerializeToString,
        response_deserializer=response.FromString,
    )
    answer = check(request(service=service), timeout=10)
    status = response.DESCRIPTOR.enum_types_by_name["ServingStatus"].values_by_number[answer.status]
    assert status.name == "SERVING"


def test_repository_index_lists_the_deployed_models(client):
    index = client.get_model_repository_index(as_json=True)
    digits = [m for m in index["models"] if m["name"] == "digits"]
    assert digits == [{"name": "digits", "version": "1", "state": "READY"}]


@pytest.mark.parametrize(
    "call, command",
    [("load_model", "dsmilctl deploy"), ("unload_model", "dsmilctl undeploy")],
)
def test_repository_load_and_unload_say_how_dsmil_deploys(client, call, command):
    with pytest.raises(InferenceServerException) as refused:
        getattr(client, call)("digits")
    assert refused.value.status() == "StatusCode.UNIMPLEMENTED"
    assert command in refused.value.message()


def test_log_settings_are_read_only(client):
    settings = client.get_log_settings(as_json=True)["settings"]
    assert settings["log_error"] == {"bool_param": True}
    assert settings["log_info"] == {"bool_param": True}
    assert "log_verbose_level" in settings
    with pytest.raises(InferenceServerException) as refused:
        client.update_log_settings({"log_verbose_level": 1})
    assert refused.value.status() == "StatusCode.UNIMPLEMENTED"
    assert "[logging]" in refused.value.message()
    assert "log_verbose_level" in refused.value.message()


@pytest.mark.parametrize(
    "call, args, says",
    [
        ("get_system_shared_memory_status", (), "raw_input_contents"),
        ("unregister_cuda_shared_memory", (), "raw_input_contents"),
        ("get_trace_settings", (), "metrics"),
    ],
)
def test_other_triton_calls_say_what_to_use_instead(client, call, args, says):
    with pytest.raises(InferenceServerException) as refused:
        getattr(client, call)(*args)
    assert refused.value.status() == "StatusCode.UNIMPLEMENTED"
    assert says in refused.value.message()


def test_stream_infer_answers_each_request_and_survives_an_error(client):
    pixels = _pixels()
    want = client.infer("digits", [_input(pixels)]).as_numpy("label")
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer("digits", [_input(pixels)], request_id="first")
        client.async_stream_infer("absent", [_input(pixels)], request_id="second")
        client.async_stream_infer("digits", [_input(pixels)], request_id="third")
        got = [answers.get(timeout=30) for _ in range(3)]
    finally:
        client.stop_stream()
    (first, e1), (second, e2), (third, e3) = got
    assert e1 is None and e3 is None
    assert first.get_response().id == "first"
    assert third.get_response().id == "third"
    np.testing.assert_array_equal(first.as_numpy("label"), want)
    np.testing.assert_array_equal(third.as_numpy("label"), want)
    assert second is None
    assert "absent" in e2.message()


def test_stream_infer_checks_limits_like_model_infer(client):
    # Above the deployment's max batch (512 rows): refused in the stream,
    # with ModelInfer's own message.
    pixels = np.zeros((600, 64), dtype=np.float32)
    with pytest.raises(InferenceServerException) as direct:
        client.infer("digits", [_input(pixels)])
    answers = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        client.async_stream_infer("digits", [_input(pixels)], request_id="big")
        result, error = answers.get(timeout=30)
    finally:
        client.stop_stream()
    assert result is None
    assert error.message() == direct.value.message()


@pytest.fixture(scope="module")
def layered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("layered")
    # Anonymous TCP callers are cleared for layer 2 only.
    with running_daemon(tmp, "--tcp", "127.0.0.1:0", "--anonymous-clearance", "2", "--metrics", "") as ctl:
        ctl("deploy", SAMPLE / "model.onnx", "--allow-fp32", "--name", "low", "--layer", "2")
        ctl("deploy", SAMPLE / "model.onnx", "--allow-fp32", "--name", "high", "--layer", "8")
        yield {"tcp": ctl("status")["tcp_address"], "unix": f"unix://{tmp / 'dsmild.sock'}"}


def test_repository_index_leaves_out_models_above_the_callers_clearance(layered):
    anonymous = grpcclient.InferenceServerClient(url=layered["tcp"])
    assert [m["name"] for m in anonymous.get_model_repository_index(as_json=True)["models"]] == ["low"]
    # The socket's owner (this test's own user) sees both.
    owner = grpcclient.InferenceServerClient(url=layered["unix"])
    assert [m["name"] for m in owner.get_model_repository_index(as_json=True)["models"]] == ["high", "low"]
