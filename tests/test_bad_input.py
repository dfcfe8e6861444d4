"""The workshop matrix: every bad input and every bad answer gives one clear sentence.

Each row runs a real `%%oxenimage` cell through the IPython shell (as a notebook does) against
the local hub, then checks:

* the message text (for input known to be wrong: a one-line `UsageError` and no traceback; for a
  server or network fault met while generating: the grid still renders and the failed cell
  carries the message, in `Results` and in the HTML);
* the number of generate calls the hub recorded: 0 where the input was already known to be wrong
  (and no request at all, not even a model read, for input wrong in itself: `offline` rows),
  exactly 1 where a retry could bill twice (400/401/404, a read timeout, an unusable answer),
  exactly `max_retries + 1` where the server certainly did not bill (429, 503 forever), exactly 1
  after a gateway's 502/504 (the image may have been billed);
* nothing lost: a variable the failing cell would have replaced is left alone.
"""

from __future__ import annotations

import contextlib
import html
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.utils.capture import CapturedIO, capture_output
from support import all_text, magic_of

from oxen_magic.localhub import LocalHub
from oxen_magic.network.client import OxenClient
from oxen_magic.results.results import Results

PROMPT = "a red cube on a white background"
#: What a failing cell must leave alone.
SENTINEL = object()


@dataclass
class Ctx:
    """What a row's setup may touch before its cell runs."""

    hub: LocalHub
    shell: Any
    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path

    def client(self) -> OxenClient:
        """The magic's cached client for the default host (created from the current env)."""
        return magic_of(self.shell).client(None, 8)


@dataclass(frozen=True)
class Case:
    id: str
    line: str
    body: str | None = PROMPT  # None: the one-line %oxenimage
    expect: tuple[str, ...] = ()  # substrings of the message (formatted with `port`, `host`)
    calls: int = 0  # generate calls the hub records
    per_image: bool = False  # the message is on the failed cell, not a UsageError
    setup: Callable[[Ctx], None] | None = field(default=None, compare=False)
    offline: bool = False  # refused before any request at all (not even a model read)
    hidden: tuple[str, ...] = ()  # must appear nowhere: not in the message, not in any output


