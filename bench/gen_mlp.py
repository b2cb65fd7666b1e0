"""Writes MLP models of chosen sizes for the benchmarks (random weights,
fixed seed; nothing downloaded).

    python bench/gen_mlp.py OUT.onnx WIDTH LAYERS
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main() -> None:
    out, width, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        w = f"w{i}"
        inits.append(numpy_helper.from_array((rng.standard_normal((width, width)) / width).astype(np.float32), w))
        act = "y" if i == layers - 1 else f"h{i}"
        nodes += [helper.make_node("MatMul", [prev, w], [f"mm{i}"]), helper.make_node("Relu", [f"mm{i}"], [act])]
        prev = act
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, out)


if __name__ == "__main__":
    main()
