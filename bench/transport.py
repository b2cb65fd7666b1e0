"""Serving benchmark (issue 14): KServe v2 gRPC ModelInfer latency and
throughput of dsmild, Triton and MLServer serving the same ONNX files with
the same ONNX Runtime settings (1 intra-op thread, the same number of
instances), in one run, against in-process ONNX Runtime as the ceiling; and
dsmild over its TCP listener and its Unix socket. Not a test: figures vary by
machine and load; compare medians and ratios from one run.

    .venv/bin/python bench/transport.py [--runs 5] [--requests 200]
        [--concurrency 1,16] [--model-concurrency mlp=1,4,16,32,64 ...]
        [--models mlp,convnet] [--transports tcp,unix] [--compare-batching]
        [--instances 1] [--queue-delay-us 0] [--max-batch 64]
        [--triton-python /path/to/venv/bin/python]
        [--mlserver-python /path/to/venv/bin/python]
        [--bin [LABEL=]DIR ...] [--json OUT.json]          (see bench/transport.sh)
        [--perf-analyzer PATH | --loadgen PATH] [--seconds 3]

Models (bench/serving_models.py, written into a temp dir): `mlp` (64→64×3,
a 256-byte input, dynamic batch), `convnet` (four 3×3 convs on
1×3×224×224, 602,112 bytes in and out, batch fixed at 1) and `ocr_cls`
(PaddleOCR's trained text-orientation classifier from the PyPI wheel
rapidocr-onnxruntime==1.4.4, a 3×48×192 input, dynamic batch).

Servers. Each --bin (default target/release; repeat it to compare builds)
is a dsmild on a temp state dir with `intra_op_threads = 1`,
`workers_per_deployment = --instances`, `max_batch_size = --max-batch`,
`max_queue_delay_us = --queue-delay-us` and dynamic batching on (and, with
--compare-batching, a second one with it off), a TCP listener on 127.0.0.1
and anonymous clearance 9, the models deployed FP32 on devices 47, 48, 49
(layer 7, which falls back to the CPU and ONNX Runtime on a host without a
GPU). --triton-python starts bench/transport_triton.py (Triton via PyPI
nvidia-pytriton, ONNX Runtime behind its Python backend) and
--mlserver-python bench/transport_mlserver.py (MLServer with a custom ONNX
Runtime runtime); both serve each batchable model twice, without batching
and with their dynamic (Triton) or adaptive (MLServer) batcher at the same
max batch and queue delay. A model with a fixed batch of 1 (convnet) is
measured once per server, batching "–".

Load, one of:
- --perf-analyzer PATH: Triton's perf_analyzer (bench/fetch-perf-analyzer.sh
  makes it runnable on glibc < 2.38) in its concurrency mode over gRPC, sync
  calls, random FP32 inputs of the model's shape, batch 1, measurement
  windows of --seconds, stabilised as perf_analyzer does, until 3 windows
  agree within 20% (its default 10% failed on small-model rows of this
  2-core machine within 10 trials; here up to 20); TCP only (perf_analyzer
  cannot set the :authority a Unix socket needs with an HTTP/2 server such
  as dsmild's). MLServer does not
  implement ModelConfig, which perf_analyzer reads first, so with --loadgen
  as well its rows are the native generator's, marked "(loadgen)".
- --loadgen PATH: the native closed-loop generator (daemon/examples/
  loadgen.rs), which works as perf_analyzer's concurrency mode does, for
  --seconds per run; it also measures each server's empty-RPC floor.
- otherwise tritonclient's gRPC client from Python, one client per caller
  thread, max(--requests, 10 × c) calls per run split over the c callers,
  after 3 warmup calls per caller.
The runs of all servers are interleaved (run 1 of every server, then run 2,
...) so that load from elsewhere spreads over them. Each row is the median over the runs of each run's p50, p99 and
infer/s; "server ms" (dsmild only) is the median over the runs of the
per-request queue + compute time from ModelStatistics. Ratios: "÷ Triton"
divides infer/s by Triton's on the same model, batching and c (and p99 by
Triton's p99); the ORT ceiling is in-process ONNX Runtime, 1 intra-op thread:
"ORT p50" its median single-inference latency and "ORT 2×" its throughput
with 2 caller threads, one session each (the most 2 cores give at batch 1).
Every server's answer is first checked against in-process ONNX Runtime.
"""

