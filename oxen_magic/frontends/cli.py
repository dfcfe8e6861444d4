"""`oxen-image` and `python -m oxen_magic`: the magic's grammar from a shell.

    oxen-image "a red cube" --model flux-2-dev --seed 1..4 --save out/
    oxen-image --list-models
    oxen-image "a kite" -m z-image-turbo -s 1..8 --dry-run

A front end like the magic: the words are parsed by `options.build_spec` and run through the
process's `Session`. The prompt is the words that are not options (options may come before,
between or after them); a word `---` starts another prompt, and a lone `-` reads the prompts from
stdin (`---` lines between them, as in a cell body). Braces are literal (no notebook variables).
It shows a progress bar with an ETA on a terminal (plain lines otherwise), writes the
PNGs (their parameters in a text chunk) and a contact sheet, and exits 0 when every image arrived,
1 when some failed or an export (--save, --to-oxen, --to-html) failed, 2 on bad usage (one
sentence on stderr, no traceback; bytes that are not UTF-8 in the prompt or an option, too), 130
after Ctrl-C (what arrived is saved first: a first Ctrl-C while saving lets the saving finish, a
second stops it, and the output says which files were written).

Other jobs register a subcommand in `SUBCOMMANDS` (`python -m oxen_magic pack ...`): a first word
that names one is dispatched to its `main(argv) -> int` (quote a prompt that starts with one).
"""

from __future__ import annotations

import importlib
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from oxen_magic import __version__
from oxen_magic.core.errors import OxenError, UsageProblem
from oxen_magic.frontends.problems import STOPPED_BEFORE, explain
from oxen_magic.planning import options

if TYPE_CHECKING:
    from oxen_magic.results.results import Results

PROG = "oxen-image"
#: Where the PNGs go when no --save is given.
DEFAULT_SAVE = "oxen-images"
#: Subcommands: first word → "module:function" taking the remaining argv and returning an exit code.
SUBCOMMANDS: dict[str, str] = {
    "pack": "oxen_magic.exports.pack:main",
    "handout": "oxen_magic.exports.handout:main",
    "demo": "oxen_magic.frontends.demo:main",
}
#: Stands in for a `---` word while argparse reads the words (it would take it for an option).
_SEPARATOR = "\x1e"

USAGE = f"""\
usage: {PROG} PROMPT [options]      generate a grid, save the PNGs and a contact sheet
       {PROG} PROMPT --- PROMPT ...   several prompts (another axis)
       {PROG} - [options] < FILE      prompts from stdin, --- lines between them
       {PROG} --list-models [--host HOST]
       {PROG} pack export|import ...  offline packs of cached images (see {PROG} pack -h)
       {PROG} handout NOTEBOOK --out FILE   a student copy of a notebook
       {PROG} --help | --version

The options are those of the %%oxenimage magic (below). PNGs go to --save DIR
(default: ./{DEFAULT_SAVE}); --dry-run shows the plan and its cost and sends nothing.
--host local uses the embedded local hub (placeholder images, nothing billed, no key).
Exit status: 0 every image arrived and was saved, 1 some failed or could not be
saved, 2 bad usage, 130 interrupted (what arrived is saved).
"""


def help_text() -> str:
    return USAGE + "\n" + options.HELP.replace("%%oxenimage", PROG)


def _say(stream: TextIO, text: str) -> None:
    stream.write(text.rstrip("\n") + "\n")
    stream.flush()


