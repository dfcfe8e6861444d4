"""`Results.to_oxen`: a sweep committed to an Oxen repository as one transaction, as far as Oxen allows.

Oxen has no multi-step transaction, so this module makes one around it:

* **One writer at a time.** The repository folder is locked (`flock` on the folder itself, so no
  lock file is left in the repository) for the whole export; a second writer (thread or process)
  waits for the first, up to `LOCK_WAIT` seconds, then is refused in one sentence. Oxen itself
  keeps a repository's database locked for the whole life of the first process that opened it,
  so while that process lives another one is refused in one sentence (`busy`) before anything is
  committed, where it used to die of a Rust panic after its rows were written.
* **Images before rows.** The PNGs are written (each whole) and staged first; only then is the
  table rewritten (whole, old rows plus new) and the commit made.
* **A journal.** Before anything is written, `.oxen/oxen_magic-journal.json` records the sweep;
  once the images are staged it also records the rows and the table as it was. A process killed
  before its commit leaves the journal, and the next export to that repository first finishes
  the interrupted one (images staged, rows complete: it commits them once) or undoes it (images
  half written: removed). So the table never holds rows for untracked files, nor a row twice.
* **One sentence for any failure.** Anything the Oxen library raises, its Rust panics included
  (`pyo3_runtime.PanicException` is a BaseException), becomes an `OxenError`; a failed commit is
  rolled back at once (the table restored, the images unstaged and removed).

Not covered: a writer that does not go through oxen_magic (the `oxen` CLI in another shell) takes
no lock; Oxen's own error is then reported in one sentence.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oxen_magic.core.atomic import write_bytes_atomic
from oxen_magic.core.errors import OxenError, UsageProblem, redact
from oxen_magic.exports.oxen_repo import (
    AUTHOR_SOURCES,
    IMAGES,
    TABLE,
    as_author,
    find_author,
    no_remote,
    public_params,
    quiet,
    remotes,
    require_oxen,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no lock (one writer per repository, please)
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from oxen_magic.results.results import Item, Results

JOURNAL = "oxen_magic-journal.json"
#: How long a second writer waits for the first before it is refused (seconds).
LOCK_WAIT = 300.0


@dataclass
class OxenExport:
    """What `Results.to_oxen` did: the commit, the files and rows it added, and notes."""

    path: Path
    commit: str
    files: list[str]
    rows: int
    author: str
    pushed: str | None = None
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        return "\n".join(self.notes)


# -- Oxen's errors, panics included, in one sentence ------------------------------------------
@contextlib.contextmanager
def oxen_call(repo_path: Path, doing: str, after: str = "") -> Iterator[None]:
    """Run Oxen library calls; anything they raise (Rust panics are BaseExceptions) becomes one
    `OxenError` sentence. Ctrl-C and exit still go through."""
    try:
        with quiet(1, 2):
            yield
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except (OxenError, UsageProblem):
        raise
    except BaseException as exc:
        text = " ".join(redact(str(exc)).split())
        if "LOCK" in text and ("Resource temporarily unavailable" in text or "DbOpenFailed" in text):
            raise OxenError(busy(repo_path)) from None
        raise OxenError(
            f"Oxen could not {doing} in {repo_path} ({text[:300] or type(exc).__name__}){after}."
        ) from None


def busy(repo_path: Path) -> str:
    """Oxen keeps a repository's database locked for the life of the first process that opens it."""
    return (
        f"Another process (a notebook kernel or script that used it) has the Oxen repository {repo_path} "
        "open, and Oxen lets one process at a time use a repository; restart or close that one, or "
        "write to another folder (nothing of this sweep was committed)."
    )


