"""Writes the quantization benchmark's FP32 models and their data: the
topologies of ResNet-50 and MobileNetV2 (ImageNet shapes, 1000 classes) and
a small BERT-style encoder, with seeded random weights (nothing downloaded).
Each model gets calib.npz and val.npz keyed by its input name.

    python bench/gen_models.py OUT_DIR [resnet50 mobilenetv2 bert]

Random weights make accuracy meaningless, so the benchmark compares INT8
with FP32 outputs (fidelity) instead; the weights are scaled (He init, small
residual-branch gains) so that activations keep realistic ranges through
depth, which is what calibration is sensitive to.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class Graph:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}_{self.count}"

    def const(self, kind: str, value: np.ndarray) -> str:
        n = self.name(kind)
        self.inits.append(numpy_helper.from_array(value.astype(value.dtype), n))
        return n

    def op(self, op: str, inputs: list, **attrs) -> str:
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    # Convolutional building blocks ---------------------------------------

    def conv_bn(self, x: str, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, gain: float = 1.0) -> str:
        fan_in = cin // groups * k * k
        w = self.rng.standard_normal((cout, cin // groups, k, k)) * np.sqrt(2.0 / fan_in)
        y = self.op(
            "Conv",
            [x, self.const("w", w.astype(np.float32))],
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[k // 2] * 4,
            group=groups,
        )
        # Trained BN layers are not identities: varied scales and shifts.
        gamma = (gain * self.rng.uniform(0.5, 1.5, cout)).astype(np.float32)
        beta = (0.1 * self.rng.standard_normal(cout)).astype(np.float32)
        mean = (0.05 * self.rng.standard_normal(cout)).astype(np.float32)
        var = self.rng.uniform(0.5, 1.5, cout).astype(np.float32)
        return self.op(
            "BatchNormalization",
            [y] + [self.const(n, v) for n, v in [("gamma", gamma), ("beta", beta), ("mean", mean), ("var", var)]],
            epsilon=1e-5,
        )

    def classifier(self, x: str, features: int, classes: int = 1000) -> str:
        pooled = self.op("GlobalAveragePool", [x])
        flat = self.op("Flatten", [pooled], axis=1)
        w = (self.rng.standard_normal((classes, features)) / np.sqrt(features)).astype(np.float32)
        b = np.zeros(classes, np.float32)
        return self.op("Gemm", [flat, self.const("fc_w", w), self.const("fc_b", b)], transB=1)

    def model(self, name: str, inputs: list, output: str, out_shape: list) -> onnx.ModelProto:
        assert self.nodes[-1].output[0] == output, "the output is the last node's"
        self.nodes[-1].output[0] = "logits"
        graph = helper.make_graph(
            self.nodes,
            name,
            inputs,
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)],
            self.inits,
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def resnet50() -> onnx.ModelProto:
    g = Graph(50)
    x = g.op("Relu", [g.conv_bn("image", 3, 64, 7, 2)])
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for b in range(blocks):
            s = stride if b == 0 else 1
            y = g.op("Relu", [g.conv_bn(x, cin, width, 1)])
            y = g.op("Relu", [g.conv_bn(y, width, width, 3, s)])
            y = g.conv_bn(y, width, width * 4, 1, gain=0.2)
            shortcut = g.conv_bn(x, cin, width * 4, 1, s) if b == 0 else x
            x = g.op("Relu", [g.op("Add", [y, shortcut])])
            cin = width * 4
    out = g.classifier(x, 2048)
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 224, 224])
    return g.model("resnet50", [image], out, ["batch", 1000])


def mobilenetv2() -> onnx.ModelProto:
    g = Graph(2)

    def relu6(v: str) -> str:
        return g.op("Clip", [v, g.const("zero", np.array(0, np.float32)), g.const("six", np.array(6, np.float32))])

    x = relu6(g.conv_bn("image", 3, 32, 3, 2))
    cin = 32
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            y = relu6(g.conv_bn(x, cin, hidden, 1)) if t != 1 else x
            y = relu6(g.conv_bn(y, hidden, hidden, 3, stride, groups=hidden))
            y = g.conv_bn(y, hidden, c, 1, gain=0.5)
            x = g.op("Add", [x, y]) if stride == 1 and cin == c else y
            cin = c
    x = relu6(g.conv_bn(x, 320, 1280, 1))
    out = g.classifier(x, 1280)
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 224, 224])
    return g.model("mobilenetv2", [image], out, ["batch", 1000])


def bert(layers: int = 4, hidden: int = 256, heads: int = 4, seq: int = 128, classes: int = 2) -> onnx.ModelProto:
    """A BERT-style encoder over float embeddings: attention, GELU FFN and
    LayerNormalization per layer, a classifier on the first token."""
    g = Graph(7)
    head = hidden // heads

    def dense(x: str, cin: int, cout: int) -> str:
        w = (g.rng.standard_normal((cin, cout)) * 0.02 * np.sqrt(768 / cin)).astype(np.float32)
        b = (0.02 * g.rng.standard_normal(cout)).astype(np.float32)
        return g.op("Add", [g.op("MatMul", [x, g.const("w", w)]), g.const("b", b)])

    def layer_norm(x: str) -> str:
        gamma = g.rng.uniform(0.8, 1.2, hidden).astype(np.float32)
        beta = (0.02 * g.rng.standard_normal(hidden)).astype(np.float32)
        return g.op("LayerNormalization", [x, g.const("ln_g", gamma), g.const("ln_b", beta)], axis=-1, epsilon=1e-12)

    split_shape = g.const("split_shape", np.array([0, seq, heads, head], np.int64))
    merge_shape = g.const("merge_shape", np.array([0, seq, hidden], np.int64))
    scale = g.const("scale", np.array(1.0 / np.sqrt(head), np.float32))

    def heads_of(x: str, perm: list) -> str:
        return g.op("Transpose", [g.op("Reshape", [x, split_shape])], perm=perm)

    x = layer_norm("embeddings")
    for _ in range(layers):
        q = heads_of(dense(x, hidden, hidden), [0, 2, 1, 3])
        k = heads_of(dense(x, hidden, hidden), [0, 2, 3, 1])
        v = heads_of(dense(x, hidden, hidden), [0, 2, 1, 3])
        scores = g.op("Mul", [g.op("MatMul", [q, k]), scale])
        context = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        context = g.op("Reshape", [g.op("Transpose", [context], perm=[0, 2, 1, 3]), merge_shape])
        x = layer_norm(g.op("Add", [x, dense(context, hidden, hidden)]))
        up = dense(x, hidden, hidden * 4)
        # GELU, exact: x * 0.5 * (1 + erf(x / sqrt 2)).
        erf = g.op("Erf", [g.op("Mul", [up, g.const("rsqrt2", np.array(1 / np.sqrt(2), np.float32))])])
        gelu = g.op("Mul", [g.op("Mul", [up, g.op("Add", [erf, g.const("one", np.array(1, np.float32))])]), g.const("half", np.array(0.5, np.float32))])
        x = layer_norm(g.op("Add", [x, dense(gelu, hidden * 4, hidden)]))
    first = g.op("Gather", [x, g.const("cls", np.array(0, np.int64))], axis=1)
    out = dense(g.op("Tanh", [dense(first, hidden, hidden)]), hidden, classes)
    embeddings = helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", seq, hidden])
    return g.model("bert", [embeddings], out, ["batch", classes])


def images(rng: np.random.Generator, n: int) -> np.ndarray:
    """Smooth, varied pseudo-images: low-resolution noise upsampled, with
    per-image contrast and brightness, normalised like ImageNet inputs."""
    low = rng.standard_normal((n, 3, 14, 14))
    up = low.repeat(16, axis=2).repeat(16, axis=3)
    detail = 0.3 * rng.standard_normal((n, 3, 224, 224))
    gain = rng.uniform(0.5, 1.5, (n, 1, 1, 1))
    shift = rng.uniform(-0.5, 0.5, (n, 1, 1, 1))
    return (gain * (up + detail) + shift).astype(np.float32)


def embeddings(rng: np.random.Generator, n: int, seq: int = 128, hidden: int = 256) -> np.ndarray:
    vocab = rng.standard_normal((1000, hidden)).astype(np.float32)
    tokens = rng.integers(0, 1000, (n, seq))
    position = 0.1 * np.sin(np.arange(seq)[:, None] / (10 ** (np.arange(hidden)[None, :] / hidden)))
    return (vocab[tokens] + position).astype(np.float32)


MODELS = {
    "resnet50": (resnet50, "image", images),
    "mobilenetv2": (mobilenetv2, "image", images),
    "bert": (bert, "embeddings", embeddings),
}


def main() -> None:
    out = Path(sys.argv[1])
    names = sys.argv[2:] or list(MODELS)
    for name in names:
        build, input_name, data = MODELS[name]
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        onnx.save(build(), folder / "model.onnx")
        rng = np.random.default_rng(1)
        np.savez(folder / "calib.npz", **{input_name: data(rng, 32)})
        np.savez(folder / "val.npz", **{input_name: data(rng, 128)})
        print(f"{folder}/model.onnx: {(folder / 'model.onnx').stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
