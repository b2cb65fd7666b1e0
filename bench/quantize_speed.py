"""Quantization wall time and INT8 latency on the same data, side by side
(issue 13's speed targets): ONNX Runtime's quantize_static
(quant_pre_process, then QDQ, per-channel, minmax, as bench/real_models.py
calls it) against `dsmild quantize` given the same calibration file and no
other (so its accuracy gate runs on those samples too: calibration +
rewrite + gate against ORT's calibration + rewrite). Rounds alternate the
two sides; medians and the ratio are printed. Then both INT8 files run in
one ONNX Runtime process, 1 intra-op thread, taking turns on the first
calibration sample (20 rounds after a warm-up): p50 of each and the ratio.

    python bench/quantize_speed.py --models DIR --data DIR --dsmild PATH
                                   [--only NAME...] [--rounds 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_models import ranks, _ort_quantize  # noqa: E402

# Models whose outputs the default gate judges apart from the VAD exports,
# whose weights sit in If bodies (not a quantizer timing question).
MODELS = ["ocr_cls", "ocr_rec", "ocr_det"]


def dsmil_seconds(dsmild: str, model: Path, calib: Path, out: Path) -> float:
    # position: the recogniser passes it (the default sequence match
    # refuses it, and a refusal's fallback search is not what is timed).
    cmd = [dsmild, "quantize", str(model), "--calib", str(calib), "--method", "minmax", "-o", str(out)]
    if "rec" in model.name:
        cmd += ["--gate-metric", "position"]
    t = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RUST_LOG": "warn"})
    took = time.perf_counter() - t
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{run.stderr}")
    return took


def latencies(paths, feed, rounds=20):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = [ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]) for p in paths]
    for s in sessions:
        s.run(None, feed)
    times = [[] for _ in sessions]
    for _ in range(rounds):
        for s, t in zip(sessions, times):
            start = time.perf_counter()
            s.run(None, feed)
            t.append(time.perf_counter() - start)
    return [statistics.median(t) * 1e3 for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--dsmild", required=True)
    parser.add_argument("--only", nargs="*", default=MODELS)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print("| model | calibration samples | ORT quantize_static (s) | dsmild quantize, gate included (s) | dsmil / ORT "
          "| ORT INT8 p50 (ms) | dsmil INT8 p50 (ms) | dsmil / ORT |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            model = args.models / f"{name}.onnx"
            calib_path = args.data / name / "calib.npz"
            calib = dict(np.load(calib_path))
            rank = ranks(model)
            ort, ours = [], []
            for _ in range(args.rounds):
                r = _ort_quantize(model, calib, rank, Path(tmp) / f"{name}.ort.onnx", "minmax")
                if not r["ok"]:
                    raise SystemExit(f"ORT failed on {name}: {r['error']}")
                ort.append(r["seconds"])
                ours.append(dsmil_seconds(args.dsmild, model, calib_path, Path(tmp) / f"{name}.dsmil.onnx"))
            n = len(next(iter(calib.values())))
            o, d = statistics.median(ort), statistics.median(ours)
            feed = {k: (v[:1] if v.ndim == rank[k] else v[0]) for k, v in calib.items() if k in rank}
            lo, ld = latencies([Path(tmp) / f"{name}.ort.onnx", Path(tmp) / f"{name}.dsmil.onnx"], feed)
            print(f"| {name} | {n} | {o:.2f} | {d:.2f} | {d / o:.2f}× | {lo:.2f} | {ld:.2f} | {ld / lo:.2f}× |",
                  flush=True)


if __name__ == "__main__":
    main()
