"""Triton for bench/transport.py: serves the benchmark's ONNX files with
ONNX Runtime (1 intra-op thread, as dsmild in the benchmark) behind PyTriton
(PyPI nvidia-pytriton: Triton's C++ server, its Python backend proxying to
this process), and writes the gRPC port to PORT_FILE once serving.

    PYTHON bench/transport_triton.py MODEL_DIR PORT_FILE [--instances N]
        [--max-batch 64] [--queue-delay-us 0]

Each model in bench/serving_models.py whose file is in MODEL_DIR is served
as NAME without batching (one request per execution) and, when its first
dimension is dynamic, also as NAME_batched: Triton's dynamic batcher on, up
to --max-batch rows, --queue-delay-us as max_queue_delay_microseconds, the
merged batch run as one ONNX Runtime call (pytriton's @batch). --instances
model instances per model, each with its own ONNX Runtime session.

PYTHON needs nvidia-pytriton, onnxruntime and numpy; it stops on SIGTERM.
"""

import os
import signal
import sys
import sysconfig
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serving_models import MODELS, free_port, launcher_args  # noqa: E402


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def infer_fn(path: Path, input_name: str, output_name: str):
    """Unbatched: each request of an execution run on its own."""
    s = session(path)

    def infer(requests):
        return [{output_name: s.run(None, {input_name: r[input_name]})[0]} for r in requests]

    return infer


def batched_fn(path: Path, input_name: str, output_name: str):
    """Batched: @batch concatenates the execution's requests along the first
    dimension and splits the answer back."""
    s = session(path)

    @batch
    def infer(**inputs):
        return {output_name: s.run(None, {input_name: inputs[input_name]})[0]}

    return infer


def main() -> None:
    args = launcher_args()
    # Triton's Python-backend stub links libpython dynamically: make it find
    # this interpreter's, not an older system one with a different stdlib.
    libdir = sysconfig.get_config_var("LIBDIR")
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")]))
    grpc_port = free_port()
    config = TritonConfig(grpc_port=grpc_port, http_port=free_port(), metrics_port=free_port())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # No access token on the statistics and other endpoints pytriton guards
    # by default: perf_analyzer reads them, and this server is on loopback.
    with Triton(config=config, security_config=TritonSecurityConfig(restricted_endpoints=[])) as triton:
        for name, (inp, out, shape, batchable) in MODELS.items():
            path = args.model_dir / f"{name}.onnx"
            if not path.exists():
                continue
            full = (-1, *shape[1:]) if batchable else shape
            triton.bind(
                model_name=name,
                infer_func=[infer_fn(path, inp, out) for _ in range(args.instances)],
                inputs=[Tensor(name=inp, dtype=np.float32, shape=full)],
                outputs=[Tensor(name=out, dtype=np.float32, shape=(-1,) * len(full))],
                config=ModelConfig(batching=False),
            )
            if batchable:
                triton.bind(
                    model_name=f"{name}_batched",
                    infer_func=[batched_fn(path, inp, out) for _ in range(args.instances)],
                    inputs=[Tensor(name=inp, dtype=np.float32, shape=shape[1:])],
                    outputs=[Tensor(name=out, dtype=np.float32, shape=(-1,))],
                    config=ModelConfig(
                        batching=True,
                        max_batch_size=args.max_batch,
                        batcher=DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us),
                    ),
                )
        triton.run()
        args.port_file.write_text(str(grpc_port))
        stop.wait()


if __name__ == "__main__":
    main()
