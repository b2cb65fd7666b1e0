"""Triton for bench/transport.py: serves the benchmark's ONNX files with
ONNX Runtime (1 intra-op thread, as dsmild in the benchmark) behind PyTriton
(PyPI nvidia-pytriton: Triton's C++ server, its Python backend proxying to
this process), and writes the gRPC port to PORT_FILE once serving.

    PYTHON bench/transport_triton.py MODEL_DIR PORT_FILE

PYTHON needs nvidia-pytriton, onnxruntime and numpy; it stops on SIGTERM.
"""

import os
import signal
import socket
import sys
import sysconfig
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

MODELS = {"mlp": ("x", "y", (-1, 64)), "convnet": ("image", "out", (1, 3, 224, 224))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def infer_fn(path: Path, input_name: str, output_name: str):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def infer(requests):
        return [{output_name: session.run(None, {input_name: r[input_name]})[0]} for r in requests]

    return infer


def main() -> None:
    model_dir, port_file = Path(sys.argv[1]), Path(sys.argv[2])
    # Triton's Python-backend stub links libpython dynamically: make it find
    # this interpreter's, not an older system one with a different stdlib.
    libdir = sysconfig.get_config_var("LIBDIR")
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [libdir, os.environ.get("LD_LIBRARY_PATH")]))
    grpc_port = free_port()
    config = TritonConfig(grpc_port=grpc_port, http_port=free_port(), metrics_port=free_port())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with Triton(config=config) as triton:
        for name, (inp, out, shape) in MODELS.items():
            triton.bind(
                model_name=name,
                infer_func=infer_fn(model_dir / f"{name}.onnx", inp, out),
                inputs=[Tensor(name=inp, dtype=np.float32, shape=shape)],
                outputs=[Tensor(name=out, dtype=np.float32, shape=shape)],
                config=ModelConfig(batching=False),
            )
        triton.run()
        port_file.write_text(str(grpc_port))
        stop.wait()


if __name__ == "__main__":
    main()
