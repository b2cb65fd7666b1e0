"""What OpenVINO's compiled-model cache saves on a restart: N distinct
models deployed on OpenVINO (layer 7's devices 43-50, which fall back to the
CPU plugin on a host without a GPU), then dsmild restarted R times with its
cache as the deploys left it and R times with the cache directory emptied
first, alternating. Each row is the median over its restarts of the time
from exec to READY=1 (scripts/start-dsmild.py) and of the restore's own
elapsed time from the log; the per-model load (`load_ms` of each
"deployment restored" line, with `from_cache`) shows where it goes.

    .venv/bin/python bench/openvino_restart.py [--model mobilenetv2|resnet50]
        [--count 8] [--rounds 5] [--bin target/release]

The N models are one topology (bench/gen_models.py) with one weight nudged
per copy, so that each has its own bytes, sha256 and cache entry (the same
bytes twice would share one compiled model in the process). Not a test:
compare the two rows of one run.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]


def variants(model: Path, count: int, out: Path) -> list:
    """`count` copies of `model`, each with its first initializer nudged."""
    base = onnx.load(str(model))
    paths = []
    for i in range(count):
        m = onnx.ModelProto()
        m.CopyFrom(base)
        init = m.graph.initializer[0]
        values = numpy_helper.to_array(init).copy()
        values.flat[0] += np.float32(1e-3 * (i + 1))
        init.CopyFrom(numpy_helper.from_array(values, init.name))
        path = out / f"m{i}.onnx"
        onnx.save(m, str(path))
        paths.append(path)
    return paths


def stop(run: Path) -> None:
    """SIGTERM, then wait until the process is gone (it is not our child:
    start-dsmild.py started it)."""
    pid = int((run / "dsmild.pid").read_text())
    subprocess.run(["kill", "-TERM", str(pid)], check=True)
    while Path(f"/proc/{pid}").exists():
        time.sleep(0.01)


def start(exe: Path, run: Path) -> tuple:
    """Starts dsmild on `run`; returns (ms to READY, the restore's ms, the
    per-model (load_ms, from_cache) lines) and stops it again."""
    log = run / "dsmild.log"
    before = log.stat().st_size if log.exists() else 0
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts/start-dsmild.py"), str(exe), str(run), "--metrics", ""],
        check=True, capture_output=True, text=True,
    ).stdout
    ready = float(re.search(r"ready in (\d+) ms", out).group(1))
    stop(run)
    with open(log, "rb") as f:
        f.seek(before)
        text = f.read().decode(errors="replace")
    restore = re.search(r"restore finished.*elapsed_ms=(\d+)", text)
    loads = [(int(a), b == "true") for a, b in re.findall(r"deployment restored.*?load_ms=(\d+) from_cache=(\w+)", text)]
    return ready, float(restore.group(1)) if restore else float("nan"), loads


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="mobilenetv2", choices=["mobilenetv2", "resnet50"])
    p.add_argument("--count", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--bin", default=str(ROOT / "target/release"))
    a = p.parse_args()
    exe, ctl = Path(a.bin) / "dsmild", Path(a.bin) / "dsmilctl"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, str(ROOT / "bench/gen_models.py"), str(tmp), a.model],
                       check=True, capture_output=True)
        models = variants(tmp / a.model / "model.onnx", a.count, tmp)
        run = tmp / "run"
        subprocess.run([sys.executable, str(ROOT / "scripts/start-dsmild.py"), str(exe), str(run),
                        "--metrics", ""], check=True, capture_output=True)
        env = {**os.environ, "DSMIL_SOCKET": str(run / "dsmild.sock")}
        for i, m in enumerate(models):
            subprocess.run([str(ctl), "deploy", str(m), "--name", f"m{i}", "--device", str(43 + i % 8),
                            "--backend", "openvino", "--allow-fp32"], check=True, env=env, capture_output=True)
        stop(run)
        cache = run / "cache" / "openvino"
        saved = tmp / "saved-cache"
        shutil.copytree(cache, saved)
        rows = {"cached": [], "cold": []}
        for _ in range(a.rounds):
            for kind in ("cached", "cold"):
                shutil.rmtree(cache, ignore_errors=True)
                if kind == "cached":
                    shutil.copytree(saved, cache)
                rows[kind].append(start(exe, run))
        size = sum(f.stat().st_size for f in saved.iterdir() if f.is_file())
        print(f"{a.count} × {a.model} (FP32) on OpenVINO's CPU plugin, {a.rounds} restarts each; "
              f"cache {size / 2**20:.0f} MiB")
        print("| cache | READY after | restore | per-model load (median) | loaded from cache |")
        print("|---|---|---|---|---|")
        for kind, runs in rows.items():
            ready = statistics.median(r[0] for r in runs)
            restore = statistics.median(r[1] for r in runs)
            loads = [ms for r in runs for ms, _ in r[2]]
            hits = sum(c for r in runs for _, c in r[2])
            print(f"| {kind} | {ready:.0f} ms | {restore:.0f} ms | {statistics.median(loads):.0f} ms | "
                  f"{hits}/{len(loads)} |")
        c, w = (statistics.median(r[0] for r in rows[k]) for k in ("cold", "cached"))
        print(f"\ncold / cached READY: {c / w:.2f}×")


if __name__ == "__main__":
    main()