def _closed_port() -> int:
    """A loopback port that was just free: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(name: str, value: str | Callable[[Ctx], str] | None) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        if value is None:
            ctx.monkeypatch.delenv(name, raising=False)
        else:
            ctx.monkeypatch.setenv(name, value(ctx) if callable(value) else value)

    return setup


def _fail(n: int, status: int, retry_after: float | None = None) -> Callable[[Ctx], None]:
    return lambda ctx: ctx.hub.fail_next(n, status, retry_after)


def _garbage(kind: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        ctx.hub.garbage = kind

    return setup


def _expire_urls(ctx: Ctx) -> None:
    ctx.hub.url_ttl = -1.0  # every result URL is already stale when the client fetches it


def _withdraw_model(ctx: Ctx) -> None:
    """The model was described a minute ago, then withdrawn: generate answers 404."""
    ctx.client().model("z-image-turbo")
    ctx.hub.models[:] = [m for m in ctx.hub.models if m.get("id") != "z-image-turbo"]


def _read_timeout(ctx: Ctx) -> None:
    ctx.hub.latency = 1.0
    ctx.client().transport.timeout = (5.0, 0.3)


def _no_scheme(ctx: Ctx) -> None:
    """`127.0.0.1:PORT` means https; the local hub speaks plain http."""
    ctx.monkeypatch.setenv("OXEN_HOST", ctx.hub.url.removeprefix("http://"))


def _var(name: str, value: Any) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        ctx.shell.user_ns[name] = value

    return setup


class _Unprintable:
    """A variable whose str() raises (a half-built object, a lazy proxy whose backend is gone)."""

    def __str__(self) -> str:
        raise RuntimeError("internal state of the object")


def _file(name: str) -> Callable[[Ctx], None]:
    def setup(ctx: Ctx) -> None:
        (ctx.tmp_path / name).write_text("a file where a folder is needed")

    return setup


def _cache_dir(value: Callable[[Ctx], str]) -> Callable[[Ctx], None]:
    """`%config OxenMagic.cache_dir = value` (what the notebook would type)."""

    def setup(ctx: Ctx) -> None:
        magic_of(ctx.shell).cache_dir = value(ctx)

    return setup


def _cache_file(ctx: Ctx) -> str:
    blocker = ctx.tmp_path / "cache-file"
    blocker.write_text("x")
    return str(blocker)


M = "--model z-image-turbo --seed 1"
OUT = M + " --out r"
CREDS = "https://alice:hunter2@hub.oxen.ai"

CASES: list[Case] = [
    # -- the prompt ----------------------------------------------------------------------------
    Case("empty-cell-body", M, "", ("the cell body is empty", "line magic %oxenimage")),  # IPython's own
    Case("empty-prompt", M, "\n", ("Prompt cannot be empty", "cell body")),
    Case("whitespace-prompt", M, "  \n\t\n   ", ("Prompt cannot be empty",)),
    Case("empty-prompt-one-liner", M, None, ("Prompt cannot be empty", "give it on the line"), offline=True),
    Case(
        "empty-prompt-one-liner-bare",
        "",
        None,
        ("Prompt cannot be empty", "%oxenimage --seed 3 a"),
        offline=True,
    ),
    Case(
        "prompt-too-long",
        M,
        "a red cube" * 440,
        ("The prompt is 4,400 characters long, more than the limit of 4,000",),
        offline=True,
    ),
    Case(
        "prompt-too-long-after-template",
        M,
        "a {story}",
        ("The variable 'story' used in the prompt is 6,000 characters",),
        setup=_var("story", "once upon a time" * 375),
        offline=True,
    ),
    Case(
        "template-str-raises",
        M,
        "a {thing} cube",
        ("The variable 'thing' used in the prompt cannot be turned into text", "RuntimeError"),
        setup=_var("thing", _Unprintable()),
        offline=True,
        hidden=("internal state of the object",),
    ),
    Case(
        "template-dunder-name",
        M,
        "a {__name__} cube",
        ("{__name__} in the prompt is one of Python's own names",),
        offline=True,
    ),
    Case(
        "template-dunder-builtins",
        M,
        "a {__builtins__} cube",
        ("{__builtins__} in the prompt is one of Python's own names",),
        offline=True,
        hidden=("<module 'builtins'",),
    ),
    Case(
        "template-attribute-access",
        M,
        "a {colour.__class__} cube",
        ("reaches into a variable", "put the value in a variable first"),
        setup=_var("colour", "red"),
        offline=True,
    ),
    Case(
        "template-index-access",
        M,
        "a {colours[0]} cube",
        ("reaches into a variable",),
        setup=_var("colours", ["red"]),
        offline=True,
    ),
    Case("empty-prompt-between-separators", M, "a cube\n---\n  \n", ("A prompt between --- lines is empty",)),
    Case(
        "template-missing-variable",
        M,
        "a {colour} cube",
        ("The prompt uses {colour} but no variable 'colour' is defined", "{{colour}}"),
    ),
    Case("template-unmatched-brace", M, "a {cube", ("unmatched '{'", "{{")),
    Case("template-not-a-name", M, "a {1 + 2} cube", ("'{1 + 2}' in the prompt is not a variable name",)),
    # -- models ------------------------------------------------------------------------------
    Case(
        "unknown-model-close-match",
        "--model flux-2-devv --seed 1",
        expect=("Model not found: flux-2-devv", "did you mean flux-2-dev"),
    ),
    Case(
        "unknown-model-case-and-typo",
        "--model Z-Image-Turbbo --seed 1",
        expect=("Model not found: Z-Image-Turbbo", "did you mean z-image-turbo"),
    ),
    Case(
        "unknown-model-nothing-close",
        "--model qqqqqqqq --seed 1",
        expect=("Model not found: qqqqqqqq", "%oxenimage --list-models"),
    ),
    Case(
        "empty-model-list-item", "--model z-image-turbo,,flux-2-dev", expect=("Empty item in the model list",)
    ),
    # -- seeds and steps -----------------------------------------------------------------------
    Case("seed-not-a-number", "--seed 1..x", expect=("'1..x' is not a seed number or range", "1..4")),
    Case(
        "seed-range-negative-end", "--seed 5..-2", expect=("The seed -2 is out of range", "0 to 4294967295")
    ),
    Case("seed-range-backwards", "--seed 9..2", expect=("runs backwards", "2..9")),
    Case("seed-range-open-end", "--seed 1..", expect=("The seed range '1..' needs both ends",)),
    Case("seed-range-open-start", "--seed ..3", expect=("The seed range '..3' needs both ends",)),
    Case("seed-list-double-comma", "--seed 1,,2", expect=("Empty item in the seed list '1,,2'",)),
    Case(
        "seed-range-zero-step", "--seed 1..10:0", expect=("The step in the seed range '1..10:0' must be 1",)
    ),
    Case(
        "seed-range-huge",
        "--seed 0..4294967295",
        expect=("holds 4294967296 values, more than 10000", "--max-images"),
    ),
    Case("seed-number-huge", "--seed " + "9" * 60, expect=("is out of range; use 0 to 4294967295",)),
    Case("seed-random-zero", "--seed random:0", expect=("'random:0' needs a count from 1",)),
    Case("steps-zero", "--model z-image-turbo --steps 0", expect=("The steps 0 is out of range; use 1 to",)),
    # -- numbers are written with 0-9 only (int() reads ３ and ٣ as 3) ---------------------------
    *(
        Case(f"digits-{name}", line, expect=(what, "uses a digit that is not 0-9"), offline=True)
        for name, line, what in (
            ("seed-fullwidth", "--seed ３", "The seed '３'"),
            ("seed-arabic-indic", "--seed ٣", "The seed '٣'"),
            ("seed-superscript", "--seed 1..³", "The seed '1..³'"),
            ("seed-random-count", "--seed random:４", "The seed count '４'"),
            ("steps-persian", "--model z-image-turbo --steps ۸", "The steps '۸'"),
            ("cols-fullwidth", "--cols ２", "The --cols '２'"),
            ("size-arabic-indic", "--size ١٢٨", "The --size '١٢٨'"),
            ("concurrency-superscript", "--concurrency ²", "The --concurrency '²'"),
            ("max-images-devanagari", "--max-images ९", "The --max-images '९'"),
        )
    ),
    Case(
        "digits-param-integer",
        "--model flux-2-dev --seed 1 --param output_quality=９０",
        expect=("output_quality=９０ must be written with the digits 0-9 for flux-2-dev.",),
    ),
    Case(
        "digits-param-number",
        "--model flux-2-dev --seed 1 --param guidance=３.５",
        expect=("guidance=３.５ must be written with the digits 0-9 for flux-2-dev.",),
    ),
    Case(
        "sweep-over-default-max-images",
        "--seed 1..65",
        expect=("This cell would generate 65 images, more than the limit of 64", "--max-images 65"),
    ),
    Case(
        "sweep-over-max-images-option",
        "--model z-image-turbo,flux-2-dev --seed 1..3 --max-images 5",
        expect=("would generate 6 images, more than the limit of 5",),
    ),
    # -- options ------------------------------------------------------------------------------
    Case("misspelt-option", "--sede 3", expect=("Unknown option --sede; did you mean --seed?",)),
    Case(
        "misspelt-option-model",
        "--modle flux-2-dev",
        expect=("Unknown option --modle; did you mean --model?",),
    ),
    Case("unknown-option", "--zzz 3", expect=("Unknown option --zzz; see %%oxenimage? for the options.",)),
    Case("unknown-short-option", "-x 3", expect=("Unrecognized arguments: -x;", "%%oxenimage?")),
    Case("option-missing-value", "--seed", expect=("--seed: expected one argument",)),
    Case("option-not-a-number", "--cols many", expect=("--cols takes a whole number like 4; got 'many'.",)),
    *(
        Case(f"given-twice-{slug}", line, expect=(f"{flag} is given twice; give it once",), offline=True)
        for slug, flag, line in (
            ("seed", "--seed", "--seed 1 --seed 2"),
            ("seed-short-and-equals", "--seed", "-s 1 --seed=2"),
            ("size", "--size", "--size 100 --size 200"),
            ("steps", "--steps", "--model z-image-turbo --steps 4 -n 8"),
            ("out", "--out", "--seed 1 --out a --out b"),
            ("save", "--save", "--seed 1 --save x --save y"),
            ("format", "--format", "--seed 1 --format url --format b64_json"),
        )
    ),
    Case(
        "given-twice-param",
        M + " --param guidance=1 -p guidance=2",
        ("--param guidance is given twice",),
        offline=True,
    ),
    Case("bad-format-choice", "--format png", expect=("--format: invalid choice: 'png'",)),
    Case("unbalanced-quote", '--model "flux-2-dev', expect=("Cannot read the options line", "quotes")),
    Case(
        "words-on-cell-line",
        "--seed 1 a red cube",
        expect=("Unexpected words on the %%oxenimage line", "cell body"),
    ),
    Case("concurrency-zero", "--concurrency 0", expect=("--concurrency must be 1 or more (got 0).",)),
    Case(
        "concurrency-too-many", "--concurrency 500", expect=("--concurrency 500 is too many; use 1 to 64.",)
    ),
    Case("max-images-zero", "--max-images 0", expect=("--max-images must be 1 or more (got 0).",)),
    Case("size-silly", "--size 5", expect=("--size 5 is not a sensible cell width",)),
    Case("out-not-identifier", "--out 2fast", expect=("--out '2fast' is not a Python variable name",)),
    Case("out-with-dash", "--out my-grid", expect=("--out 'my-grid' is not a Python variable name",)),
    Case("out-keyword-value", "--out None", expect=("--out 'None' is a Python keyword",), offline=True),
    *(
        Case(f"out-{slug}", f"{M} --out {name}", expect=(f"--out '{name}' {kind}", "like grid"), offline=True)
        for slug, name, kind in (
            ("builtin-print", "print", "would hide Python's built-in print"),
            ("builtin-fullwidth-print", "ｐｒｉｎｔ", "would hide Python's built-in print"),
            ("dunder-builtins", "__builtins__", "is a name Python keeps for itself"),
            ("ipython-In", "In", "is a name IPython uses"),
            ("ipython-Out", "Out", "is a name IPython uses"),
            ("ipython-get-ipython", "get_ipython", "is a name IPython uses"),
            ("ipython-exit", "exit", "is a name IPython uses"),
            ("ipython-underscore", "_", "is a name IPython uses"),
            ("ipython-input-history", "_i3", "is a name IPython uses"),
            ("ipython-output-history", "_oh", "is a name IPython uses"),
            ("keyword-lambda", "lambda", "is a Python keyword"),
        )
    ),
    # -- folders: refused before anything is sent, never after the images were billed -----------
    Case("save-empty", M + " --save ''", expect=("--save needs a folder name",), offline=True),
    Case("save-nul", M + " --save 'out\x00put'", expect=("contains a NUL character",), offline=True),
    Case("save-too-long", M + " --save " + "d" * 300, expect=("is too long a path",), offline=True),
    Case("to-oxen-nul", M + " --to-oxen 'repo\x00'", expect=("--to-oxen folder", "NUL"), offline=True),
    Case("to-html-nul", M + " --to-html 'g\x00.html'", expect=("--to-html file", "NUL"), offline=True),
    Case(
        "save-a-file",
        M + " --save {tmp}/a-file",
        expect=("The --save folder", "is a file, not a folder; choose another path."),
        setup=_file("a-file"),
        offline=True,
    ),
    Case(
        "save-inside-a-file",
        M + " --save {tmp}/a-file/pngs",
        expect=("is inside a file, not a folder",),
        setup=_file("a-file"),
        offline=True,
    ),
    Case(
        "save-not-writable",
        M + " --save /sys/oxen-magic-pngs",
        expect=("Cannot write to the --save folder '/sys/oxen-magic-pngs'", "choose another."),
        offline=True,
    ),
    Case(
        "cache-dir-a-file-env",
        M,
        setup=_env("OXEN_MAGIC_CACHE_DIR", _cache_file),
        expect=("The cache folder", "is a file, not a folder", "OXEN_MAGIC_CACHE_DIR"),
        offline=True,
    ),
    Case(
        "cache-dir-nul-config",
        M,
        setup=_cache_dir(lambda ctx: str(ctx.tmp_path / "ca\x00che")),
        expect=("The cache folder", "contains a NUL character", "%config OxenMagic.cache_dir"),
        offline=True,
    ),
    Case(
        "cache-dir-too-long-config",
        M,
        setup=_cache_dir(lambda ctx: str(ctx.tmp_path / ("c" * 256))),
        expect=("The cache folder", "is too long a path"),
        offline=True,
    ),
    # -- parameters against the model's request_schema -----------------------------------------
    Case(
        "aspect-ratio-not-in-enum",
        "--model flux-2-dev --seed 1 --aspect-ratio 7:5",
        expect=("aspect_ratio=7:5 is not allowed for flux-2-dev; choose one of 1:1, 16:9",),
    ),
    Case(
        "steps-over-maximum",
        "--model flux-2-dev --seed 1 --steps 99",
        expect=("num_inference_steps=99 is out of range for flux-2-dev; allowed 1 to 50.",),
    ),
    Case(
        "param-over-maximum",
        "--model flux-2-dev --seed 1 --param guidance=11",
        expect=("guidance=11.0 is out of range for flux-2-dev; allowed 0.0 to 10.0.",),
    ),
    Case(
        "param-wrong-type",
        "--model flux-2-dev --seed 1 --param guidance=strong",
        expect=("guidance=strong must be a number for flux-2-dev.",),
    ),
    Case(
        "param-integer-type",
        "--model flux-2-dev --seed 1 --param output_quality=9.5",
        expect=("output_quality=9.5 must be a whole number for flux-2-dev.",),
    ),
    Case(
        "param-boolean-type",
        "--model flux-2-dev --seed 1 --param disable_safety_checker=maybe",
        expect=("disable_safety_checker=maybe must be true or false for flux-2-dev.",),
    ),
    Case(
        "param-not-in-enum",
        "--model flux-2-dev --seed 1 --param output_format=gif",
        expect=("output_format=gif is not allowed for flux-2-dev; choose one of webp, jpg, png.",),
    ),
    Case(
        "param-not-in-schema",
        "--model z-image-turbo --seed 1 --param guidance=3",
        expect=("z-image-turbo has no parameter 'guidance'; it takes: ",),
    ),
    Case("param-without-equals", "--param guidance", expect=("--param 'guidance' needs the form key=value",)),
    Case("param-bad-name", "--param 2x=3", expect=("--param name '2x' is not a parameter name",)),
    Case("param-for-seed", "--param seed=3", expect=("Use --seed for seed (it can sweep), not --param.",)),
    Case("param-for-prompt", "--param prompt=x", expect=("--param prompt=... is set by its own option",)),
    # -- host and key ---------------------------------------------------------------------------
    Case(
        "host-bad-port",
        M,
        setup=_env("OXEN_HOST", "http://127.0.0.1:99999"),
        expect=("The Oxen host 'http://127.0.0.1:99999' has a bad port",),
    ),
    Case(
        "host-port-not-a-number",
        M,
        setup=_env("OXEN_HOST", "127.0.0.1:hub"),
        expect=("The Oxen host '127.0.0.1:hub' has a bad port",),
    ),
    Case(
        "host-wrong-scheme",
        M,
        setup=_env("OXEN_HOST", "ftp://hub.oxen.ai"),
        expect=("The Oxen host 'ftp://hub.oxen.ai' is not a web address", "http://127.0.0.1:8765"),
    ),
    Case(
        "host-no-scheme-plain-http-server",
        M,
        setup=_no_scheme,
        expect=("Cannot talk https to https://{host} (SSL failed)", "use http://{host}."),
    ),
    Case(
        "host-option-bad-port",
        M + " --host 127.0.0.1:0x50",
        expect=("The Oxen host '127.0.0.1:0x50' has a bad port",),
    ),
    *(
        Case(
            f"host-credentials-{where}",
            line,
            setup=setup,
            expect=("The Oxen host has a user name or password in it", "oxen_magic.login()"),
            offline=True,
            hidden=("hunter2", "alice"),
        )
        for where, line, setup in (
            ("option", f"{M} --host {CREDS}", None),
            ("option-list-models", f"--list-models --host {CREDS}", None),
            ("env", M, _env("OXEN_HOST", CREDS)),
            ("env-bad-port", M, _env("OXEN_HOST", "http://alice:hunter2@127.0.0.1:99999")),
            ("env-user-only", M, _env("OXEN_HOST", "http://alice@127.0.0.1:8765")),
        )
    ),
    Case(
        "no-key",
        M,
        setup=_env("OXEN_API_KEY", None),
        expect=("No Oxen API key found; run oxen_magic.login()", "OXEN_API_KEY", "oxen config --auth"),
    ),
    Case(
        "key-with-a-space",
        M,
        setup=_env("OXEN_API_KEY", "my key pasted badly"),
        expect=("The Oxen API key contains a space or a character a key cannot have",),
    ),
    Case(
        "key-with-non-ascii",
        M,
        setup=_env("OXEN_API_KEY", "oxen-key-…"),
        expect=("The Oxen API key contains a space or a character a key cannot have",),
    ),
    Case(  # refused on the model reads, so before any grid is drawn or image asked for (issue 14)
        "wrong-key-401",
        OUT,
        setup=_env("OXEN_API_KEY", "not-the-right-key"),
        expect=(
            "The API refused the key (HTTP 401: Unauthenticated); run oxen_magic.login() to enter it "
            "again, or check OXEN_API_KEY.",
        ),
    ),
    # -- the network ----------------------------------------------------------------------------
    Case(
        "connection-refused",
        M,
        setup=_env("OXEN_HOST", lambda ctx: f"http://127.0.0.1:{_closed_port()}"),
        expect=("Cannot connect to http://127.0.0.1:", "(connection refused); is the server running?"),
    ),
    Case(
        "dns-failure",
        M,
        setup=_env("OXEN_HOST", "http://oxen-magic-test.invalid:8765"),
        expect=("Cannot find the host http://oxen-magic-test.invalid:8765 (DNS failed)", "OXEN_HOST"),
    ),
    Case(
        "read-timeout",
        OUT,
        setup=_read_timeout,
        expect=("did not answer in time (0.3 s) after the request was sent", "may have been made and billed"),
        calls=1,
        per_image=True,
    ),
    # -- what the server said -----------------------------------------------------------------
    Case(
        "model-404-from-server",
        OUT,
        setup=_withdraw_model,
        expect=("Model not found: z-image-turbo",),
        calls=1,
        per_image=True,
    ),
    Case(
        "invalid-params-400-from-server",
        OUT,
        setup=_fail(1, 400),
        expect=("The API rejected the request: Invalid parameters.",),
        calls=1,
        per_image=True,
    ),
    Case(
        "rate-limited-429-forever",
        OUT,
        setup=_fail(50, 429),
        expect=("Rate limit exceeded (HTTP 429) after 5 tries; wait a minute and rerun.",),
        calls=5,
        per_image=True,
    ),
    Case(
        "rate-limited-429-forever-retry-after",
        OUT,
        setup=_fail(50, 429, retry_after=0.01),
        expect=("Rate limit exceeded (HTTP 429) after 5 tries",),
        calls=5,
        per_image=True,
    ),
    Case(
        "rate-limited-429-retry-after-too-long",
        OUT,
        setup=_fail(50, 429, retry_after=3600),
        expect=("Rate limit exceeded (HTTP 429) after 1 try;",),
        calls=1,
        per_image=True,
    ),
    *(
        Case(
            f"server-{status}-forever",
            OUT,
            setup=_fail(50, status),
            expect=(f"The API failed (HTTP {status}: ", "not processed", "after 5 tries; try again later."),
            calls=5,
            per_image=True,
        )
        for status in (503,)
    ),
    *(
        Case(
            f"gateway-{status}-not-resent",
            OUT,
            setup=_fail(50, status),
            expect=(
                f"gateway failed (HTTP {status}: ",
                "may have been made and billed",
                "a rerun asks again",
            ),
            calls=1,
            per_image=True,
        )
        for status in (502, 504)
    ),
    Case(
        "server-500-not-retried",
        OUT,
        setup=_fail(50, 500),
        expect=("The API failed (HTTP 500: ", "after 1 try;"),
        calls=1,
        per_image=True,
    ),
    Case(
        "html-answer",
        OUT,
        setup=_garbage("html"),
        expect=("The API answered with an HTML page (HTTP 200), not JSON.",),
        calls=1,
        per_image=True,
    ),
    Case(
        "non-json-answer",
        OUT,
        setup=_garbage("non_json"),
        expect=("The API answered with invalid JSON (HTTP 200).",),
        calls=1,
        per_image=True,
    ),
    Case(
        "json-without-images",
        OUT,
        setup=_garbage("no_images"),
        expect=("The API answered without an 'images' list; try again.",),
        calls=1,
        per_image=True,
    ),
    Case(
        "bad-base64",
        OUT + " --format b64_json",
        setup=_garbage("bad_base64"),
        expect=("The API returned an image whose base64 is invalid.",),
        calls=1,
        per_image=True,
    ),
    Case(
        "bytes-not-an-image",
        OUT,
        setup=_garbage("not_image"),
        expect=("The image the API returned is not an image",),
        calls=1,
        per_image=True,
    ),
    Case(
        "bytes-not-an-image-b64",
        OUT + " --format b64_json",
        setup=_garbage("not_image"),
        expect=("The image the API returned is not an image",),
        calls=1,
        per_image=True,
    ),
    Case(
        "truncated-image",
        OUT,
        setup=_garbage("truncated"),
        expect=("The image the API returned is truncated or corrupt",),
        calls=1,
        per_image=True,
    ),
    Case(
        "expired-url",
        OUT,
        setup=_expire_urls,
        expect=("The result URL had expired when it was fetched (HTTP 404); generate again.",),
        calls=1,
        per_image=True,
    ),
]


def _cell(line: str, body: str | None) -> str:
    return f"%oxenimage {line}" if body is None else f"%%oxenimage {line}\n{body}"


def _run(shell: Any, source: str) -> tuple[CapturedIO, Any]:
    with capture_output() as captured:
        result = shell.run_cell(source)
    return captured, result


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    case: Case, hub: LocalHub, shell: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ctx = Ctx(hub, shell, monkeypatch, tmp_path)
    if case.setup is not None:
        case.setup(ctx)
    try:  # fast retries; a host the client refuses is the row's own business
        client = ctx.client()
        client.transport.backoff, client.transport.max_wait = 0.001, 5.0
    except UsageError:
        pass
    shell.user_ns["r"] = SENTINEL

    captured, result = _run(shell, _cell(case.line.replace("{tmp}", str(tmp_path)), case.body))

    shown = captured.stdout + captured.stderr
    assert "Traceback" not in shown
    host = hub.url.removeprefix("http://")
    expect = [e.replace("{host}", host) for e in case.expect]
    if case.per_image:
        assert result.error_in_exec is None, result.error_in_exec
        r = shell.user_ns["r"]
        assert isinstance(r, Results)
        assert (r.total, r.failed, r.done) == (1, 1, 0)
        message = r.items[0].error
        assert message is not None
        pages = [o.data["text/html"] for o in captured.outputs if "text/html" in o.data]
        # the failed cell shows it in place (the grid is several outputs: a note under the
        # progress line may be the last one redrawn)
        assert pages and any(html.escape(message) in page for page in pages)
        # the hub records a request (and its status) as it answers, which a read timeout
        # leaves for later: wait for the answers, then count (the assert below says if short)
        with contextlib.suppress(TimeoutError):
            hub.wait_for_calls(case.calls, timeout=5.0 + hub.latency, answered=True)
    else:
        error = result.error_in_exec
        assert isinstance(error, UsageError), (error, shown)
        message = str(error)
        assert f"UsageError: {message}" in captured.stderr
        assert shell.user_ns["r"] is SENTINEL  # nothing the user had is replaced
    for part in expect:
        assert part in message, message
    assert message.strip() and "\n" not in message and len(message) < 300, message  # one sentence
    assert len(hub.generate_calls()) == case.calls, [c.status for c in hub.generate_calls()]
    if case.offline:
        assert hub.requests == [], [(r.method, r.path) for r in hub.requests]
    for secret in case.hidden:
        assert secret not in message and secret not in all_text(captured), secret


def test_matrix_covers_the_issue() -> None:
    """Every line of the issue's bad-input matrix has a row (a guard against silent deletions)."""
    ids = {c.id for c in CASES}
    wanted = {
        "empty-prompt",
        "whitespace-prompt",
        "unknown-model-close-match",
        "seed-not-a-number",
        "seed-range-negative-end",
        "seed-range-open-end",
        "seed-range-open-start",
        "seed-list-double-comma",
        "seed-range-zero-step",
        "seed-range-huge",
        "sweep-over-default-max-images",
        "misspelt-option",
        "unknown-option",
        "aspect-ratio-not-in-enum",
        "steps-over-maximum",
        "param-wrong-type",
        "param-without-equals",
        "concurrency-zero",
        "out-not-identifier",
        "template-missing-variable",
        "host-no-scheme-plain-http-server",
        "host-bad-port",
        "no-key",
        "wrong-key-401",
        "model-404-from-server",
        "rate-limited-429-forever",
        "server-503-forever",
        "connection-refused",
        "dns-failure",
        "read-timeout",
        "html-answer",
        "non-json-answer",
        "json-without-images",
        "bad-base64",
        "bytes-not-an-image",
        "truncated-image",
        "expired-url",
        # issue 12: what the user types
        "out-builtin-print",
        "out-dunder-builtins",
        "out-ipython-In",
        "out-ipython-get-ipython",
        "out-ipython-exit",
        "save-nul",
        "save-a-file",
        "save-too-long",
        "cache-dir-a-file-env",
        "cache-dir-nul-config",
        "template-str-raises",
        "template-dunder-name",
        "template-attribute-access",
        "prompt-too-long",
        "digits-seed-fullwidth",
        "digits-seed-arabic-indic",
        "digits-seed-superscript",
        "digits-param-integer",
        "given-twice-seed",
        "given-twice-size",
        "host-credentials-option",
        "host-credentials-env",
        "empty-prompt-one-liner",
    }
    assert wanted <= ids, wanted - ids
    assert len(CASES) >= 60
    assert len(ids) == len(CASES)


