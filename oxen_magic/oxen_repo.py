"""A sweep as a versioned Oxen dataset, and input images kept in an Oxen repository.

Everything here goes through the `oxenai` package (import name `oxen`), an optional extra: the
repository format, commits and pushes are Oxen's own, not a reimplementation. The package is
imported only when one of these functions runs, so `%load_ext oxen_magic` never needs it.

Layout of a repository written by `to_oxen`::

    images/<sweep>/<model>_seed-<n>.png   PNGs with their parameters in the `parameters` chunk
    images.jsonl                          one row per image, every sweep appended (oxen df reads it)

The API key is never written: Oxen's own auth config (`oxen config --auth`) is what a push uses.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .errors import OxenError, UsageProblem, redact

if TYPE_CHECKING:
    from .inputs import Group, InputImage
    from .results import Item, Results

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

INSTALL = 'Saving to Oxen needs the oxenai package; install it with: pip install "oxen_magic[oxen]"'
TABLE = "images.jsonl"
IMAGES = "images"
#: Where `upload_input` puts input images inside the upload repository.
UPLOAD_DIR = "oxen_magic/inputs"
DEFAULT_AUTHOR = ("oxen_magic", "oxen_magic@localhost")

#: Pointing OXEN_CONFIG_DIR at a stand-in user config is process-wide: one commit at a time.
_ENV_LOCK = threading.Lock()


def require_oxen() -> Any:
    """The `oxen` module, or a `UsageProblem` saying how to install it."""
    try:
        import oxen
    except ImportError:
        raise UsageProblem(INSTALL) from None
    return oxen


# -- parameters without data URIs -----------------------------------------------------------
def input_ref(value: str) -> str:
    """A URL stays as it is; a data: URI becomes `sha256:<hex>` of its bytes (never the URI)."""
    if not value.startswith("data:"):
        return value
    head, _, body = value.partition(",")
    if head.endswith(";base64"):
        import base64
        import binascii

        try:
            raw = base64.b64decode(body, validate=False)
        except (binascii.Error, ValueError):
            raw = body.encode()
    else:
        raw = body.encode()
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def public_params(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters sent, with each data: URI replaced by its content hash (kept small)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, str):
            value = input_ref(value)
        elif isinstance(value, (list, tuple)):
            value = [input_ref(v) if isinstance(v, str) else v for v in value]
        out[key] = value
    return out


# -- who the commit is by -------------------------------------------------------------------
def oxen_config_dir() -> Path:
    """Where Oxen keeps user_config.toml: $OXEN_CONFIG_DIR, else ~/.config/oxen."""
    env = os.environ.get("OXEN_CONFIG_DIR")
    return Path(env) if env else Path.home() / ".config" / "oxen"


def _git(key: str, cwd: Path | None) -> str:
    try:
        done = subprocess.run(
            ["git", "config", "--get", key],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=cwd,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def find_author(where: Path | None = None) -> tuple[str, str, str]:
    """(name, email, where from): the user's Oxen config, else git's (as seen from `where`),
    else a default."""
    path = oxen_config_dir() / "user_config.toml"
    try:
        config = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    name, email = str(config.get("name") or ""), str(config.get("email") or "")
    if name and email:
        return name, email, "oxen"
    name, email = _git("user.name", where), _git("user.email", where)
    if name and email:
        return name, email, "git"
    try:
        user = getpass.getuser()
    except Exception:  # no login name in a container: the fixed default
        user = ""
    return (user or DEFAULT_AUTHOR[0]), (f"{user}@localhost" if user else DEFAULT_AUTHOR[1]), "default"


_SOURCES = {
    "oxen": "from your Oxen config",
    "git": "from git's user.name/user.email, as Oxen has no user configured",
    "default": "a default, as neither Oxen nor git has a user configured",
}


@contextmanager
def _as_author(name: str, email: str, source: str) -> Iterator[None]:
    """Commit as `name <email>`: Oxen reads the author only from its config folder, so when the
    user has none we point OXEN_CONFIG_DIR at a temporary one for the commit (theirs is untouched)."""
    if source == "oxen":
        yield
        return
    with _ENV_LOCK, tempfile.TemporaryDirectory(prefix="oxen-magic-author-") as tmp:
        toml = f"name = {json.dumps(name)}\nemail = {json.dumps(email)}\n"
        Path(tmp, "user_config.toml").write_text(toml, encoding="utf-8")
        auth = oxen_config_dir() / "auth_config.toml"
        if auth.is_file():  # a link, not a copy: the key is never written anywhere new
            Path(tmp, "auth_config.toml").symlink_to(auth.resolve())
        old = os.environ.get("OXEN_CONFIG_DIR")
        os.environ["OXEN_CONFIG_DIR"] = tmp
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("OXEN_CONFIG_DIR", None)
            else:
                os.environ["OXEN_CONFIG_DIR"] = old


@contextmanager
def _quiet() -> Iterator[None]:
    """Oxen's Rust core prints progress lines straight to file descriptor 1 (which a Jupyter
    kernel forwards into the cell); our notes say the same in one place, so hide them."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