import argparse
import functools
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
sys.path.insert(0, str(ROOT / "bench"))
from serving_models import MODELS, write_models  # noqa: E402

DEVICES = {"mlp": 47, "convnet": 48, "ocr_cls": 49}


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


def ort_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def request(model: str) -> np.ndarray:
    return np.random.default_rng(1).standard_normal(MODELS[model][2]).astype(np.float32)


def ort_ceiling(path: Path, model: str, runs: int, iterations: int) -> tuple:
    """In-process ONNX Runtime, 1 intra-op thread: (median single-inference
    latency in ms, infer/s with 2 caller threads, one session each)."""
    name, x = MODELS[model][0], request(model)
    sessions = [ort_session(path) for _ in range(2)]
    for s in sessions:
        for _ in range(10):
            s.run(None, {name: x})
    medians, rates = [], []
    for _ in range(runs):
        times = []
        for _ in range(iterations):
            start = time.perf_counter()
            sessions[0].run(None, {name: x})
            times.append(time.perf_counter() - start)
        medians.append(statistics.median(times) * 1000)

        def loop(s):
            for _ in range(iterations):
                s.run(None, {name: x})

        threads = [threading.Thread(target=loop, args=(s,)) for s in sessions]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rates.append(2 * iterations / (time.perf_counter() - start))
    return statistics.median(medians), statistics.median(rates)


def server_ms(url: str, model: str) -> dict:
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


def with_server_ms(url: str, served: str, run) -> dict:
    """`run()`'s row plus "server_ms": dsmild's queue + compute per request
    over the run (warmup calls included), from ModelStatistics before and
    after."""
    before = server_ms(url, served)
    row = run()
    after = server_ms(url, served)
    n = max(1, after["count"] - before["count"])
    row["server_ms"] = (after["compute"] - before["compute"] + after["queue"] - before["queue"]) / n / 1e6
    return row


@functools.cache
def max_batch(url: str, served: str) -> int:
    """The served model's max_batch_size from its ModelConfig (asked once)."""
    client = connect(url)
    config = client.get_model_config(served, as_json=True)["config"]
    client.close()
    return int(config.get("max_batch_size", 0) or 0)


def one_run(url: str, served: str, model: str, concurrency: int, requests: int) -> dict:
    """`requests` calls to `served` from `concurrency` threads, each with its
    own client."""
    name, shape = MODELS[model][0], MODELS[model][2]
    x = request(model)
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
                client.infer(served, [inp])
            barrier.wait()
            mine = []
            for _ in range(per_thread):
                start = time.perf_counter()
                client.infer(served, [inp])
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
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
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
    return row


def loadgen_run(loadgen: Path, url: str, served: str, model: str, concurrency: int, seconds: float) -> dict:
    """One run by the native closed-loop load generator (daemon/examples/
    loadgen.rs: perf_analyzer's concurrency mode, each caller on its own
    HTTP/2 connection) instead of tritonclient."""
    name, shape = MODELS[model][0], MODELS[model][2]
    where = ["--unix", url[len("unix://"):]] if url.startswith("unix://") else ["--url", f"http://{url}"]
    out = subprocess.run([loadgen, *where, "--model", served, "--input", f"{name}:{','.join(map(str, shape))}",
                          "--concurrency", str(concurrency), "--seconds", str(seconds), "--warmup", "5"],
                         capture_output=True, text=True, timeout=120 + seconds)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[0] if out.stderr.strip() else f"exit {out.returncode}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if r.get("errors"):
        raise RuntimeError(f"{r['errors']} errors: {r.get('first_error')}")
    row = {"p50": r["p50_ms"], "p99": r["p99_ms"], "rate": r["infer_per_s"]}
    return row