# -- one writer at a time ---------------------------------------------------------------------
@contextlib.contextmanager
def locked(repo_path: Path, wait: float | None = None) -> Iterator[None]:
    """Hold the repository folder's lock (waiting up to `wait`, default `LOCK_WAIT`, seconds)."""
    if fcntl is None:
        yield
        return
    fd = os.open(repo_path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        deadline = time.monotonic() + (LOCK_WAIT if wait is None else wait)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OxenError(
                        f"Another process is writing to the Oxen repository {repo_path}; try again "
                        "once it has finished (nothing was written)."
                    ) from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # releases the lock


# -- the journal ------------------------------------------------------------------------------
def _journal_path(repo_path: Path) -> Path:
    return repo_path / ".oxen" / JOURNAL


def _write_journal(repo_path: Path, state: dict[str, Any]) -> None:
    write_bytes_atomic(_journal_path(repo_path), json.dumps(state, ensure_ascii=False).encode())


def _read_journal(repo_path: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(_journal_path(repo_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _head(repo: Any) -> str | None:
    log = repo.log()
    return str(log[0].id) if log else None


def _table_bytes(repo_path: Path) -> bytes:
    try:
        return (repo_path / TABLE).read_bytes()
    except FileNotFoundError:
        return b""


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _undo(repo: Any, repo_path: Path, state: dict[str, Any]) -> None:
    """Put the repository back as it was before the journal's export: table, staging, images."""
    folder = str(state.get("folder") or "")
    if "table_size" in state:
        table = _table_bytes(repo_path)
        size = int(state["table_size"])
        if _sha(table[:size]) == state.get("table_sha256"):
            if state.get("table_existed", True):
                write_bytes_atomic(repo_path / TABLE, table[:size])
            else:
                (repo_path / TABLE).unlink(missing_ok=True)
        with contextlib.suppress(Exception):
            repo.restore(TABLE, staged=True)
    if folder.startswith(IMAGES + "/") and ".." not in folder.split("/"):
        with contextlib.suppress(Exception):
            repo.restore(folder, staged=True)
        shutil.rmtree(repo_path / folder, ignore_errors=True)
    _journal_path(repo_path).unlink(missing_ok=True)


def _committed(repo: Any, state: dict[str, Any]) -> bool:
    """Whether the journal's commit was made (the process died after it, before the cleanup)."""
    if _head(repo) == state.get("head"):
        return False
    status = repo.status()
    pending = set(status.added_files()) | set(status.modified_files()) | set(status.unstaged_modified_files())
    return TABLE not in pending and not any(f in pending for f in state.get("files", []))


def recover(repo: Any, repo_path: Path) -> list[str]:
    """Finish or undo an export that was interrupted before its commit; notes saying which."""
    state = _read_journal(repo_path)
    if state is None:
        return []
    if state.get("phase") != "rows" or not isinstance(state.get("rows"), list):
        _undo(repo, repo_path, state)
        return [f"An earlier export to {repo_path} was stopped while writing its images; they were removed."]
    if _committed(repo, state):
        _journal_path(repo_path).unlink(missing_ok=True)
        return []
    table = _table_bytes(repo_path)
    size = int(state.get("table_size", -1))
    intact = size >= 0 and _sha(table[:size]) == state.get("table_sha256")
    if not intact or not (repo_path / str(state.get("folder"))).is_dir():
        _undo(repo, repo_path, state)
        return [f"An earlier export to {repo_path} was stopped, then changed by hand; it was undone."]
    new = _with_rows(table[:size], state["rows"])
    write_bytes_atomic(repo_path / TABLE, new)
    name, email, source = find_author(repo_path)
    with as_author(name, email, source):
        repo.add(str(repo_path / state["folder"]))
        repo.add(str(repo_path / TABLE))
        commit = repo.commit(str(state.get("message") or "oxen_magic") + " (finished after an interruption)")
    _journal_path(repo_path).unlink(missing_ok=True)
    commit_id = str(getattr(commit, "id", commit))
    return [
        f"Finished an earlier export to this repository that was stopped before its commit "
        f"({len(state['rows'])} image(s), commit {commit_id[:10]})."
    ]


def _with_rows(table: bytes, rows: list[dict[str, Any]]) -> bytes:
    if table and not table.endswith(b"\n"):
        table += b"\n"
    return table + "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")


# -- rows -------------------------------------------------------------------------------------
def _row(item: Item, results: Results, file: str, sweep: str, now: float) -> dict[str, Any]:
    params = public_params(item.params)
    created = item.created if item.created is not None else int(now)
    inputs = params.get("input_image")
    if isinstance(inputs, list):
        inputs = " ".join(str(v) for v in inputs)
    image = item.size or (None, None)
    return {
        "file": file,
        "sweep": sweep,
        "model": item.model,
        "prompt": item.prompt,
        "seed": item.seed,
        "aspect_ratio": params.get("aspect_ratio"),
        "num_inference_steps": params.get("num_inference_steps"),
        "parameters": json.dumps(params, sort_keys=True),
        "input_image": inputs,
        "width": image[0],
        "height": image[1],
        "created": datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="seconds"),
        "elapsed": round(item.elapsed, 3) if item.elapsed is not None else None,
        "cached": item.cached,
        "price": results.prices.get(item.model or ""),
        "host": results.host,
    }


def _default_message(results: Results, count: int) -> str:
    models = ", ".join(dict.fromkeys(i.model or "" for i in results.items if i.ok))
    prompt = next((i.prompt for i in results.items if i.ok), "") or ""
    short = prompt if len(prompt) <= 60 else prompt[:59] + "…"
    return f"oxen_magic: {count} image(s) from {models}: {short!r}"


# -- the export -------------------------------------------------------------------------------
def to_oxen(results: Results, path: str | Path, message: str | None = None, push: bool = False) -> OxenExport:
    """Write the sweep's images and rows into the Oxen repository at `path` and commit them."""
    oxen = require_oxen()
    repo_path = Path(path).expanduser()
    if not any(item.ok for item in results.items):
        raise UsageProblem("There are no finished images to save to Oxen; run the sweep first.")
    if repo_path.exists() and not repo_path.is_dir():
        raise UsageProblem(f"{repo_path} is a file, not a folder; give to_oxen a folder for the repository.")
    if push and not remotes(repo_path):
        raise UsageProblem(no_remote(repo_path))
    repo_path.mkdir(parents=True, exist_ok=True)
    with locked(repo_path):
        fresh = not (repo_path / ".oxen").is_dir()
        with oxen_call(repo_path, "open the repository"):
            repo = oxen.init(str(repo_path)) if fresh else oxen.Repo(str(repo_path))
        with oxen_call(repo_path, "finish an earlier, interrupted export"):
            notes = recover(repo, repo_path)
        export = _commit(repo, repo_path, results, message)
        export.notes[:0] = notes
        if fresh:
            export.notes[len(notes)] = export.notes[len(notes)].replace("Added to", "Created", 1)
        if push:
            remote = next((n for n, _ in remotes(repo_path) if n == "origin"), remotes(repo_path)[0][0])
            try:
                with quiet(1, 2):
                    repo.push(remote, repo.current_branch)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # a panic too
                raise OxenError(
                    f"The sweep is committed in {repo_path}, but pushing it to {remote} failed "
                    f"({' '.join(redact(str(exc)).split())[:300]}); run `oxen push {remote}` there once "
                    "that is fixed."
                ) from None
            export.pushed = remote
            export.notes.append(f"Pushed to {remote}.")
    return export


def _commit(repo: Any, repo_path: Path, results: Results, message: str | None) -> OxenExport:
    """Images, then rows, then the commit, with the journal kept in step (see the module doc)."""
    now = time.time()
    sweep = base = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%d-%H%M%S")
    n = 1
    while (repo_path / IMAGES / sweep).exists():
        n += 1
        sweep = f"{base}-{n}"
    folder = repo_path / IMAGES / sweep
    state: dict[str, Any] = {"phase": "images", "folder": f"{IMAGES}/{sweep}"}
    _write_journal(repo_path, state)
    try:
        written = results.save_items(folder)
        files = [f"{IMAGES}/{sweep}/{p.name}" for _, p in written]
        rows = [_row(item, results, f, sweep, now) for (item, _), f in zip(written, files, strict=True)]
        text = message or _default_message(results, len(rows))
        name, email, source = find_author(repo_path)
        with oxen_call(repo_path, "stage the images", "; nothing was committed"):
            repo.add(str(folder))
            head = _head(repo)
        table = _table_bytes(repo_path)
        state.update(
            phase="rows",
            files=files,
            rows=rows,
            message=text,
            head=head,
            table_size=len(table),
            table_sha256=_sha(table),
            table_existed=(repo_path / TABLE).exists(),
        )
        _write_journal(repo_path, state)
        write_bytes_atomic(repo_path / TABLE, _with_rows(table, rows))
        committing = oxen_call(repo_path, "commit the sweep", "; nothing was committed")
        with committing, as_author(name, email, source):
            repo.add(str(repo_path / TABLE))
            commit = repo.commit(text)
    except (KeyboardInterrupt, SystemExit):
        raise  # the journal stays: the next export finishes or undoes this one
    except BaseException:
        with contextlib.suppress(BaseException), quiet(1, 2):
            _undo(repo, repo_path, state)
        raise
    _journal_path(repo_path).unlink(missing_ok=True)
    commit_id = str(getattr(commit, "id", commit))
    export = OxenExport(repo_path, commit_id, files, len(rows), f"{name} <{email}>")
    export.notes.append(
        f"Added to the Oxen repository {repo_path}: {len(rows)} image(s) and their rows in {TABLE}, "
        f"commit {commit_id[:10]}."
    )
    export.notes.append(f"Committed as {name} <{email}> ({AUTHOR_SOURCES[source]}).")
    return export
