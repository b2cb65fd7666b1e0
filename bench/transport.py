"""Transport benchmark: ModelInfer latency of a small and a large request at
concurrency 1 and 16, over dsmild's TCP listener and its Unix socket, with
in-process ONNX Runtime (1 intra-op thread) as the floor, and optionally
Triton (PyPI nvidia-pytriton, the same ONNX files in ONNX Runtime) side by
side in the same run. Not a test: figures vary by machine and load; compare
medians and ratios from one run.

    .venv/bin/python bench/transport.py [--runs 5] [--requests 200]
        [--concurrency 1,16] [--bin [LABEL=]DIR ...]
        [--triton-python /path/to/venv/bin/python]   (see bench/transport.sh)

Models (written by bench/gen_mlp.py and bench/gen_convnet.py into a temp
dir): `mlp` (64→64×3, a 256-byte input) and `convnet` (four 3×3 convs on
1×3×224×224, 602,112 bytes in and out). Each --bin (default target/release;
repeat it to compare two builds in one run) is a dsmild started on a temp
state dir with `intra_op_threads = 1` and one worker per deployment, the
models deployed FP32 on devices 47 and 48 (layer 7, which falls back to the
CPU and ONNX Runtime on a host without a GPU). The load is tritonclient's
gRPC client, one client per caller thread, with `--requests` calls per run
after 3 warmup calls per caller. Each row is the median over the runs of
each run's p50, p99 and infer/s; "server ms" is the median over the runs of
the per-request queue + compute time from ModelStatistics, so client p50
minus server ms is what the transport and the client cost.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc as grpcclient

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"mlp": ("x", (1, 64)), "convnet": ("image", (1, 3, 224, 224))}
CONFIG = "[serving]\nintra_op_threads = 1\nworkers_per_deployment = 1\n"


def connect(url: str) -> grpcclient.InferenceServerClient:
    """A tritonclient with its usual message limits. On the Unix socket gRPC
    would send the socket's path as :authority, which HTTP/2 servers (h2,
    under tonic) refuse with RST_STREAM(PROTOCOL_ERROR): say localhost."""
    args = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1)]
    if url.startswith("unix:"):
        args.append(("grpc.default_authority", "localhost"))
    return grpcclient.InferenceServerClient(url, channel_args=args)


def percentile(values: list, q: float) -> float:
    return float(np.percentile(np.array(values), q))


def ort_floor(path: Path, name: str, shape: tuple, runs: int, iterations: int) -> float:
    """Median single-inference latency in ms, in process, 1 intra-op thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(10):
        session.run(None, {name: x})
    medians = []
    for _ in range(runs):
        times = []
        for _ in range(iterations):
            start = time.perf_counter()
            session.run(None, {name: x})
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times) * 1000)
    return statistics.median(medians)


def server_ms(url: str, model: str, before: dict | None = None) -> dict:
    """ModelStatistics of `model`: success count and total queue/compute ns."""
    client = connect(url)
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]["inference_stats"]
    client.close()

    def ns(key: str) -> int:
        return int(stats.get(key, {}).get("ns", 0))

    return {
        "count": int(stats.get("success", {}).get("count", 0)),
        "queue": ns("queue"),
        "compute": ns("compute_input") + ns("compute_infer") + ns("compute_output"),
    }


