"""Triton's Python gRPC client over TLS and mutual TLS against dsmild: a CA
and certificates made with the openssl command, a daemon whose TCP listener
wants client certificates from that CA, and the stock client with
`ssl=True`. A client certificate names a principal (inference at its
clearance); without one the client is the anonymous principal."""

import subprocess

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from conftest import SAMPLE, running_daemon


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_pki(d):
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=dsmil python test CA", cwd=d)
    for name, san in [("server", "DNS:localhost,IP:127.0.0.1"), ("edge-app", "DNS:edge-app.example")]:
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dsmild-tls")
    pki = tmp / "pki"
    pki.mkdir()
    _make_pki(pki)
    config = tmp / "dsmil.toml"
    config.write_text(
        "[listeners]\n"
        f'tls_certificate = "{pki / "server.pem"}"\n'
        f'tls_key = "{pki / "server.key"}"\n'
        f'tls_client_ca = "{pki / "ca.pem"}"\n'
        "[access]\n"
        "principals = [{ name = \"edge\", certificate_names = [\"edge-app.example\"], "
        "role = \"client\", clearance = 9 }]\n"
    )
    # Anonymous callers (no certificate) are cleared for layer 2 only.
    with running_daemon(tmp, "--config", config, "--tcp", "127.0.0.1:0", "--anonymous-clearance", "2",
                        "--metrics", "") as ctl:
        ctl("deploy", SAMPLE / "model.onnx", "--allow-fp32", "--name", "low", "--layer", "2")
        ctl("deploy", SAMPLE / "model.onnx", "--allow-fp32", "--name", "high", "--layer", "8")
        port = ctl("status")["tcp_address"].rsplit(":", 1)[1]
        yield {"url": f"localhost:{port}", "pki": pki}


def _client(d, identity=True):
    pki = d["pki"]
    extra = {}
    if identity:
        extra = {"private_key": str(pki / "edge-app.key"), "certificate_chain": str(pki / "edge-app.pem")}
    return grpcclient.InferenceServerClient(url=d["url"], ssl=True, root_certificates=str(pki / "ca.pem"), **extra)


def _infer(client, model):
    pixels = np.random.default_rng(0).random((3, 64), dtype=np.float32)
    inp = grpcclient.InferInput("pixels", list(pixels.shape), "FP32")
    inp.set_data_from_numpy(pixels)
    return client.infer(model, [inp]).as_numpy("probabilities")


def test_mutual_tls_client_is_its_principal(tls_daemon):
    client = _client(tls_daemon)
    assert client.is_server_ready()
    probs = _infer(client, "high")
    assert probs.shape == (3, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-4)


def test_tls_without_a_certificate_is_the_anonymous_client(tls_daemon):
    client = _client(tls_daemon, identity=False)
    assert _infer(client, "low").shape == (3, 10)
    with pytest.raises(InferenceServerException) as refused:
        _infer(client, "high")
    assert "PERMISSION_DENIED" in str(refused.value.status())
    assert "anonymous" in refused.value.message() and "clearance 8" in refused.value.message()


def test_plaintext_client_is_not_served_on_the_tls_port(tls_daemon):
    client = grpcclient.InferenceServerClient(url=tls_daemon["url"])
    with pytest.raises(InferenceServerException):
        client.is_server_live()
