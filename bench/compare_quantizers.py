"""Quantizes each model with dsmil (`dsmild quantize`) and with ONNX
Runtime's quantize_static (after its recommended quant_pre_process), then
measures FP32 and both INT8 models in ONNX Runtime: size, one-sample p50
latency, accuracy (with labels) or fidelity to FP32 (top-1 agreement, and
the median relative L2 error of the outputs), and quantization wall time:
ONNX Runtime's pre-processing and quantize_static against dsmil's
calibration and rewrite (from its report), with dsmil's accuracy gate,
which ONNX Runtime does not have, and the whole process shown apart. Run by bench/quantize.sh.

    python bench/compare_quantizers.py WORK_DIR DSMILD METHOD "MODEL..."
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

LATENCY_RUNS = 400
LATENCY_ROUNDS = 10


class Reader(CalibrationDataReader):
    def __init__(self, arrays: dict) -> None:
        n = len(next(iter(arrays.values())))
        self.items = iter([{k: v[i : i + 1] for k, v in arrays.items()} for i in range(n)])

    def get_next(self):
        return next(self.items, None)


def inputs_of(npz: Path) -> dict:
    data = np.load(npz)
    return {k: data[k] for k in data.files if k not in ("labels", "probabilities")}


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def outputs(path: Path, arrays: dict) -> np.ndarray:
    """The first output for each sample, one sample at a time."""
    s = session(path)
    n = len(next(iter(arrays.values())))
    return np.concatenate([s.run(None, {k: v[i : i + 1] for k, v in arrays.items()})[0] for i in range(n)])


def p50_ms(paths: list, arrays: dict) -> list:
    """Each model's median one-sample latency: the median over rounds of
    each round's median, the models taking turns within a round so that
    the machine's drift (clocks, other load) falls on all of them alike."""
    sessions = [session(p) for p in paths]
    feed = {k: v[:1] for k, v in arrays.items()}
    for s in sessions:
        for _ in range(20):
            s.run(None, feed)
    rounds = [[] for _ in sessions]
    for _ in range(LATENCY_ROUNDS):
        for s, medians in zip(sessions, rounds):
            times = []
            for _ in range(LATENCY_RUNS // LATENCY_ROUNDS):
                t = time.perf_counter()
                s.run(None, feed)
                times.append(time.perf_counter() - t)
            medians.append(np.median(times))
    return [1000 * float(np.median(m)) for m in rounds]


def quality(fp32: np.ndarray, int8: np.ndarray, labels) -> str:
    if labels is not None:
        return f"{(int8.argmax(1) == labels).mean():.4f} acc"
    # Random weights give small top-1 margins, so agreement alone is noisy;
    # the relative L2 error of the outputs says how close they are.
    agree = (fp32.argmax(1) == int8.argmax(1)).mean()
    a, b = fp32.reshape(len(fp32), -1), int8.reshape(len(int8), -1)
    error = np.median(np.linalg.norm(b - a, axis=1) / np.linalg.norm(a, axis=1))
    return f"{agree:.3f} top-1 agreement, {100 * error:.2f}% error"


def ort_quantize(model: Path, calib: dict, out: Path, method: str) -> float:
    t = time.perf_counter()
    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
    quantize_static(
        str(pre),
        str(out),
        Reader(calib),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method={
            "minmax": CalibrationMethod.MinMax,
            "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile,
        }[method],
    )
    return time.perf_counter() - t


def dsmil_quantize(dsmild: str, folder: Path, out: Path, method: str) -> float:
    # Full INT8, as ONNX Runtime makes it: the gate still evaluates FP32
    # against INT8 on the calibration samples (its time counts), but never
    # sends layers back to FP32. The validation set is the bench's own.
    config = out.with_suffix(".toml")
    config.write_text("[quantization]\nmin_accuracy_retention = 0.01\n")
    t = time.perf_counter()
    run = subprocess.run(
        [dsmild, "--config", str(config), "quantize", str(folder / "model.onnx"), "--calib", str(folder / "calib.npz"),
         "--method", method, "-o", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    elapsed = time.perf_counter() - t
    if run.returncode != 0:
        sys.exit(f"dsmild quantize failed on {folder}:\n{run.stderr}")
    report = json.loads(run.stdout)
    return elapsed, report["quantize_ms"] / 1000, report["gate_ms"] / 1000


def main() -> None:
    work, dsmild, method = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    names = " ".join(sys.argv[4:]).split()
    mib = lambda p: f"{p.stat().st_size / 2**20:.2f} MiB"
    print(f"method {method}; latency: median of {LATENCY_ROUNDS} rounds x {LATENCY_RUNS // LATENCY_ROUNDS} one-sample runs\n")
    print("| model | variant | size | p50 latency | vs FP32 | accuracy / fidelity | quantization time |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            folder = work / name
            calib, val = inputs_of(folder / "calib.npz"), inputs_of(folder / "val.npz")
            labels = np.load(folder / "val.npz").get("labels")
            fp32_path = folder / "model.onnx"
            ours, theirs = Path(tmp) / f"{name}.dsmil.onnx", Path(tmp) / f"{name}.ort.onnx"
            t_total, t_ours, t_gate = dsmil_quantize(dsmild, folder, ours, method)
            t_theirs = ort_quantize(fp32_path, calib, theirs, method)
            fp32_out = outputs(fp32_path, val)
            rows = [("FP32", fp32_path, None), ("INT8 onnxruntime", theirs, t_theirs), ("INT8 dsmil", ours, t_ours)]
            latencies = p50_ms([path for _, path, _ in rows], val)
            base = latencies[0]
            for (variant, path, took), latency in zip(rows, latencies):
                q = quality(fp32_out, outputs(path, val), labels) if path != fp32_path or labels is not None else "reference"
                took = "" if took is None else f"{took:.2f} s"
                if path == ours:
                    took += f" (+ gate {t_gate:.2f} s; process {t_total:.2f} s)"
                print(
                    f"| {name} | {variant} | {mib(path)} | {latency:.3f} ms | {base / latency:.2f}x | {q} | {took} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
