#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora under fuzz/seeds/<target>/.

Standard library only: protobuf messages and .npy headers are encoded by
hand, so the seeds can be remade on any machine. Run from anywhere:
    python3 fuzz/gen_seeds.py
"""

import io
import shutil
import struct
import zipfile
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOT = FUZZ.parent
SEEDS = FUZZ / "seeds"


# --- protobuf wire format -------------------------------------------------

def varint(n):
    n &= (1 << 64) - 1  # negative int64s are ten-byte varints
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def ld(field, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return key(field, 2) + varint(len(payload)) + payload


def vi(field, n):
    return key(field, 0) + varint(n)


def packed(field, values, enc):
    return ld(field, b"".join(enc(v) for v in values))


# inference.ModelInferRequest
def tensor(name, datatype, shape, contents=b""):
    msg = ld(1, name) + ld(2, datatype) + packed(3, shape, varint)
    if contents:
        msg += ld(5, contents)
    return msg


def infer_request(inputs, raw=()):
    msg = ld(1, "fuzz") + ld(3, "seed")
    for t in inputs:
        msg += ld(5, t)
    for r in raw:
        msg += ld(7, r)
    return msg


def f32s(values):
    return b"".join(struct.pack("<f", v) for v in values)


# --- .npy / .npz ------------------------------------------------------------

def npy(descr, shape, data, fortran=False, version=1):
    # A one-element tuple needs its comma: (3,).
    dims = f"{shape[0]}," if len(shape) == 1 else ", ".join(str(d) for d in shape)
    header = f"{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': ({dims}), }}"
    prefix = 10 if version == 1 else 12
    header += " " * ((-(prefix + len(header) + 1)) % 64) + "\n"
    if version == 1:
        head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header))
    else:
        head = bytes([0x93]) + b"NUMPY" + bytes([version, 0]) + struct.pack("<I", len(header))
    return head + header.encode() + data


def npz(arrays):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for name, data in arrays:
            z.writestr(name + ".npy", data)
    return buf.getvalue()


def write(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main():
    # infer_request: the fuzz target's batched signature is x FP32 [?,4],
    # ids INT64 [?,3], mask BOOL [?], h FP16 [?,2,?]; its fixed one
    # x FP32 [2,4], b UINT8 [?,3].
    write("infer_request", "raw_batched.pb", infer_request(
        [tensor("x", "FP32", [2, 4]), tensor("ids", "INT64", [2, 3]),
         tensor("mask", "BOOL", [2]), tensor("h", "FP16", [2, 2, 3])],
        [f32s(range(8)), b"".join(struct.pack("<q", i) for i in range(6)),
         b"\x01\x00", bytes(2 * 2 * 2 * 3)]))
    write("infer_request", "typed_fixed.pb", infer_request(
        [tensor("x", "FP32", [2, 4], packed(6, [0.5] * 8, lambda v: struct.pack("<f", v))),
         tensor("b", "UINT8", [1, 3], packed(4, [1, 2, 3], varint))]))
    write("infer_request", "typed_batched.pb", infer_request(
        [tensor("x", "FP32", [1, 4], packed(6, [1.0] * 4, lambda v: struct.pack("<f", v))),
         tensor("ids", "INT64", [1, 3], packed(3, [7, -1, 3], varint)),
         tensor("mask", "BOOL", [1], packed(1, [1], varint)),
         tensor("h", "FP16", [1, 2, 1], ld(8, b"\x00\x3c") + ld(8, b"\x00\x3c"))]))

    # onnx_model: the sample model and the small IR fixture.
    d = SEEDS / "onnx_model"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "fixtures/digits/model.onnx", d / "digits.onnx")
    shutil.copy(ROOT / "fixtures/onnx-ir/model.onnx", d / "onnx-ir.onnx")

    # npz: the target's signature is x FP32 [?,4].
    x = f32s(i / 4 for i in range(12))
    labels = b"".join(struct.pack("<q", i) for i in (0, 1, 2))
    write("npz", "calib.npz", npz([("x", npy("<f4", [3, 4], x))]))
    write("npz", "labelled.npz", npz([("x", npy("<f4", [3, 4], x)), ("labels", npy("<i8", [3], labels))]))
    write("npz", "fortran_v2.npz", npz([("x", npy("<f4", [3, 4], x, fortran=True, version=2))]))
    write("npz", "big_endian_v3.npz", npz([("x", npy(">f4", [3, 4], b"".join(struct.pack(">f", i) for i in range(12)), version=3))]))

    # config: the shipped file and a small override.
    d = SEEDS / "config"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config/dsmil.toml", d / "dsmil.toml")
    (d / "small.toml").write_text("[serving]\nworkers_per_deployment = 2\n\n[logging]\nlevel = \"debug\"\n")

    # control_spec: a DeployRequest carrying a full DeploySpec, and other requests.
    attachment = vi(1, 1234) + ld(2, "ab" * 32)
    spec = (ld(1, "digits") + vi(2, 47) + ld(4, "onnx") + vi(5, 19907) + ld(6, "cd" * 32)
            + vi(7, 2) + ld(8, "seed") + ld(9, attachment) + ld(10, attachment)
            + ld(11, "percentile") + ld(12, "int8") + ld(14, "openvino") + ld(15, "throughput")
            + vi(17, 2) + ld(18, "f16") + vi(19, 8))
    write("control_spec", "deploy_spec.pb", ld(1, spec))
    write("control_spec", "rollback.pb", ld(1, "digits") + ld(4, "seed"))
    write("control_spec", "events.pb", vi(1, 3) + ld(2, "digits") + vi(3, 10) + vi(4, 100) + ld(5, "deploy"))


if __name__ == "__main__":
    main()
