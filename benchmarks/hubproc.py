"""The local hub in its own process for the benchmarks, so its CPU and memory never count.

Prints `URL KEY` on the first line of stdout, then answers one command per stdin line:

* `latency SECONDS` sets the injected latency of every generate call;
* `calls` prints how many generate calls the hub has served so far;
* `slots N` admits at most N generate requests at once (429 above; `slots none`: no limit);
* `refused` prints how many generate calls were answered 429 so far;
* `quit` (or end of input) stops the hub.

Its image cache holds every picture the benchmarks ask for, so after one warm-up pass the hub
only sleeps out the latency and sends bytes: a real server's rendering time is in the latency.
"""

from __future__ import annotations

import sys

from oxen_magic.localhub import LocalHub


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    hub = LocalHub("127.0.0.1", 0, api_key="bench-key", image_size=size, latency=0.0, cache_size=1024)
    hub.start()
    print(hub.url, hub.api_key, flush=True)
    try:
        for line in sys.stdin:
            word, _, arg = line.strip().partition(" ")
            if word == "latency":
                hub.latency = float(arg)
                print("ok", flush=True)
            elif word == "calls":
                print(len(hub.generate_calls()), flush=True)
            elif word == "slots":
                hub.max_concurrent = None if arg == "none" else int(arg)
                print("ok", flush=True)
            elif word == "refused":
                print(sum(1 for c in hub.generate_calls() if c.status == 429), flush=True)
            elif word == "quit":
                break
            else:
                print("?", flush=True)
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
