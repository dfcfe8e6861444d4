"""The room relay under a class (issue 23): seats x 8 images through `python -m oxen_magic.relay`.

    python benchmarks/relay_load.py               # 30 seats, then 100 seats
    python benchmarks/relay_load.py --seats 30    # one room size

The upstream is the local hub in its own process (`hubproc.py`) at 1 s injected latency; the relay
runs as an instructor runs it, in its own process, on a fresh db. Each seat is a thread asking for
eight images in a row (POST, then download the URL with its seat token, as the client does): four
are the room's shared seeded cells (the same four bodies for every seat, as a workshop's cells
are), four are the seat's own. Figures:

* p95 of the image times vs the upstream latency (target: <= 1.5x);
* every image delivered (a 200 and bytes);
* upstream generate calls vs distinct requests (target: equal: the room pays once per image);
* the relay process's peak RSS (VmHWM).

Also, from the same run: the same load sent straight to the hub (the baseline: what the machine
and the client threads cost with no relay) and the relay's CPU seconds. Figures, with how the
100-seat gap was found and closed: benchmarks/RESULTS.md, "Room relay". In short (2026-12-06,
shared 2-core machine, --upstream-window 128): 30 seats p95 1.11 s (direct 1.10 s); 100 seats
p95 1.33-1.52 s over six runs (direct 1.12-1.24 s); every image delivered, upstream calls = distinct requests.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
LATENCY = 1.0
IMAGES = 8
SHARED = 4
MODEL = "black-forest-labs-flux-2-klein-4b"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ask(proc: subprocess.Popen[str], line: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def _body(seat: int, k: int) -> dict[str, object]:
    if k % 2 == 0:  # the room's shared cells: the same body for every seat
        return {"model": MODEL, "prompt": "a lighthouse at dusk, watercolour", "seed": k // 2 + 1}
    return {"model": MODEL, "prompt": f"seat {seat}'s own idea", "seed": k}


def _load(base: str, auths: list[dict[str, str]]) -> tuple[list[float], list[str]]:
    """Every seat (a thread) asks for its eight images in a row: POST, then download the URL."""
    times: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(len(auths))

    def seat(n: int) -> None:
        with requests.Session() as session:
            start.wait()
            for k in range(IMAGES):
                began = time.perf_counter()
                try:
                    answer = session.post(
                        base + "/api/ai/images/generate", json=_body(n, k), headers=auths[n]
                    )
                    answer.raise_for_status()
                    got = session.get(answer.json()["images"][0]["url"], headers=auths[n])
                    got.raise_for_status()
                    assert got.content
                except Exception as problem:
                    with lock:
                        failures.append(repr(problem))
                    continue
                with lock:
                    times.append(time.perf_counter() - began)

    threads = [threading.Thread(target=seat, args=(n,)) for n in range(len(auths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, failures


def _p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[-1] if len(times) > 1 else float("nan")


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_PROFILED = (
    "import cProfile, signal, sys\n"
    "from oxen_magic.relay.cli import main\n"
    "def stop(*_):\n    raise KeyboardInterrupt\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "cProfile.run('main(sys.argv[2:])', sys.argv[1])\n"
)


def room(seats: int, window: int, profile: str | None = None) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    hub = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "hubproc.py"), "512"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert hub.stdout is not None
    url, key = hub.stdout.readline().split()
    folder = Path(tempfile.mkdtemp(prefix="relay-load-"))
    port = _free_port()
    relay_url = f"http://127.0.0.1:{port}"
    args = ["--upstream", url, "--port", str(port), "--seats", str(seats), "--budget", "100"]
    args += ["--db", str(folder / "room.sqlite"), "--seats-file", str(folder / "seats.csv")]
    args += ["--upstream-window", str(window)]
    command = ["-c", _PROFILED, profile] if profile else ["-m", "oxen_magic.relay"]
    relay = subprocess.Popen(
        [sys.executable, *command, *args],
        env={**env, "OXEN_HOST": url, "OXEN_API_KEY": key},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                requests.get(relay_url + "/api/ai/models", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        tokens = [row["token"] for row in csv.DictReader((folder / "seats.csv").read_text().splitlines())]
        direct = [{"Authorization": f"Bearer {key}"}] * seats
        _load(url, direct)  # warm-up at no latency: the hub's cache then holds every image
        _ask(hub, f"latency {LATENCY}")
        baseline, _ = _load(url, direct)  # the same load straight to the hub, no relay
        calls_before = int(_ask(hub, "calls"))
        cpu_before, began = _cpu_seconds(relay.pid), time.perf_counter()
        times, failures = _load(relay_url, [{"Authorization": f"Bearer {t}"} for t in tokens])
        wall = time.perf_counter() - began
        relay_cpu = _cpu_seconds(relay.pid) - cpu_before
        peak_kb = next(
            int(line.split()[1])
            for line in Path(f"/proc/{relay.pid}/status").read_text().splitlines()
            if line.startswith("VmHWM:")
        )
        calls = int(_ask(hub, "calls")) - calls_before
    finally:
        relay.terminate()
        relay.wait(30)
        _ask(hub, "quit")
        hub.wait(10)
    distinct = SHARED + seats * (IMAGES - SHARED)
    p95 = _p95(times)
    return {
        "seats": seats,
        "images": len(times),
        "failed": len(failures),
        "p95_s": p95,
        "p95_over_latency": p95 / LATENCY,
        "direct_p95_s": _p95(baseline),
        "p95_over_direct": p95 / _p95(baseline),
        "upstream_calls": calls,
        "distinct_requests": distinct,
        "relay_cpu_s": relay_cpu,
        "relay_cpu_share": relay_cpu / wall,
        "wall_s": wall,
        "relay_peak_rss_mb": peak_kb / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seats", type=int, action="append", help="room sizes (default 30 and 100)")
    parser.add_argument("--window", type=int, default=128, help="the relay's --upstream-window")
    parser.add_argument("--profile", help="run the relay under cProfile and write its stats here")
    args = parser.parse_args()
    for seats in args.seats or [30, 100]:
        figures = room(seats, args.window, args.profile)
        print(" ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
