"""The local hub's command line: `python -m oxen_magic.localhub` serves it in the foreground."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import signal
import sys
import threading

from .hub import LocalHub


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m oxen_magic.localhub",
        description="Serve a local stand-in for the Oxen.ai inference API (for offline demos).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--key", default="local-demo-key", help="the bearer token to accept")
    parser.add_argument("--any-key", action="store_true", help="accept any non-empty token")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per image")
    parser.add_argument("--image-size", type=int, default=None, help="long side in pixels")
    parser.add_argument(
        "--url-ttl", "--result-ttl", type=float, default=300.0, help="result URL lifetime (s)"
    )
    parser.add_argument("--max-results", type=int, default=500, help="result files kept at most")
    parser.add_argument("--max-result-mb", type=float, default=128.0, help="MB of result files kept")
    parser.add_argument(
        "--max-concurrent", type=int, default=None, help="admit this many images at once, 429 above"
    )
    parser.add_argument(
        "--private-files", action="store_true", help="result files need the token (default: presigned, none)"
    )
    parser.add_argument("--public-files", action="store_true", help=argparse.SUPPRESS)  # the default now
    parser.add_argument("--anonymous-reads", action="store_true", help="answer model reads without a token")
    parser.add_argument(
        "--list-schemas", action="store_true", help="include request schemas in the model list"
    )
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of transient 503s")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def _bind_problem(host: str, port: int, problem: OSError) -> str:
    """One sentence for a port the hub cannot listen on (no traceback)."""
    if problem.errno == errno.EADDRINUSE:
        return (
            f"Port {port} on {host} is already in use (another local hub?): stop it, or pick "
            "another port with --port (0 picks a free one)."
        )
    reason = problem.strerror or str(problem)
    return f"Cannot listen on {host} port {port}: {reason}; pick another with --host or --port."


def _lean_malloc() -> None:
    """In the hub's own process, keep glibc from hoarding freed memory.

    Thirty request threads each get a malloc arena, and after a few 1 MB image buffers glibc
    raises its mmap threshold so later ones come from those arenas and are never returned: a hub
    serving a room sat at twice the memory it used. Two arenas and a fixed 256 KB threshold
    keep it near what it holds. Only for `python -m oxen_magic.localhub`, never in a kernel.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def main(argv: list[str] | None = None) -> None:
    """Run the hub in the foreground until Ctrl-C (or SIGTERM)."""
    args = _parser().parse_args(argv)
    _lean_malloc()
    hub = LocalHub(
        args.host,
        args.port,
        api_key=None if args.any_key else args.key,
        latency=args.latency,
        image_size=args.image_size,
        url_ttl=args.url_ttl,
        require_auth_for_files=args.private_files,
        fail_rate=args.fail_rate,
        verbose=args.verbose,
        max_results=args.max_results,
        max_result_bytes=int(args.max_result_mb * 1024 * 1024),
        max_concurrent=args.max_concurrent,
        anonymous_reads=args.anonymous_reads,
        list_schemas=args.list_schemas,
    )
    done = threading.Event()
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        hub.start()
    except OSError as problem:
        print(_bind_problem(args.host, args.port, problem), file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    shown_key = "any non-empty token" if hub.api_key is None else hub.api_key
    print(f"Local Oxen hub on {hub.url} (key: {shown_key})", flush=True)
    print("  In a shell, then start Jupyter from it:", flush=True)
    print(f"  export OXEN_HOST={hub.url}", flush=True)
    print(f"  export OXEN_API_KEY={hub.api_key or 'anything'}", flush=True)
    print("  Press Ctrl-C to stop.", flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()
        print("Local Oxen hub stopped.", flush=True)
