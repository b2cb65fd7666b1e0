"""Writes MLP models of chosen sizes for the benchmarks (random weights,
fixed seed; nothing downloaded).

    python bench/gen_mlp.py OUT.onnx WIDTH LAYERS     (WIDTH→WIDTH, LAYERS times)
    python bench/gen_mlp.py OUT.onnx W0,W1,...,Wn     (W0→W1→…→Wn)

Each layer is a MatMul and a Relu; the input is `x` [batch, W0] and the
output `y` [batch, Wn].
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def widths_from(args: list) -> list:
    if len(args) == 1 and "," in args[0]:
        return [int(w) for w in args[0].split(",")]
    width, layers = int(args[0]), int(args[1])
    return [width] * (layers + 1)


def main() -> None:
    out, widths = sys.argv[1], widths_from(sys.argv[2:])
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    layers = len(widths) - 1
    for i in range(layers):
        w = f"w{i}"
        fan_in, fan_out = widths[i], widths[i + 1]
        inits.append(numpy_helper.from_array((rng.standard_normal((fan_in, fan_out)) / fan_in).astype(np.float32), w))
        act = "y" if i == layers - 1 else f"h{i}"
        nodes += [helper.make_node("MatMul", [prev, w], [f"mm{i}"]), helper.make_node("Relu", [f"mm{i}"], [act])]
        prev = act
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", widths[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", widths[-1]])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, out)


if __name__ == "__main__":
    main()
