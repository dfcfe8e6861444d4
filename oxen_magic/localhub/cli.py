"""The local hub's command line: `python -m oxen_magic.localhub` serves it in the foreground."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import ipaddress
import signal
import sys
import threading

from oxen_magic.localhub.fetch_inputs import MAX_INPUT_PIXELS
from oxen_magic.localhub.hub import LocalHub

DEMO_KEY = "local-demo-key"

_EPILOG = f"""\
The default key, {DEMO_KEY!r}, is a well-known demo key: it is printed in this help and in the
README, so it protects nothing. The hub listens on loopback (127.0.0.1) by default, where only
this machine can reach it. Binding beyond loopback (--bind 0.0.0.0 for a room) lets anyone on the
network reach it: give it a key of your own (--key) and a --max-concurrent. It answers only Host
names that are loopback, IP addresses, or given with --allow-host (a guard against DNS rebinding).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m oxen_magic.localhub",
        description="Serve a local stand-in for the Oxen.ai inference API (for offline demos).",
        epilog=_EPILOG,
        formatter_class=_Formatter,
    )
    add = parser.add_argument
    add("--bind", "--host", dest="host", default="127.0.0.1", help="address to listen on")
    add("--port", type=int, default=8765, help="port to listen on; 0 picks a free port")
    add("--key", default=DEMO_KEY, help="the bearer token to accept; the default is public")
    add("--any-key", action="store_true", help="accept any non-empty token")
    add("--allow-host", action="append", default=[], metavar="NAME", help="also answer Host NAME")
    add("--latency", type=float, default=0.0, help="seconds per image")
    add("--image-size", type=int, default=None, help="long side in pixels; None: 1024")
    add("--url-ttl", "--result-ttl", type=float, default=300.0, help="result URL lifetime (s)")
    add("--max-results", type=int, default=500, help="result files kept at most")
    add("--max-result-mb", type=float, default=128.0, help="MB of result files kept")
    add("--max-body-mb", type=float, default=64.0, help="larger request bodies are refused (413)")
    add("--max-input-pixels", type=int, default=MAX_INPUT_PIXELS, help="larger input images: 400")
    add("--max-concurrent", type=int, default=None, help="admit this many images at once, 429 above")
    add("--private-files", action="store_true", help="result files need the token (default: presigned)")
    add("--public-files", action="store_true", help=argparse.SUPPRESS)  # the default now
    add("--anonymous-reads", action="store_true", help="answer model reads without a token")
    add("--list-schemas", action="store_true", help="include request schemas in the model list")
    add("--fail-rate", type=float, default=0.0, help="share of transient 503s")
    add("--verbose", action="store_true", help="log every request to stderr")
    return parser


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help (flags that are off say nothing), the epilog as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.const is True or action.default == []:
            return action.help
        return super()._get_help_string(action)


def beyond_loopback(host: str) -> bool:
    """Whether listening on `host` lets other machines reach the hub ("" and 0.0.0.0 are every
    address; a name other than localhost may be one)."""
    if host.lower() == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return True


def exposure_warning(host: str, key: str | None) -> str | None:
    """The warning printed when the hub is about to listen beyond loopback, else None."""
    if not beyond_loopback(host):
        return None
    shown = host or "every address"
    if key is None:
        guard = "it accepts any token (--any-key)"
    elif key == DEMO_KEY:
        guard = f"its key is the public demo key {DEMO_KEY!r}; give one of your own with --key"
    else:
        guard = "keep its key to the people meant to use it"
    return (
        f"Warning: listening on {shown}, beyond loopback: anyone on this network can reach the hub, "
        f"and {guard}. Clients reach it by IP address, or by a name given with --allow-host."
    )


def _bind_problem(host: str, port: int, problem: OSError) -> str:
    """One sentence for a port the hub cannot listen on (no traceback)."""
    if problem.errno == errno.EADDRINUSE:
        return (
            f"Port {port} on {host} is already in use (another local hub?): stop it, or pick "
            "another port with --port (0 picks a free one)."
        )
    reason = problem.strerror or str(problem)
    return f"Cannot listen on {host} port {port}: {reason}; pick another with --bind or --port."


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
        allowed_hosts=args.allow_host,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        max_input_pixels=args.max_input_pixels,
    )
    warning = exposure_warning(args.host, hub.api_key)
    if warning:
        print(warning, file=sys.stderr, flush=True)
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
