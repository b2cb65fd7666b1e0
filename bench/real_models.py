"""dsmil's INT8 quantizer against ONNX Runtime's quantize_static on real,
trained third-party models (scripts/fetch-models.sh: PP-OCRv4 detector and
recogniser, the PP-OCR orientation classifier, Silero VAD), judged by each
model's task against its own FP32 output on validation data
(bench/real_data.py). Run by bench/real_models.sh.

    python bench/real_models.py --models DIR --data DIR --dsmild PATH [--work DIR]
                                [--only NAME...] [--methods minmax entropy percentile]
                                [--json FILE]

For each model and each calibration method: `dsmild quantize` (as shipped:
default config, its accuracy gate and mixed-precision fallback on, the
validation set as --val) and ORT (quant_pre_process, then quantize_static:
QDQ, per-channel int8 weights, uint8 activations). Each side keeps its best
method by the task metric. Then, measured in ONNX Runtime in this process:
quantization wall time (the whole dsmild process, gate included; ORT's
pre-processing + quantize_static), one-sample p50 latency (FP32 and both
INT8 models taking turns within each round), file size, and the task metric:

  ocr_det  mean IoU of the probability map thresholded at 0.3 (rapidocr's
           DBPostProcess thresh) against FP32's
  ocr_rec  share of lines whose greedy CTC decode (argmax, repeats merged,
           blank 0 dropped) equals FP32's index sequence
  ocr_cls  top-1 agreement with FP32
  vad      share of 512-sample chunks whose speech probability is within
           0.05 of FP32's and on the same side of 0.5, each model streamed
           over the validation audio with its own recurrent state

A dsmil refusal is recorded with its exact message, not hidden.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
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

LATENCY_ROUNDS = 10
METHODS = ["minmax", "entropy", "percentile"]
ORT_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}
TASKS = {
    "ocr_det": "mask IoU@0.3",
    "ocr_rec": "CTC line match",
    "ocr_cls": "top-1 agreement",
    "silero_vad": "speech-prob agreement",
    "silero_vad_16k_op15": "speech-prob agreement",
}


def session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load(npz: Path) -> dict:
    data = np.load(npz)
    return {k: data[k] for k in data.files}


def ranks(model: Path) -> dict:
    return {i.name: len(i.shape) for i in session(model).get_inputs()}


def count(arrays: dict) -> int:
    return min(len(v) for v in arrays.values())


def sample(arrays: dict, i: int, rank: dict) -> dict:
    """Sample i in dsmil's .npz convention: an array of the input's rank
    holds rows of the batch axis, one rank more holds stacked inputs."""
    return {k: (v[i : i + 1] if v.ndim == rank[k] else np.asarray(v[i])) for k, v in arrays.items() if k in rank}


class Reader(CalibrationDataReader):
    def __init__(self, arrays: dict, rank: dict) -> None:
        self.items = iter([sample(arrays, i, rank) for i in range(count(arrays))])

    def get_next(self):
        return next(self.items, None)


# --- task metrics --------------------------------------------------------------


def ctc(row: np.ndarray) -> tuple:
    idx = row.argmax(-1)
    keep = np.ones(len(idx), bool)
    keep[1:] = idx[1:] != idx[:-1]
    keep &= idx != 0
    return tuple(idx[keep].tolist())


def run_all(path, arrays, rank) -> list:
    s = session(path)
    return [s.run(None, sample(arrays, i, rank))[0] for i in range(count(arrays))]


def stream_vad(path, audio: np.ndarray) -> np.ndarray:
    """Speech probabilities along each stream, the model's own state carried."""
    s = session(path)
    names = {i.name for i in s.get_inputs()}
    probs = []
    for a in audio:
        padded = np.concatenate([np.zeros(64, np.float32), a])
        state = np.zeros((2, 1, 128), np.float32)
        for i in range(len(a) // 512):
            feed = {"input": padded[None, i * 512 : i * 512 + 576], "state": state}
            if "sr" in names:
                feed["sr"] = np.array(16000, np.int64)
            out, state = s.run(None, feed)[:2]
            probs.append(float(out.reshape(-1)[0]))
    return np.array(probs)


def task_outputs(name, path, val, rank, meta):
    if name.startswith("silero"):
        return stream_vad(path, meta["audio"])
    return run_all(path, val, rank)


def task_score(name, fp32, int8) -> float:
    if name == "ocr_det":
        ious = []
        for a, b in zip(fp32, int8):
            a, b = a > 0.3, b > 0.3
            union = (a | b).sum()
            ious.append((a & b).sum() / union if union else 1.0)
        return float(np.mean(ious))
    if name == "ocr_rec":
        return float(np.mean([ctc(a[0]) == ctc(b[0]) for a, b in zip(fp32, int8)]))
    if name == "ocr_cls":
        return float(np.mean([a.argmax() == b.argmax() for a, b in zip(fp32, int8)]))
    a, b = np.asarray(fp32), np.asarray(int8)
    return float(np.mean((np.abs(a - b) < 0.05) & ((a > 0.5) == (b > 0.5))))


# --- the two quantizers ---------------------------------------------------------


def dsmil_quantize(dsmild, model, calib, val, out, method, config=None) -> dict:
    cmd = [dsmild] + (["--config", str(config)] if config else [])
    cmd += ["quantize", str(model), "--calib", str(calib), "--val", str(val), "--method", method, "-o", str(out)]
    t = time.perf_counter()
    run = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RUST_LOG": "warn"})
    took = time.perf_counter() - t
    result = {"command": " ".join(cmd), "seconds": took, "ok": run.returncode == 0}
    if run.returncode != 0:
        lines = [l for l in run.stderr.strip().splitlines() if l.strip()]
        start = next((i for i, l in enumerate(lines) if l.startswith("dsmild:")), max(0, len(lines) - 6))
        result["error"] = "\n".join(lines[start:])
        return result
    report = json.loads(run.stdout)
    result["report"] = {
        k: report.get(k)
        for k in ("quantize_ms", "gate_ms", "int8_mac_share", "fp32_fallback", "evaluations", "promoted_constants",
                  "upgraded_from_opset", "quantized_activations", "calibration_samples")
    }
    result["report"]["quantized_nodes"] = len(report.get("quantized_nodes", []))
    ev = report.get("evaluation") or {}
    result["report"]["gate"] = {k: ev.get(k) for k in ("metric", "int8", "threshold", "reason")}
    return result


ORT_MEMORY_GB = 10


def ort_quantize(model, calib, rank, out, method) -> dict:
    """ORT's quantization in a forked child whose address space is capped:
    its histogram calibrators hold every activation of every calibration
    sample in memory (PP-OCRv4 rec, 128 samples, percentile: 24 GB), and an
    out-of-memory kill must be this row's failure, not the run's, nor take
    the machine's other work with it."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_ort_child, args=(model, calib, rank, out, method, queue))
    t = time.perf_counter()
    child.start()
    child.join()
    took = time.perf_counter() - t
    if child.exitcode == 0 and not queue.empty():
        result = queue.get()
        return result
    return {"ok": False, "seconds": took,
            "error": f"ORT quantization died (exit {child.exitcode}) under a {ORT_MEMORY_GB} GB address-space cap"}


def _ort_child(model, calib, rank, out, method, queue) -> None:
    import resource

    cap = ORT_MEMORY_GB * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    queue.put(_ort_quantize(model, calib, rank, out, method))


def _ort_quantize(model, calib, rank, out, method) -> dict:
    t = time.perf_counter()
    pre = out.with_suffix(".pre.onnx")
    up = out.with_suffix(".op13.onnx")
    try:
        # Per-channel QDQ needs opset 13 (DequantizeLinear's axis); ORT's
        # quantizer does not upgrade, so do what its docs advise first.
        import onnx
        from onnx import version_converter

        m = onnx.load(str(model))
        opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
        if opset < 13:
            onnx.save(version_converter.convert_version(m, 13), str(up))
            model = up
        try:
            quant_pre_process(str(model), str(pre))
        except Exception:  # symbolic shape inference gives up on some graphs
            quant_pre_process(str(model), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(out),
            Reader(calib, rank),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=ORT_METHODS[method],
        )
    except Exception as e:
        return {"ok": False, "seconds": time.perf_counter() - t, "error": f"{type(e).__name__}: {e}",
                "trace": traceback.format_exc(limit=3)}
    finally:
        pre.unlink(missing_ok=True)
        up.unlink(missing_ok=True)
    return {"ok": True, "seconds": time.perf_counter() - t}


def count_qdq(path) -> int:
    import onnx

    m = onnx.load(str(path))
    n = 0

    def walk(g):
        nonlocal n
        for node in g.node:
            n += node.op_type == "QuantizeLinear"
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    walk(a.g)

    walk(m.graph)
    return n


def p50_ms(paths: list, feed: dict, runs: int) -> list:
    """Each model's median one-sample latency: the median over rounds of each
    round's median, the models taking turns within a round."""
    sessions = [session(p) for p in paths]
    for s in sessions:
        for _ in range(5):
            s.run(None, feed)
    rounds = [[] for _ in sessions]
    for _ in range(LATENCY_ROUNDS):
        for s, medians in zip(sessions, rounds):
            times = []
            for _ in range(max(1, runs // LATENCY_ROUNDS)):
                t = time.perf_counter()
                s.run(None, feed)
                times.append(time.perf_counter() - t)
            medians.append(np.median(times))
    return [1000 * float(np.median(m)) for m in rounds]


def score(r, name, out, fp32, val, rank, meta) -> None:
    """The task metric of a quantizer's output; a model ONNX Runtime will
    not load or run counts as a failure, with the runtime's message."""
    if not r["ok"]:
        return
    r["path"], r["bytes"] = str(out), out.stat().st_size
    try:
        r["qdq"] = count_qdq(out)
        r["score"] = task_score(name, fp32, task_outputs(name, out, val, rank, meta))
    except Exception as e:
        r["ok"], r["error"] = False, f"the quantized model does not run: {type(e).__name__}: {e}"


def bench(name, args, work: Path) -> dict:
    model = args.models / f"{name}.onnx"
    folder = args.data / name
    calib_path, val_path = folder / "calib.npz", folder / "val.npz"
    calib, val = load(calib_path), load(val_path)
    meta = load(folder / "val_meta.npz") if (folder / "val_meta.npz").exists() else {}
    rank = ranks(model)
    result = {"model": name, "task": TASKS[name], "fp32_bytes": model.stat().st_size, "dsmil": {}, "ort": {}}
    fp32 = task_outputs(name, model, val, rank, meta)
    log = lambda *a: print(f"[{name}]", *a, file=sys.stderr, flush=True)
    for method in args.methods:
        out = work / f"{name}.dsmil.{method}.onnx"
        r = dsmil_quantize(args.dsmild, model, calib_path, val_path, out, method)
        score(r, name, out, fp32, val, rank, meta)
        log("dsmil", method, "ok" if r["ok"] else "REFUSED", r.get("score"), f"{r['seconds']:.1f}s", r.get("error", ""))
        result["dsmil"][method] = r
        out = work / f"{name}.ort.{method}.onnx"
        r = ort_quantize(model, calib, rank, out, method)
        score(r, name, out, fp32, val, rank, meta)
        log("ort", method, "ok" if r["ok"] else "FAILED", r.get("score"), f"{r['seconds']:.1f}s", r.get("error", ""))
        result["ort"][method] = r
    best = {}
    for side in ("dsmil", "ort"):
        ok = [(r["score"], -r["seconds"], m) for m, r in result[side].items() if r["ok"]]
        best[side] = max(ok)[2] if ok else None
    result["best"] = best
    # Wall time: the median over --repeats runs of each side's best method.
    for side in ("dsmil", "ort"):
        if not best[side]:
            continue
        r = result[side][best[side]]
        times = [r["seconds"]]
        for k in range(args.repeats - 1):
            again = work / f"{name}.{side}.repeat.onnx"
            if side == "dsmil":
                x = dsmil_quantize(args.dsmild, model, calib_path, val_path, again, best[side])
            else:
                x = ort_quantize(model, calib, rank, again, best[side])
            again.unlink(missing_ok=True)
            if x["ok"]:
                times.append(x["seconds"])
        r["seconds_runs"] = times
        r["seconds"] = float(np.median(times))
    paths = [model] + [Path(result[s][best[s]]["path"]) for s in ("ort", "dsmil") if best[s]]
    feed = sample(val, 0, rank)
    runs = args.runs or (60 if name == "ocr_det" else 200 if name.startswith("ocr") else 1000)
    lat = p50_ms(paths, feed, runs)
    result["p50_ms"] = {"fp32": lat[0]}
    i = 1
    for s in ("ort", "dsmil"):
        if best[s]:
            result["p50_ms"][s] = lat[i]
            i += 1
    result["latency_runs"] = runs
    return result


def table(results: list) -> str:
    rows = [
        "| model | task metric | quantizer (best method) | metric vs FP32 | other methods | quantization time | p50 latency (FP32) | size (FP32) | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        mib = lambda b: f"{b / 2**20:.2f} MiB"
        for side, label in (("ort", "ORT quantize_static"), ("dsmil", "dsmild quantize")):
            best = r["best"][side]
            runs = r[side]
            others = ", ".join(
                f"{m} {runs[m]['score']:.3f}" if runs[m]["ok"] else f"{m} {'refused' if side == 'dsmil' else 'failed'}"
                for m in runs if m != best
            )
            if best is None:
                rows.append(f"| {r['model']} | {r['task']} | {label} | **refused (all methods)** | | | | | message below |")
                continue
            b = runs[best]
            note = ""
            if side == "dsmil":
                rep = b["report"]
                note = (f"calibrate+rewrite {rep['quantize_ms'] / 1000:.1f} s, gate {rep['gate_ms'] / 1000:.1f} s; "
                        f"{rep['quantized_nodes']} nodes int8, {len(rep['fp32_fallback'] or [])} kept FP32, "
                        f"INT8 MAC share {rep['int8_mac_share']:.2f}; gate {rep['gate']['metric']} "
                        f"{(rep['gate']['int8'] or 0):.3f} (min {rep['gate']['threshold']})")
            else:
                note = f"{b['qdq']} QuantizeLinear"
            rows.append(
                f"| {r['model']} | {r['task']} | {label} ({best}) | {b['score']:.3f} | {others} | {b['seconds']:.1f} s "
                f"| {r['p50_ms'][side]:.2f} ms ({r['p50_ms']['fp32']:.2f}) | {mib(b['bytes'])} ({mib(r['fp32_bytes'])}) | {note} |"
            )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--dsmild", required=True)
    parser.add_argument("--work", type=Path, help="keep the quantized models here (default: a temp dir)")
    parser.add_argument("--only", nargs="*", default=list(TASKS))
    parser.add_argument("--methods", nargs="*", default=METHODS)
    parser.add_argument("--runs", type=int, default=0, help="latency runs per model (default: by model)")
    parser.add_argument("--repeats", type=int, default=3, help="quantization runs of each side's best method, for its median wall time")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    print(f"onnxruntime {ort.__version__}; latency: median of {LATENCY_ROUNDS} rounds' medians, one sample, "
          f"models interleaved", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = []
        for name in args.only:
            results.append(bench(name, args, work))
            if args.json:
                args.json.write_text(json.dumps(results, indent=1, default=str))
        print(table(results))
        refusals = [(r["model"], s, m, x["error"]) for r in results for s in ("dsmil", "ort") for m, x in r[s].items()
                    if not x["ok"]]
        if refusals:
            print("\nRefusals and failures:\n")
            for model, side, method, error in refusals:
                print(f"- {model}, {side} {method}:\n\n```\n{error}\n```\n")


if __name__ == "__main__":
    main()