def _subcommand(name: str, argv: Sequence[str]) -> int:
    module, _, function = SUBCOMMANDS[name].partition(":")
    handler = getattr(importlib.import_module(module), function or "main")
    return int(handler(list(argv)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        return _subcommand(args[0], args[1:])
    if not args or args[0] in ("-h", "--help", "help"):
        _say(sys.stdout if args else sys.stderr, help_text())
        return 0 if args else 2
    if args == ["--version"]:
        _say(sys.stdout, f"oxen_magic {__version__}")
        return 0
    previous = None
    if threading.current_thread() is threading.main_thread():
        # a background job may start with Ctrl-C ignored; this command must always be stoppable
        # (and a caller that runs it in its own process gets its own handler back afterwards)
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return _generate_and_explain(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _generate_and_explain(args: list[str]) -> int:
    """`_generate`, with every problem said in one sentence and its exit status."""
    try:
        return _generate(args)
    except BrokenPipeError:  # `oxen-image --list-models | head`: the reader left; not our error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (KeyboardInterrupt, OxenError, UsageProblem) as exc:
        # Ctrl-C while planning: the run and the saving handle their own Ctrl-C
        problem = explain(exc, stopped=STOPPED_BEFORE, program=PROG)
        assert problem is not None
        if isinstance(exc, KeyboardInterrupt):
            _say(sys.stderr, problem.sentence)
        else:
            _say(sys.stderr, f"{PROG}: {problem.sentence}")
        return problem.exit_code


def _generate(args: list[str]) -> int:
    import dataclasses

    from oxen_magic.frontends.progress import Progress
    from oxen_magic.session.session import current_session

    session = current_session()
    line, body = command_line(args, sys.stdin)
    spec = session.spec(line, body)
    if spec.list_models:
        from oxen_magic.frontends.python_api import models

        _say(sys.stdout, repr(models(host=spec.host, search=spec.search, developer=spec.developer)))
        return 0
    if spec.save_dir is None and not spec.dry_run:
        spec = dataclasses.replace(spec, save_dir=DEFAULT_SAVE)
    run = session.prepare(spec)
    if spec.dry_run:
        _say(sys.stdout, _plan_text(run.results))
        return 0
    # The run writes no files itself: the exports come after it, with the contact sheet, so a
    # Ctrl-C while saving is told apart from one while fetching (see exports.finish_first).
    results = run.results
    progress = Progress(results, stream=sys.stderr)
    try:
        try:
            run.execute(on_update=progress, exports=False)
        finally:
            progress.close()
        run.export(sheet=True)
    except KeyboardInterrupt:  # between the steps: say what is known, not "nothing was sent"
        _say(
            sys.stderr,
            f"Interrupted after {results.done} of {results.total} images had arrived, before they were "
            "all saved; rerun to save them (cached images are not sent again).",
        )
        return 130
    return _report(results)


def _report(results: Results) -> int:
    """Print what happened and choose the exit status (see the module docstring)."""
    for item in results.items:
        if item.status == "failed":
            _say(sys.stderr, f"failed: {item.model} seed {item.seed}: {item.error}")
    for note in results.notes:
        if note not in results.export_failures:
            _say(sys.stdout, note)
    _say(sys.stdout, results.summary())
    for failure in results.export_failures:
        _say(sys.stderr, f"{PROG}: {failure}")
    if results.interrupted:
        _say(
            sys.stderr,
            f"Interrupted: kept {results.done} of {results.total} images; rerun to fetch the rest.",
        )
    if results.interrupted or results.export_interrupted:
        return 130
    if results.export_failures:
        return 1
    return 0 if results.failed == 0 and results.done == results.total else 1


def command_line(words: Sequence[str], stdin: TextIO) -> tuple[str, str | None]:
    """argv → (the magic's options line, the cell body of prompts); the body is None (the one-line
    form, where no prompt is needed) for --list-models."""
    for word in words:
        _utf8(word)
    args = options.parse_words([_SEPARATOR if w == "---" else w for w in words], intermixed=True)
    if args.out:
        raise UsageProblem("--out names a notebook variable; from the shell, use --save DIR for the images.")
    if args.list_models:  # the words after it are a search (`--list-models flux`)
        return shlex.join(options.to_words(args) + list(args.prompt)), None
    if args.prompt == ["-"]:
        try:
            body = _utf8(stdin.read(), "The prompts read from stdin")
        except UnicodeDecodeError:
            raise UsageProblem(_NOT_UTF8.format(what="The prompts read from stdin", shown="")) from None
    elif "-" in args.prompt:
        raise UsageProblem("Give either - (prompts from stdin) or the prompt's words, not both.")
    else:
        parts = " ".join(args.prompt).split(_SEPARATOR)
        body = "\n---\n".join(" ".join(part.split()) for part in parts)
    if not body.strip():
        raise UsageProblem(
            f'Prompt cannot be empty: give it as the first words, like {PROG} "a red cube" --seed 1..4.'
        )
    body = body.replace("{", "{{").replace("}", "}}")  # no notebook variables here: braces are literal
    return shlex.join(options.to_words(args, skip={"prompt"})), body


_NOT_UTF8 = (
    "{what}{shown} holds bytes that are not UTF-8 text; retype it in a UTF-8 terminal "
    "(or convert the file with iconv)."
)


def _utf8(text: str, what: str | None = None) -> str:
    """Refuse text holding bytes that were not UTF-8 (Python keeps them as lone surrogates): they
    would be sent to the API as garbage, or fail there after the request was made."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:  # the bytes as typed, the bad ones as \xNN
            raw = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            raw = text.encode("utf-8", "backslashreplace").decode("utf-8")
        raw = " ".join(raw.split())
        shown = f" '{raw if len(raw) <= 60 else raw[:59] + '…'}'" if what is None else ""
        raise UsageProblem(_NOT_UTF8.format(what=what or "The word", shown=shown)) from None
    return text


def _plan_text(results: object) -> str:
    """The dry run: each planned request on a line, then the notes (count and cost)."""
    from oxen_magic.results.results import Results

    assert isinstance(results, Results)
    lines = []
    for item in results.items:
        if item.request is None or item.request.image:  # images 2.. of a count: the same POST
            continue
        params = ", ".join(f"{k}={v}" for k, v in item.params.items() if k not in ("model", "prompt"))
        lines.append(f"{item.model}: {item.prompt!r} {params}".rstrip())
    return "\n".join(lines + list(results.notes))


if __name__ == "__main__":
    raise SystemExit(main())
