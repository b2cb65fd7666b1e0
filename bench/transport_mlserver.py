"""MLServer for bench/transport.py: serves the benchmark's ONNX files with
ONNX Runtime (1 intra-op thread, as dsmild and Triton in the benchmark)
behind MLServer (PyPI `mlserver`, Seldon's KServe v2 server: its gRPC
endpoint speaks the same protocol as dsmild's and Triton's, so the same
tritonclient load drives it), and writes the gRPC port to PORT_FILE once
every model is ready.

    PYTHON bench/transport_mlserver.py MODEL_DIR PORT_FILE [--instances N]
        [--max-batch 64] [--queue-delay-us 0]

PYTHON needs mlserver and onnxruntime (e.g. `python3 -m venv
/tmp/mlservervenv && /tmp/mlservervenv/bin/pip install mlserver
onnxruntime`); it stops on SIGTERM. MLServer has no ONNX runtime of its
own: `OnnxModel` below is a custom runtime (an MLModel) that runs the file
in ONNX Runtime with 1 intra-op and 1 inter-op thread. Each model in
bench/serving_models.py whose file is in MODEL_DIR is served as NAME
without batching and, when its first dimension is dynamic, as NAME_batched
with MLServer's adaptive batching (max_batch_size --max-batch,
max_batch_time --queue-delay-us, at least 100 µs: MLServer turns adaptive
batching off at 0). --instances is MLServer's `parallel_workers` (default
1: inference in one worker process, the gRPC server in the main one).
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from serving_models import MODELS, free_port, launcher_args  # noqa: E402


class OnnxModel(MLModel):
    """One ONNX file in ONNX Runtime: parameters.uri is the file,
    parameters.extra.output the name to answer under."""

    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(self.settings.parameters.uri, options,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._output = self.settings.parameters.extra["output"]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        y = self._session.run(None, {self._input: x})[0]
        return InferenceResponse(model_name=self.name, id=payload.id,
                                 outputs=[NumpyCodec.encode_output(name=self._output, payload=y)])


def main() -> None:
    args = launcher_args()
    repo = Path(tempfile.mkdtemp(prefix="dsmil-mlserver-"))
    grpc_port, http_port = free_port(), free_port()
    (repo / "settings.json").write_text(json.dumps({
        "debug": False, "parallel_workers": args.instances,
        "host": "127.0.0.1", "grpc_port": grpc_port, "http_port": http_port,
        "metrics_port": free_port(), "metrics_endpoint": None,
    }))
    names = []
    for name, (_, out, _, batchable) in MODELS.items():
        path = args.model_dir / f"{name}.onnx"
        if not path.exists():
            continue
        variants = [(name, {})]
        if batchable:
            variants.append((f"{name}_batched", {"max_batch_size": args.max_batch,
                                                 "max_batch_time": max(args.queue_delay_us, 100) / 1e6}))
        for model, batching in variants:
            (repo / model).mkdir()
            (repo / model / "model-settings.json").write_text(json.dumps({
                "name": model, "implementation": "transport_mlserver.OnnxModel",
                "parameters": {"uri": str(path.resolve()), "extra": {"output": out}}, **batching,
            }))
            names.append(model)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([str(Path(sys.executable).parent / "mlserver"), "start", str(repo)], env=env)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())

    # Readiness over REST: tritonclient's protobufs clash with MLServer's
    # own in one process.
    def ready(name: str) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/models/{name}/ready", timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.terminate()
            sys.exit("MLServer did not start")
        if all(ready(n) for n in names):
            break
        time.sleep(0.5)
    args.port_file.write_text(str(grpc_port))
    proc.wait()


if __name__ == "__main__":
    main()
