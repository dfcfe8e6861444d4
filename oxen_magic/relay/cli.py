"""`python -m oxen_magic.relay`: one key for the class, a budget per seat, a room that pays once.

Start-up, in order: open the room's db (seats, spend and images of earlier runs), keep as spend
any request a killed relay left in flight, make seats up to `--seats` (none on a restart), write
`--seats-file` whole, find the upstream key where the instructor keeps it, then serve.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import math
import os
import secrets
import ssl
import sys
from typing import NoReturn

from oxen_magic.core.atomic import write_text_atomic
from oxen_magic.exports.pack import PackError
from oxen_magic.localhub.cli import beyond_loopback
from oxen_magic.network.keys import DEFAULT_HOST, NO_KEY_HELP, find_key, normalize_host
from oxen_magic.relay.fair import WINDOW
from oxen_magic.relay.ledger import Ledger, LedgerProblem, open_ledger
from oxen_magic.relay.packs import preload
from oxen_magic.relay.server import Relay

_EPILOG = """\
Start a room of 30 on this machine's network (a rehearsal: add --upstream local):
    python -m oxen_magic.relay --seats 30 --budget 2.00 --bind 0.0.0.0
It prints the dashboard's address (with its admin token: keep it to yourself). Give each student
one row of seats.csv: they set OXEN_HOST=http://<this machine>:<port> and OXEN_API_KEY=<their
token> (or call oxen_magic.connect(...) and login()); every front end then works unchanged.
The upstream key is read like the client reads it (OXEN_API_KEY for OXEN_HOST, else the Oxen
CLI's auth_config.toml) and never leaves the relay. Restart with the same --db: the same tokens
work, spend and stored images are kept.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m oxen_magic.relay",
        description="Serve the Oxen image API to a class: one upstream key, a budget per seat.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--upstream", default=DEFAULT_HOST, help=f"the API to relay to, or 'local' (default {DEFAULT_HOST})")
    add("--port", type=int, default=8900, help="port to listen on (default 8900; 0 picks a free one)")
    add("--bind", default="127.0.0.1", help="address to listen on (default loopback only)")
    add("--seats", type=int, default=30, help="seats to have in the db (default 30; none made on a restart)")
    add("--budget", type=float, default=2.0, help="USD budget of each new seat (default 2.00)")
    add(
        "--db",
        default="room.sqlite",
        help="the room's ledger: a SQLite file path or sqlite:///path (default room.sqlite); "
        "postgresql://... is reserved for several relays sharing one ledger (not built yet)",
    )
    add("--seats-file", default="seats.csv", help="CSV 'seat,token' written at start (default seats.csv)")
    add(
        "--upstream-window",
        type=int,
        default=WINDOW,
        help=f"most requests upstream at once (default {WINDOW})",
    )
    add(
        "--pack",
        action="append",
        default=[],
        metavar="FILE",
        help="preload an offline pack's images (repeatable)",
    )
    add("--tls-cert", help="serve HTTPS with this certificate (PEM), with --tls-key")
    add("--tls-key", help="the certificate's private key (PEM)")
    add("--access-log", action="store_true", help="log every request (never a token) to stderr")
    return parser


