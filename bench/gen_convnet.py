"""Writes the transport benchmark's image-sized conv net: four 3×3
convolutions (3→8→8→8→3 channels, ReLU between) on a 1×3×224×224 float
input, with a 1×3×224×224 float output, so both the request and the
response carry 602,112 bytes of tensor data. Seeded random weights, nothing
downloaded.

    python bench/gen_convnet.py OUT.onnx
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CHANNELS = [3, 8, 8, 8, 3]


def main() -> None:
    rng = np.random.default_rng(14)
    nodes, inits, prev = [], [], "image"
    layers = len(CHANNELS) - 1
    for i in range(layers):
        cin, cout = CHANNELS[i], CHANNELS[i + 1]
        w = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)
        b = np.zeros(cout, np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        conv = "out" if i == layers - 1 else f"conv{i}"
        nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [conv], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [conv], [f"relu{i}"]))
            prev = f"relu{i}"
    graph = helper.make_graph(
        nodes,
        "convnet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 224, 224])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, sys.argv[1])


if __name__ == "__main__":
    main()