def one_run(url: str, model: str, concurrency: int, requests: int, stats: bool) -> dict:
    """`requests` calls from `concurrency` threads, each with its own client."""
    name, shape = MODELS[model]
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    latencies: list = []
    lock = threading.Lock()
    per_thread = max(1, requests // concurrency)
    barrier = threading.Barrier(concurrency + 1)
    errors: list = []

    def worker() -> None:
        try:
            client = connect(url)
            inp = grpcclient.InferInput(name, list(shape), "FP32")
            inp.set_data_from_numpy(x)
            for _ in range(3):  # warm the connection and the windows
                client.infer(model, [inp])
            barrier.wait()
            mine = []
            for _ in range(per_thread):
                start = time.perf_counter()
                client.infer(model, [inp])
                mine.append(time.perf_counter() - start)
            with lock:
                latencies.extend(mine)
            client.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    before = server_ms(url, model) if stats else None
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    row = {
        "p50": percentile(latencies, 50) * 1000,
        "p99": percentile(latencies, 99) * 1000,
        "rate": len(latencies) / wall,
    }
    if stats:
        after = server_ms(url, model)
        n = max(1, after["count"] - before["count"])
        row["server"] = (after["compute"] - before["compute"] + after["queue"] - before["queue"]) / n / 1e6
    return row


def median_row(rows: list) -> dict:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def start_dsmild(bin_dir: Path, run: Path, batching: bool = True) -> tuple:
    run.mkdir(parents=True, exist_ok=True)
    (run / "dsmil.toml").write_text(CONFIG + f"dynamic_batching = {'true' if batching else 'false'}\n")
    subprocess.run(
        [sys.executable, ROOT / "scripts" / "start-dsmild.py", bin_dir / "dsmild", run,
         "--config", run / "dsmil.toml", "--tcp", "127.0.0.1:0", "--http", "", "--metrics", "",
         "--anonymous-clearance", "9"],
        check=True, stdout=subprocess.DEVNULL,
    )
    sock = run / "dsmild.sock"

    def ctl(*args) -> dict:
        out = subprocess.run([bin_dir / "dsmilctl", "--socket", sock, "--json", *args], capture_output=True)
        if out.returncode != 0:
            sys.exit(f"dsmilctl {' '.join(map(str, args))}: {out.stderr.decode().strip()}")
        return json.loads(out.stdout) if out.stdout.strip() else {}

    return sock, ctl


def start_triton(python: str, models: Path, run: Path) -> tuple:
    """bench/transport_triton.py under `python`; returns (process, url)."""
    log = open(run / "triton.log", "wb")
    proc = subprocess.Popen([python, ROOT / "bench" / "transport_triton.py", models, run / "triton.port"],
                            stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 300
    while not (run / "triton.port").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sys.exit(f"Triton did not start; see {run}/triton.log")
        time.sleep(0.5)
    return proc, f"127.0.0.1:{(run / 'triton.port').read_text().strip()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=200, help="calls per run (split over the callers)")
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--bin", action="append", metavar="[LABEL=]DIR",
                    help="a dir with dsmild and dsmilctl (repeat to compare builds in one run; "
                         "default: target/release)")
    ap.add_argument("--triton-python", help="a python with nvidia-pytriton and onnxruntime")
    ap.add_argument("--models", default="mlp,convnet")
    ap.add_argument("--compare-batching", action="store_true",
                    help="also start each build with [serving] dynamic_batching = false")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    models = args.models.split(",")
    builds = []
    for spec in args.bin or [str(ROOT / "target" / "release")]:
        label, _, path = spec.rpartition("=")
        builds.append((label or "dsmild", Path(path), True))
        if args.compare_batching:
            builds.append(((label or "dsmild") + ", no batching", Path(path), False))
    tmp = Path(tempfile.mkdtemp(prefix="dsmil-transport-"))
    model_dir = tmp / "models"
    model_dir.mkdir()
    subprocess.run([sys.executable, ROOT / "bench" / "gen_mlp.py", model_dir / "mlp.onnx", "64", "3"], check=True)
    subprocess.run([sys.executable, ROOT / "bench" / "gen_convnet.py", model_dir / "convnet.onnx"], check=True)

    runs, targets, triton = [], [], None
    try:
        for i, (label, bin_dir, batching) in enumerate(builds):
            run = tmp / f"dsmild{i}"
            runs.append(run)
            sock, ctl = start_dsmild(bin_dir, run, batching)
            for device, m in enumerate(models, start=47):
                ctl("deploy", model_dir / f"{m}.onnx", "--allow-fp32", "--name", m, "--device", str(device))
            targets += [(label, "tcp", ctl("status")["tcp_address"]), (label, "unix", f"unix://{sock}")]
        if args.triton_python:
            triton = start_triton(args.triton_python, model_dir, tmp)
            targets.append(("triton", "tcp", triton[1]))
        print("| server | model | transport | c | p50 ms | p99 ms | infer/s | server ms | ORT ms | p50 / ORT |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for m in models:
            name, shape = MODELS[m]
            floor = ort_floor(model_dir / f"{m}.onnx", name, shape, args.runs, max(50, args.requests // 2))
            for c in levels:
                for server, transport, url in targets:
                    rows = [one_run(url, m, c, args.requests, stats=server != "triton") for _ in range(args.runs)]
                    r = median_row(rows)
                    served = f"{r['server']:.2f}" if "server" in r else "–"
                    print(f"| {server} | {m} | {transport} | {c} | {r['p50']:.2f} | {r['p99']:.2f} | "
                          f"{r['rate']:.0f} | {served} | {floor:.2f} | {r['p50'] / floor:.1f}× |", flush=True)
    finally:
        for run in runs:
            try:
                os.kill(int((run / "dsmild.pid").read_text()), 15)
            except (OSError, ValueError):
                pass
        if triton:
            triton[0].terminate()
            triton[0].wait(timeout=60)
    print(f"(state and logs: {tmp})")


if __name__ == "__main__":
    main()
