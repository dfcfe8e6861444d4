"""`--save`, `--to-oxen`, `--to-html`: checked before anything is billed, written after the run,
and reported truthfully.

`check_targets` runs in `pipeline.prepare`, so a target that cannot be written is refused in one
sentence while nothing has been sent. `export` runs once the images are in: each target that
fails gives one sentence (`Exported`), which the run puts in `results.export_failures` and the
notes, so the command line exits 1 instead of 0. While files are written a first Ctrl-C is only
noted (the images that arrived are saved, as promised), a second one stops, and either way the
notes say exactly what was saved.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from oxen_magic.core.errors import OxenError, UsageProblem
from oxen_magic.core.validate import html_file, oxen_folder, save_folder
from oxen_magic.exports.saving import SaveFailed, SaveInterrupted, save_contact_sheet, save_pngs
from oxen_magic.planning.options import Spec

if TYPE_CHECKING:
    from oxen_magic.results.results import Results

STILL_SAVING = "Saving the images that arrived before stopping; press Ctrl-C again to stop now."


def check_targets(spec: Spec) -> None:
    """Refuse, before anything is sent, an export target that cannot be written."""
    if spec.save_dir is not None:
        save_folder(spec.save_dir)
    if spec.to_html:
        html_file(spec.to_html)
    if spec.to_oxen:
        from oxen_magic.exports.oxen_repo import check_target

        oxen_folder(spec.to_oxen)
        check_target(spec.to_oxen, spec.push)


@contextlib.contextmanager
def finish_first(notice: str = STILL_SAVING) -> Iterator[list[bool]]:
    """While files are written, a first Ctrl-C is noted and said (the list gets True); a second
    raises KeyboardInterrupt. Only in the main thread with Python's own Ctrl-C handler (the
    command line, a plain script): elsewhere Ctrl-C behaves as it always does."""
    asked: list[bool] = []
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield asked
        return

    def later(signum: int, frame: object) -> None:
        if asked:
            raise KeyboardInterrupt
        asked.append(True)
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(notice + "\n")
            sys.stderr.flush()

    previous = signal.signal(signal.SIGINT, later)
    try:
        yield asked
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class Exported:
    """What `export` did, for the run to add to its results: `notes` in order (what was written,
    and each failure's sentence), `failures` (one sentence per target that failed: the command
    line exits 1) and whether Ctrl-C came while files were written (it exits 130)."""

    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    interrupted: bool = False

    def fail(self, sentence: str) -> None:
        self.failures.append(sentence)
        self.notes.append(sentence)


def export(results: Results, spec: Spec, *, sheet: bool = False) -> Exported:
    """Write what `spec` asks (`sheet`: also the contact sheet in the --save folder, as the
    command line does); reads `results`, and says what it did (problems become sentences)."""
    out = Exported()
    if not results.done or not (spec.save_dir or spec.to_oxen or spec.to_html):
        return out
    steps: list[tuple[str | None, Callable[[str], list[str]], Callable[[str, object], str]]] = [
        (spec.save_dir, lambda p: _save(results, p, sheet), _save_problem),
        (spec.to_oxen, lambda p: results.to_oxen(p, push=spec.push).notes, _oxen_problem),
        (spec.to_html, lambda p: [_html(results, p)], _html_problem),
    ]
    with finish_first() as asked:
        for target, write, problem in steps:
            if not target:
                continue
            try:
                out.notes.extend(write(target))
            except KeyboardInterrupt as exc:
                out.fail(problem(target, exc))
                out.interrupted = True
                break
            except (UsageProblem, OxenError, OSError) as exc:
                out.fail(problem(target, exc))
    if asked:
        out.interrupted = True
        if not out.failures:
            out.notes.append("Ctrl-C came while saving; everything that had arrived was saved first.")
    return out


def _save(results: Results, folder: str, sheet: bool) -> list[str]:
    saved = save_pngs(results, folder)
    notes = [saved.note()]
    if sheet:
        try:
            path = save_contact_sheet(results, folder)
        except OSError as exc:
            raise SaveFailed(saved, exc, Path(folder) / "contact-sheet.png") from None
        notes.append(f"Wrote the contact sheet {path}.")
    return notes


def _save_problem(folder: str, exc: object) -> str:
    if isinstance(exc, SaveInterrupted):
        s = exc.saved
        return (
            f"Stopped at Ctrl-C while saving: {len(s.files)} of {s.total} PNG file(s) are in {s.folder}, "
            "each whole; rerun the same command to save the rest (cached images are not sent again)."
        )
    if isinstance(exc, KeyboardInterrupt):
        return f"Stopped at Ctrl-C before the PNGs were saved to {folder}; rerun to save them."
    reason = _reason(exc)
    if isinstance(exc, SaveFailed) and exc.saved.files:
        s = exc.saved
        return (
            f"Saved {len(s.files)} of {s.total} PNG file(s) to {s.folder}, then could not write "
            f"{Path(str(exc.filename)).name} ({reason}); free some space or choose another folder."
        )
    return f"Could not save the PNGs to {folder} ({reason})."


def _oxen_problem(path: str, exc: object) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return (
            f"Stopped at Ctrl-C while writing to the Oxen repository {path}; the next --to-oxen there "
            "finishes or undoes that commit."
        )
    if isinstance(exc, OSError):
        return f"Could not write to the Oxen repository {path} ({_reason(exc)})."
    return str(exc)


def _html(results: Results, path: str) -> str:
    from oxen_magic.exports.gallery import write_html

    target = html_file(path)
    existed = target.exists()
    written = write_html(results, target)
    return f"Wrote the gallery to {written}" + (" (replacing the earlier file)." if existed else ".")


def _html_problem(path: str, exc: object) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return f"Stopped at Ctrl-C before the gallery {path} was written (any earlier file is unchanged)."
    if isinstance(exc, OSError):
        return f"Could not write the gallery to {path} ({_reason(exc)}); any earlier file is unchanged."
    return str(exc)


def _reason(exc: object) -> str:
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return str(exc)