def test_dns_failure_is_fast_offline() -> None:
    """The reserved .invalid TLD never resolves: the lookup fails at once, with no network."""
    with pytest.raises(OSError):  # conftest refuses `.invalid` names without a lookup
        socket.getaddrinfo("oxen-magic-test.invalid", 443)


@pytest.mark.parametrize("line", [M, "--list-models"])
def test_ctrl_c_during_the_model_lookup_prints_one_line(
    line: str, shell: Any, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that accepts and never answers: Ctrl-C while the models are read is one line."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("OXEN_HOST", f"http://127.0.0.1:{silent.getsockname()[1]}")
        shell.user_ns["r"] = SENTINEL
        # A real SIGINT to the main thread, as Ctrl-C in a kernel sends: it breaks the blocked read
        # (interrupt_main() only sets a flag that a thread stuck in recv() never looks at). Python's
        # handler is installed since a background process may have SIGINT ignored.
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        main = threading.main_thread().ident
        assert main is not None
        asked: list[socket.socket] = []

        def interrupt_once_asked() -> None:  # Ctrl-C once the lookup has connected, not on a timer
            with contextlib.suppress(OSError):  # the socket closed: the cell never asked
                asked.append(silent.accept()[0])
                signal.pthread_kill(main, signal.SIGINT)

        threading.Thread(target=interrupt_once_asked, daemon=True).start()
        try:
            captured, result = _run(shell, _cell(line + " --out r", PROMPT if line == M else None))
        finally:
            signal.signal(signal.SIGINT, previous)
            for conn in asked:
                conn.close()
    shown = captured.stdout + captured.stderr
    assert "Traceback" not in shown and "KeyboardInterrupt" not in shown, shown
    error = result.error_in_exec
    assert isinstance(error, UsageError), (error, shown)
    assert str(error).startswith("Stopped while looking up the models; nothing was sent.")
    assert shown.strip().count("\n") == 0, shown  # one line
    assert shell.user_ns["r"] is SENTINEL
