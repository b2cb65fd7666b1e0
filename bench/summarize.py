"""Summarises infer_latency's JSON lines (stdin): medians over runs."""

import json
import statistics
import sys

rows = [json.loads(line) for line in sys.stdin if line.strip()]


def med(path: str, q: str) -> float:
    return statistics.median(r[path][q] for r in rows)


print(f"runs: {len(rows)} x {rows[0]['iterations']} calls, batch 1")
for q in ("p50", "p90", "p99"):
    print(f"{q}: in-process {med('in_process_us', q):.1f} us, over the socket {med('socket_us', q):.1f} us")
print(f"p50 ratio socket/in-process: {med('socket_us', 'p50') / med('in_process_us', 'p50'):.1f}x")
print("socket p50 of each run (us):", [r["socket_us"]["p50"] for r in rows])