def seats_csv(tokens: list[tuple[int, str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["seat", "token"])
    writer.writerows(tokens)
    return out.getvalue()


def tls_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    """The HTTPS context from --tls-cert/--tls-key (None: plain HTTP); a problem is one sentence."""
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        _usage("Give both --tls-cert and --tls-key (PEM files), or neither for plain HTTP.")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        _usage(
            f"Cannot use --tls-cert {cert} with --tls-key {key} ({exc}); give a PEM certificate and its key."
        )
    return context


def exposure_warning(bind: str, tls: bool = False) -> str | None:
    """What is said when the relay listens beyond loopback on plain HTTP, else None."""
    if tls or not beyond_loopback(bind):
        return None
    return (
        f"Warning: listening on {bind or 'every address'}, beyond loopback: seat tokens travel in clear "
        "on plain HTTP, so anyone on this network can read them; use it only on a network you trust."
    )


def _usage(problem: str) -> NoReturn:
    print(problem, file=sys.stderr, flush=True)
    raise SystemExit(2)


def _upstream(choice: str) -> tuple[str, str | None, object | None]:
    """(upstream URL, its key, the embedded hub to stop at exit or None)."""
    if choice == "local":
        from oxen_magic.localhub import LocalHub

        hub = LocalHub("127.0.0.1", 0, api_key="relay-local-" + secrets.token_urlsafe(16)).start()
        return hub.url, hub.api_key, hub
    try:
        url = normalize_host(choice)
    except ValueError as exc:
        _usage(f"--upstream: {exc}")
    key = find_key(url)
    if key is None:
        _usage(f"No key for the upstream {url}. " + NO_KEY_HELP)
    return url, key, None


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    _check(args)
    context = tls_context(args.tls_cert, args.tls_key)
    upstream, key, hub = _upstream(args.upstream)
    db = _open_db(args.db)
    interrupted = db.recover()
    for pack in args.pack:
        try:
            count = preload(db, pack, upstream)
        except PackError as exc:
            _usage(str(exc))
        _say(f"Pack {pack}: {count} new image(s) in the room's store.")
    made = db.ensure_seats(args.seats, args.budget)
    _write_seats(args.seats_file, db)
    relay = Relay(
        db,
        upstream,
        key,
        host=args.bind,
        port=args.port,
        access_log=args.access_log,
        window=args.upstream_window,
        ssl_context=context,
    )
    warning = exposure_warning(args.bind, tls=context is not None)
    if warning:
        _say(warning)
    _say(f"Room db {args.db}: {len(db.tokens())} seats ({made} new); tokens in {args.seats_file}.")
    if interrupted:
        _say(f"{interrupted} request(s) were in flight when the relay stopped; kept as spend.")
    _say(f"Upstream: {'an embedded local hub' if hub else upstream}.")
    try:
        relay.serve_forever()
    except OSError as exc:
        _usage(f"Cannot listen on {args.bind} port {args.port} ({exc.strerror or exc}); pick another --port.")
    finally:
        db.close()
        if hub is not None:
            hub.stop()  # type: ignore[attr-defined]


def _check(args: argparse.Namespace) -> None:
    """Refuse a bad number in one sentence before anything is opened; turn on the access log."""
    if args.seats < 0:
        _usage("--seats must be 0 or more; give the number of students, e.g. --seats 30.")
    if not math.isfinite(args.budget) or args.budget < 0:
        _usage("--budget must be a number of US dollars, 0 or more, e.g. --budget 2.00.")
    if args.upstream_window < 1:
        _usage("--upstream-window must be 1 or more, e.g. --upstream-window 8.")
    if not 0 <= args.port <= 65535:
        _usage("--port must be between 0 and 65535.")
    if args.access_log:
        log = logging.getLogger("aiohttp.access")
        log.setLevel(logging.INFO)
        log.addHandler(logging.StreamHandler(sys.stderr))


def _open_db(target: str) -> Ledger:
    """The room's ledger `--db` names, or one sentence and exit 2."""
    try:
        return open_ledger(target)
    except LedgerProblem as exc:
        _usage(str(exc))
    except Exception as exc:  # sqlite3.Error or OSError: one sentence, no traceback
        _usage(f"Cannot open the room's db {target} ({exc}); give a writable path with --db.")


def _write_seats(path: str, db: Ledger) -> None:
    """`--seats-file`, whole and owner-only (the tokens are the seats' keys)."""
    mask = os.umask(0o077)  # owner-only from the first byte
    try:
        write_text_atomic(path, seats_csv(db.tokens()))
    except OSError as exc:
        _usage(f"Cannot write --seats-file {path} ({exc.strerror or exc}); give a writable path.")
    finally:
        os.umask(mask)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