def perf_analyzer_run(pa: Path, url: str, served: str, model: str, concurrency: int, seconds: float) -> dict:
    """One perf_analyzer measurement (concurrency mode, sync gRPC calls, its
    own random inputs). A server that batches (max_batch_size > 0 in its
    ModelConfig) takes shapes without the batch dimension and -b 1."""
    if url.startswith("unix:"):
        raise RuntimeError("perf_analyzer measures TCP only here")
    name, shape = MODELS[model][0], MODELS[model][2]
    dims = shape[1:] if max_batch(url, served) > 0 else shape
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "pa.csv"
        out = subprocess.run([pa, "-i", "grpc", "-u", url, "-m", served, "-b", "1",
                              "--shape", f"{name}:{','.join(map(str, dims))}",
                              "--concurrency-range", str(concurrency),
                              "--measurement-interval", str(int(seconds * 1000)),
                              "--stability-percentage", "20", "--max-trials", "20", "-f", str(csv)],
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0 or not csv.exists():
            lines = [l for l in (out.stdout + out.stderr).splitlines() if l.strip()]
            raise RuntimeError(lines[-1] if lines else f"exit {out.returncode}")
        header, values = csv.read_text().splitlines()[:2]
    r = dict(zip(header.split(","), values.split(",")))
    row = {"p50": float(r["p50 latency"]) / 1000, "p99": float(r["p99 latency"]) / 1000,
           "rate": float(r["Inferences/Second"])}
    return row


def floor_p50(loadgen: Path, url: str, seconds: float, runs: int) -> float:
    """The server's empty-RPC floor: median p50 in ms of ServerLive calls
    at concurrency 1 through the same load generator and transport, an RPC
    with nothing to decode and nothing to run (`loadgen --rpc live`)."""
    where = ["--unix", url[len("unix://"):]] if url.startswith("unix://") else ["--url", f"http://{url}"]
    p50s = []
    for _ in range(runs):
        out = subprocess.run([loadgen, *where, "--rpc", "live", "--concurrency", "1", "--seconds", str(seconds),
                              "--warmup", "5"], capture_output=True, text=True, timeout=120 + seconds, check=True)
        p50s.append(json.loads(out.stdout.strip().splitlines()[-1])["p50_ms"])
    return statistics.median(p50s)


def check_answer(url: str, served: str, model: str, expected: np.ndarray) -> str:
    """'' if the server's first output matches in-process ONNX Runtime."""
    name, shape = MODELS[model][0], MODELS[model][2]
    client = connect(url)
    inp = grpcclient.InferInput(name, list(shape), "FP32")
    inp.set_data_from_numpy(request(model))
    try:
        result = client.infer(served, [inp])
    except Exception as e:  # noqa: BLE001 - reported
        return f"{served} at {url}: {type(e).__name__}: {str(e)[:200]}"
    finally:
        client.close()
    got = result.as_numpy(result.get_response().outputs[0].name)
    got = np.asarray(got, dtype=np.float32).reshape(-1)
    if got.shape != expected.shape or not np.allclose(got, expected, rtol=1e-3, atol=1e-4):
        diff = np.abs(got - expected).max() if got.shape == expected.shape else "shape"
        return f"{served} at {url}: answer differs from ONNX Runtime (max |diff| {diff})"
    return ""


def median_row(rows: list) -> dict:
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def start_dsmild(bin_dir: Path, run: Path, config: str) -> tuple:
    run.mkdir(parents=True, exist_ok=True)
    (run / "dsmil.toml").write_text(config)
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


def start_helper(label: str, python: str, script: str, models: Path, run: Path, extra: list) -> tuple:
    """bench/SCRIPT under `python` (it writes its gRPC port to a file once
    serving); returns (process, url)."""
    port_file = run / f"{label}.port"
    log = open(run / f"{label}.log", "wb")
    proc = subprocess.Popen([python, ROOT / "bench" / script, models, port_file, *extra],
                            stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 300
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_group(proc)
            sys.exit(f"{label} did not start; see {run}/{label}.log")
        time.sleep(0.5)
    return proc, f"127.0.0.1:{port_file.read_text().strip()}"


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM to a helper's process group (its server and that server's
    workers), SIGKILL to what is left after 60 s."""
    for sig, wait in ((15, 60), (9, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            proc.poll()
            time.sleep(0.2)


def fmt(v: float | None, digits: int = 2, suffix: str = "") -> str:
    if v is None:
        return "–"
    return f"{v:,.{digits}f}{suffix}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--requests", type=int, default=200,
                    help="calls per run (split over the callers; at least 10 per caller)")
    ap.add_argument("--concurrency", default="1,16")
    ap.add_argument("--model-concurrency", action="append", default=[], metavar="MODEL=LEVELS",
                    help="levels for one model instead of --concurrency (e.g. mlp=1,4,16,32,64)")
    ap.add_argument("--bin", action="append", metavar="[LABEL=]DIR",
                    help="a dir with dsmild and dsmilctl (repeat to compare builds in one run; "
                         "default: target/release)")
    ap.add_argument("--triton-python", help="a python with nvidia-pytriton and onnxruntime")
    ap.add_argument("--mlserver-python", help="a python with mlserver and onnxruntime")
    ap.add_argument("--models", default="mlp,convnet")
    ap.add_argument("--transports", default="tcp,unix", help="dsmild's: tcp, unix or both")
    ap.add_argument("--compare-batching", action="store_true",
                    help="also start each build with [serving] dynamic_batching = false")
    ap.add_argument("--instances", type=int, default=1,
                    help="model instances per model on every server (dsmild workers_per_deployment, "
                         "Triton instances, MLServer parallel_workers)")
    ap.add_argument("--queue-delay-us", type=int, default=0, help="every server's batching queue delay")
    ap.add_argument("--max-batch", type=int, default=64, help="every server's max batch")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--loadgen", type=Path,
                    help="drive the servers with this native load generator (target/release/examples/loadgen, "
                         "from daemon/examples/loadgen.rs) instead of tritonclient")
    ap.add_argument("--perf-analyzer", type=Path,
                    help="drive the servers with this perf_analyzer (bench/fetch-perf-analyzer.sh prints it)")
    ap.add_argument("--seconds", type=float, default=3.0,
                    help="with --loadgen: seconds per run; with --perf-analyzer: its measurement window")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    per_model = {k: [int(c) for c in v.split(",")] for k, _, v in (s.partition("=") for s in args.model_concurrency)}
    models = args.models.split(",")
    transports = args.transports.split(",")
    builds = []
    for spec in args.bin or [str(ROOT / "target" / "release")]:
        label, _, path = spec.rpartition("=")
        builds.append((label or "dsmild", Path(path), True))
        if args.compare_batching:
            builds.append((label or "dsmild", Path(path), False))
    tmp = Path(tempfile.mkdtemp(prefix="dsmil-transport-"))
    model_dir = tmp / "models"
    model_dir.mkdir()
    write_models(model_dir, sys.executable, models)
    config = (f"[serving]\nintra_op_threads = 1\nworkers_per_deployment = {args.instances}\n"
              f"max_batch_size = {args.max_batch}\nmax_queue_delay_us = {args.queue_delay_us}\n")
    helper_args = ["--instances", str(args.instances), "--max-batch", str(args.max_batch),
                   "--queue-delay-us", str(args.queue_delay_us)]

    # A target: (server, batching on/off, transport, url, dsmild stats?, suffix of the batched model name)
    runs, targets, helpers = [], [], []
    try:
        for i, (label, bin_dir, batching) in enumerate(builds):
            run = tmp / f"dsmild{i}"
            runs.append(run)
            sock, ctl = start_dsmild(bin_dir, run, config + f"dynamic_batching = {'true' if batching else 'false'}\n")
            for m in models:
                ctl("deploy", model_dir / f"{m}.onnx", "--allow-fp32", "--name", m, "--device", str(DEVICES[m]))
            urls = {"tcp": ctl("status")["tcp_address"], "unix": f"unix://{sock}"}
            for t in transports:
                targets.append((label, "on" if batching else "off", t, urls[t], True, ""))
        for label, python, script in (("triton", args.triton_python, "transport_triton.py"),
                                      ("mlserver", args.mlserver_python, "transport_mlserver.py")):
            if python:
                proc, url = start_helper(label, python, script, model_dir, tmp, helper_args)
                helpers.append(proc)
                targets.append((label, "off", "tcp", url, False, ""))
                targets.append((label, "on", "tcp", url, False, "_batched"))

        def client_of(server: str) -> str:
            """The load generator of a server's rows: MLServer has no
            ModelConfig, which perf_analyzer reads first, so with both
            generators given its rows are the native one's."""
            if args.perf_analyzer and not (server == "mlserver" and args.loadgen):
                return "perf_analyzer"
            return "loadgen" if args.loadgen else "tritonclient"

        ceilings, rows, problems = {}, [], []
        for m in models:
            batchable = MODELS[m][3]
            ceilings[m] = ort_ceiling(model_dir / f"{m}.onnx", m, args.runs, 200)
            expected = ort_session(model_dir / f"{m}.onnx").run(None, {MODELS[m][0]: request(m)})[0].reshape(-1)
            mine = []
            seen_dsmild = set()
            for server, batching, transport, url, stats, suffix in targets:
                if not batchable:
                    # One row per server: no server can batch a fixed batch of 1.
                    if suffix or (stats and (server, transport) in seen_dsmild):
                        continue
                    seen_dsmild.add((server, transport))
                    batching = "–"
                mine.append((server, batching, transport, url, stats, m + suffix))
            for t in mine:
                problem = check_answer(t[3], t[5], m, expected)
                if problem:
                    problems.append(problem)
                    print("WARNING:", problem, file=sys.stderr)
            for c in per_model.get(m, levels):
                results = {t: [] for t in mine}
                failed = {}
                for _ in range(args.runs):
                    for t in mine:
                        if t in failed:
                            continue
                        url, served = t[3], t[5]
                        run = {
                            "perf_analyzer": lambda: perf_analyzer_run(args.perf_analyzer, url, served, m, c,
                                                                       args.seconds),
                            "loadgen": lambda: loadgen_run(args.loadgen, url, served, m, c, args.seconds),
                            "tritonclient": lambda: one_run(url, served, m, c, max(args.requests, 10 * c)),
                        }[client_of(t[0])]
                        try:
                            results[t].append(with_server_ms(url, served, run) if t[4] else run())
                        except Exception as e:  # noqa: BLE001 - a row saying so
                            failed[t] = f"{type(e).__name__}: {str(e)[:200]}"
                for t in mine:
                    server, batching, transport = t[0], t[1], t[2]
                    if client_of(server) != client_of("dsmild"):
                        server += f" ({client_of(server)})"
                    row = {"server": server, "model": m, "batching": batching, "transport": transport, "c": c,
                           "ort_p50": ceilings[m][0], "ort_2x": ceilings[m][1]}
                    if t in failed:
                        row["error"] = failed[t]
                    else:
                        row.update(median_row(results[t]))
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
        floors = {}
        if args.loadgen:
            for server, batching, transport, url, stats, suffix in targets:
                if (server, transport) not in floors:
                    floors[(server, transport)] = floor_p50(args.loadgen, url, args.seconds, args.runs)
        if args.json:
            args.json.write_text(json.dumps({"rows": rows, "problems": problems,
                                             "floors": [{"server": s, "transport": t, "p50": v}
                                                        for (s, t), v in floors.items()]}, indent=1))
        print_table(rows)
        if floors:
            print()
            print("| server | transport | empty RPC (ServerLive) p50 ms, c=1 |")
            print("|---|---|---|")
            for (server, transport), p50 in floors.items():
                print(f"| {server} | {transport} | {p50:.3f} |")
        for p in problems:
            print(f"WARNING: {p}")
    finally:
        for run in runs:
            try:
                os.kill(int((run / "dsmild.pid").read_text()), 15)
            except (OSError, ValueError):
                pass
        for proc in helpers:
            stop_group(proc)
    print(f"(state and logs: {tmp})")


def print_table(rows: list) -> None:
    triton = {(r["model"], r["batching"], r["c"]): r for r in rows if r["server"] == "triton" and "error" not in r}
    print("| server | model | batching | transport | c | p50 ms | p99 ms | infer/s | server ms "
          "| infer/s ÷ Triton | p99 ÷ Triton | p50 ÷ ORT p50 | infer/s ÷ ORT 2× |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        head = f"| {r['server']} | {r['model']} | {r['batching']} | {r['transport']} | {r['c']} |"
        if "error" in r:
            print(head + f" error: {r['error']} |||||||||")
            continue
        t = triton.get((r["model"], r["batching"], r["c"]))
        print(head + f" {fmt(r['p50'])} | {fmt(r['p99'])} | {fmt(r['rate'], 0)} | {fmt(r.get('server_ms'))} | "
              f"{fmt(r['rate'] / t['rate'] if t else None, 2, '×')} | {fmt(r['p99'] / t['p99'] if t else None, 2, '×')} | "
              f"{fmt(r['p50'] / r['ort_p50'], 2, '×')} | {fmt(r['rate'] / r['ort_2x'], 2, '×')} |", flush=True)
    ceilings = {}
    for r in rows:
        ceilings[r["model"]] = (r["ort_p50"], r["ort_2x"])
    print()
    print("| model | ORT p50 ms (1 caller) | ORT infer/s (2 callers) |")
    print("|---|---|---|")
    for m, (p50, rate) in ceilings.items():
        print(f"| {m} | {p50:.3f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