# -- to_oxen --------------------------------------------------------------------------------
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


def remotes(path: str | Path) -> list[tuple[str, str]]:
    """(name, url) of each remote recorded in the repository's .oxen/config.toml."""
    try:
        config = tomllib.loads(Path(path, ".oxen", "config.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    found = config.get("remotes") or []
    return [(str(r.get("name")), str(r.get("url"))) for r in found if isinstance(r, dict) and r.get("name")]


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


def to_oxen(results: Results, path: str | Path, message: str | None = None, push: bool = False) -> OxenExport:
    """Write the sweep's images and rows into the Oxen repository at `path` and commit them."""
    oxen = require_oxen()
    repo_path = Path(path).expanduser()
    done = [item for item in results.items if item.ok]
    if not done:
        raise UsageProblem("There are no finished images to save to Oxen; run the sweep first.")
    if repo_path.exists() and not repo_path.is_dir():
        raise UsageProblem(f"{repo_path} is a file, not a folder; give to_oxen a folder for the repository.")
    fresh = not (repo_path / ".oxen").is_dir()
    remote = None
    if push:
        known = [] if fresh else remotes(repo_path)
        if not known:
            raise UsageProblem(
                f"The Oxen repository at {repo_path} has no remote to push to; add one with `oxen config "
                "--set-remote origin https://hub.oxen.ai/<namespace>/<repo>` in that folder (nothing "
                "was written)."
            )
        remote = next((n for n, _ in known if n == "origin"), known[0][0])
    now = time.time()
    sweep = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = sweep
    n = 1
    while (repo_path / IMAGES / sweep).exists():
        n += 1
        sweep = f"{base}-{n}"
    repo_path.mkdir(parents=True, exist_ok=True)
    with _quiet():
        repo = oxen.init(str(repo_path)) if fresh else oxen.Repo(str(repo_path))
    folder = repo_path / IMAGES / sweep
    written = results.save_items(folder)
    files = [f"{IMAGES}/{sweep}/{p.name}" for _, p in written]
    rows = [_row(item, results, f, sweep, now) for (item, _), f in zip(written, files, strict=True)]
    table = repo_path / TABLE
    with table.open("a", encoding="utf-8") as out:
        if table.stat().st_size and not table.read_bytes().endswith(b"\n"):
            out.write("\n")
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    name, email, source = find_author(repo_path)
    try:
        with _quiet(), _as_author(name, email, source):
            repo.add(str(folder))
            repo.add(str(table))
            commit = repo.commit(message or _default_message(results, len(rows)))
    except Exception as exc:  # PyO3 raises plain ValueError/Exception with Oxen's own text
        raise OxenError(f"Oxen could not commit the sweep in {repo_path}: {redact(str(exc))}") from None
    commit_id = str(getattr(commit, "id", commit))
    export = OxenExport(repo_path, commit_id, files, len(rows), f"{name} <{email}>")
    verb = "Created the Oxen repository" if fresh else "Added to the Oxen repository"
    export.notes.append(
        f"{verb} {repo_path}: {len(rows)} image(s) and their rows in {TABLE}, commit {commit_id[:10]}."
    )
    export.notes.append(f"Committed as {name} <{email}> ({_SOURCES[source]}).")
    if remote is not None:
        try:
            with _quiet():
                repo.push(remote, repo.current_branch)
        except Exception as exc:
            raise OxenError(
                f"The sweep is committed in {repo_path}, but pushing it to {remote} failed "
                f"({redact(str(exc)).strip()}); run `oxen push {remote}` there once that is fixed."
            ) from None
        export.pushed = remote
        export.notes.append(f"Pushed to {remote}.")
    return export


# -- input images in an upload repository -----------------------------------------------------
def file_url(repo: str, host: str, path: str, revision: str = "main") -> str:
    """The public file URL of `path` in `repo`, the form the API docs use for `input_image`."""
    scheme, bare = _scheme_host(host)
    return f"{scheme}://{bare}/api/repos/{repo}/file/{revision}/{quote(path)}"


def _scheme_host(host: str) -> tuple[str, str]:
    if "://" in host:
        scheme, _, rest = host.partition("://")
        return scheme, rest.rstrip("/")
    return "https", host.rstrip("/")


def _remote_repo(repo: str, host: str) -> Any:
    scheme, bare = _scheme_host(host)
    return require_oxen().RemoteRepo(repo, host=bare, revision="main", scheme=scheme)


def check_repo_name(repo: str) -> str:
    """`namespace/repo`, or a `UsageProblem` naming the expected form."""
    parts = repo.strip().strip("/").split("/")
    if len(parts) != 2 or not all(parts) or any(c.isspace() for c in repo.strip()):
        raise UsageProblem(
            f"upload_repo {repo!r} is not a repository name; write it as namespace/repo, e.g. "
            '%config OxenMagic.upload_repo = "my-name/inputs".'
        )
    return "/".join(parts)


def split_target(target: str) -> tuple[str, str]:
    """`namespace/repo` (on hub.oxen.ai) or `https://host/namespace/repo` into (repo, host)."""
    text = target.strip()
    if "://" in text:
        scheme, _, rest = text.partition("://")
        host, _, repo = rest.partition("/")
        return check_repo_name(repo), f"{scheme}://{host}"
    return check_repo_name(text), "hub.oxen.ai"


def _put(remote: Any, data: bytes, repo: str, host: str, ext: str) -> tuple[str, bool]:
    """(file URL, whether it was sent): the content-addressed upload itself."""
    name = f"{hashlib.sha256(data).hexdigest()}.{ext.lstrip('.').lower() or 'png'}"
    path = f"{UPLOAD_DIR}/{name}"
    sent = False
    try:
        if not remote.file_exists(path):
            with tempfile.TemporaryDirectory(prefix="oxen-magic-upload-") as tmp:
                local = Path(tmp, name)
                local.write_bytes(data)
                with _quiet(), _as_author(*find_author()):
                    remote.upload(
                        str(local), f"oxen_magic input image {name}", file_name=name, dst_dir=UPLOAD_DIR
                    )
            sent = True
    except Exception as exc:
        raise OxenError(
            f"Could not upload the input image to the Oxen repository {repo} ({redact(str(exc)).strip()}); "
            "check that it exists and that `oxen config --auth` holds a key that may write to it."
        ) from None
    return file_url(repo, host, path), sent


def upload_input(
    data: bytes,
    repo: str,
    host: str = "hub.oxen.ai",
    ext: str = "png",
    *,
    remote_factory: Callable[[str, str], Any] | None = None,
) -> str:
    """Put an input image in `repo` under its content hash and return its file URL.

    The name is the sha256 of the bytes, so the same picture is uploaded once: an existing file is
    not sent again. `remote_factory(repo, host)` stands in for `oxen.RemoteRepo` in tests. The
    repository must be public for the API's servers to download the file.
    """
    repo = check_repo_name(repo)
    return _put((remote_factory or _remote_repo)(repo, host), data, repo, host, ext)[0]


_EXTS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


def upload_inputs(
    groups: tuple[Group | None, ...],
    target: str,
    *,
    remote_factory: Callable[[str, str], Any] | None = None,
) -> tuple[tuple[Group | None, ...], str | None]:
    """Every inline (data: URI) input uploaded to `target` and sent as its file URL instead.

    The identity (and so the cache key) is unchanged: the same picture is the same request
    whether it went inline or through the repository. Returns the groups and a note.
    """
    import base64
    import dataclasses

    repo, host = split_target(target)
    remote = None
    swapped: dict[str, InputImage] = {}
    sent = 0
    out: list[Group | None] = []
    for group in groups:
        if not group:
            out.append(group)
            continue
        images: list[InputImage] = []
        for image in group:
            if image.inline and image.url not in swapped:
                head, _, body = image.url.partition(",")
                mime = head[5:].split(";")[0].lower()
                if remote is None:
                    remote = (remote_factory or _remote_repo)(repo, host)
                url, fresh = _put(remote, base64.b64decode(body), repo, host, _EXTS.get(mime, "png"))
                swapped[image.url] = dataclasses.replace(image, url=url)
                sent += fresh
            images.append(swapped.get(image.url, image))
        out.append(tuple(images))
    if not swapped:
        return tuple(out), None
    kept = len(swapped) - sent
    note = f"Input image(s) sent as files of the Oxen repository {repo}: {sent} uploaded"
    return tuple(out), note + (f", {kept} already there." if kept else ".")
