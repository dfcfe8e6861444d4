"""The local hub holding a room (issue 14, item 7): 30 clients x 4 images at 1 s injected latency.

    python benchmarks/room.py            # this figure alone
    python benchmarks/run.py --only room # the same, in the main table

The hub runs as an instructor runs it, `python -m oxen_magic.localhub` with its default settings,
in its own process. Thirty client threads (in this process) each ask for four images in a row, as
thirty students running a cell would: each a different prompt, models and formats mixed, every
image's URL downloaded with the key like the client does. Every image's time is POST + download.

Figures, each against a baseline measured in the same run:

* p95 of the room's image times vs one image asked alone (target: ratio <= 1.5; the injected
  latency is the floor of both);
* the hub process's peak RSS (VmHWM) over two rounds of the room (target: under 250 MB), and the
  RSS after the second round vs after the first (memory does not keep growing).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
CLIENTS = 30
IMAGES = 4
#: What a workshop's cells ask for: the models of the notebooks, in their default formats.
MODELS = ("flux-2-dev", "z-image-turbo", "black-forest-labs-flux-2-klein-4b", "qwen-image")


def _status_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} for process {pid}")


class _HubProcess:
    """`python -m oxen_magic.localhub` on a free port, its address read from what it prints."""

    def __init__(self, latency: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oxen_magic.localhub", "--port", "0", "--latency", str(latency)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        found: dict[str, str] = {}
        for line in self.proc.stdout:
            name, _, value = line.strip().removeprefix("export ").partition("=")
            if name in ("OXEN_HOST", "OXEN_API_KEY"):
                found[name] = value
            if len(found) == 2:
                break
        if len(found) != 2:
            raise RuntimeError(
                "the local hub did not start: " + (self.proc.stderr.read() if self.proc.stderr else "")
            )
        self.url, self.key = found["OXEN_HOST"], found["OXEN_API_KEY"]

    def rss_mb(self) -> float:
        return _status_kb(self.proc.pid, "VmRSS") / 1024

    def cpu_s(self) -> float:
        """User + system CPU seconds the hub process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_mb(self) -> float:
        return _status_kb(self.proc.pid, "VmHWM") / 1024

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _image(session: requests.Session, hub: _HubProcess, body: dict[str, Any]) -> float:
    """One image as the client gets it: POST, then download its URL. Returns seconds."""
    auth = {"Authorization": f"Bearer {hub.key}"}
    started = time.perf_counter()
    answer = session.post(hub.url + "/api/ai/images/generate", json=body, headers=auth, timeout=120)
    answer.raise_for_status()
    got = session.get(answer.json()["images"][0]["url"], headers=auth, timeout=120)
    got.raise_for_status()
    return time.perf_counter() - started


def _room(hub: _HubProcess, round_no: int) -> list[float]:
    times: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)
    errors: list[BaseException] = []

    def student(n: int) -> None:
        with requests.Session() as session:
            start.wait()
            for k in range(IMAGES):
                body = {
                    "model": MODELS[(n + k) % len(MODELS)],
                    "prompt": f"student {n}, round {round_no}: a lighthouse at dusk, watercolour",
                    "seed": k + 1,
                }
                try:
                    took = _image(session, hub, body)
                except Exception as problem:  # counted, and reported below
                    errors.append(problem)
                    continue
                with lock:
                    times.append(took)

    threads = [threading.Thread(target=student, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} of {CLIENTS * IMAGES} images failed, first: {errors[0]!r}")
    return times


def room_rows(latency: float = 1.0) -> list[dict[str, Any]]:
    """The room's figures as rows for `benchmarks/run.py`'s table (its `Row` fields)."""
    hub = _HubProcess(latency)
    try:
        with requests.Session() as session:
            _image(session, hub, {"model": MODELS[0], "prompt": "warm-up", "seed": 0})
            alone = statistics.median(
                _image(session, hub, {"model": MODELS[i % len(MODELS)], "prompt": f"alone {i}", "seed": i})
                for i in range(3)
            )
        began, cpu_before, own_before = time.perf_counter(), hub.cpu_s(), time.process_time()
        first = _room(hub, 1)
        after_first = hub.rss_mb()
        second = _room(hub, 2)
        took = time.perf_counter() - began
        hub_cpu, own_cpu = hub.cpu_s() - cpu_before, time.process_time() - own_before
        after_second, peak = hub.rss_mb(), hub.peak_mb()
    finally:
        hub.close()
    times = sorted(first + second)
    p95 = times[int(0.95 * (len(times) - 1))]
    ratio = p95 / alone
    return [
        {
            "figure": f"room. p95 image time, {CLIENTS} clients x {IMAGES} images on one local hub",
            "value": p95,
            "baseline": alone,
            "unit": "s",
            "target": "ratio <= 1.5",
            "ok": ratio <= 1.5,
            "note": (
                f"baseline: one image alone (injected latency {latency:g} s); median "
                f"{statistics.median(times):.3f} s, max {times[-1]:.3f} s over two rounds "
                f"({len(times)} images in {took:.1f} s); CPU per image: hub "
                f"{1000 * hub_cpu / len(times):.0f} ms, clients {1000 * own_cpu / len(times):.0f} ms; "
                f"load average {os.getloadavg()[0]:.1f}"
            ),
            "extra": {"times": times, "alone": alone, "hub_cpu_s": hub_cpu, "clients_cpu_s": own_cpu},
        },
        {
            "figure": "room. local hub peak RSS (two rounds of the room)",
            "value": peak,
            "baseline": after_first,
            "unit": "MB",
            "target": "value < 250 MB",
            "ok": peak < 250,
            "note": (
                f"baseline: RSS after the first round; after the second {after_second:.0f} MB "
                "(python -m oxen_magic.localhub, default settings, 1024 px images)"
            ),
            "extra": {"after_first_mb": after_first, "after_second_mb": after_second},
        },
    ]


def main() -> int:
    rows = room_rows()
    for row in rows:
        ratio = f", ratio {row['value'] / row['baseline']:.2f}" if row["baseline"] else ""
        unit = row["unit"]
        print(
            f"{row['figure']}: {row['value']:.3f} {unit} (baseline {row['baseline']:.3f} {unit}{ratio}); "
            f"target {row['target']}: {'ok' if row['ok'] else 'NOT MET'}"
        )
        print(f"  {row['note']}")
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
