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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from oxen_magic.core.errors import OxenError, UsageProblem, redact

if TYPE_CHECKING:
    from oxen_magic.planning.image_refs import ImageRef, Refs

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


AUTHOR_SOURCES = {
    "oxen": "from your Oxen config",
    "git": "from git's user.name/user.email, as Oxen has no user configured",
    "default": "a default, as neither Oxen nor git has a user configured",
}


@contextmanager
def as_author(name: str, email: str, source: str) -> Iterator[None]:
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
def quiet(*fds: int) -> Iterator[None]:
    """Oxen's Rust core prints progress lines straight to file descriptor 1 (which a Jupyter
    kernel forwards into the cell); our notes say the same in one place, so hide them. With
    `quiet(1, 2)` its panic messages on descriptor 2 too (the panic itself is reported as one
    sentence by the caller)."""
    fds = fds or (1,)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(fd) for fd in fds]
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            for fd in fds:
                os.dup2(null.fileno(), fd)
            yield
    finally:
        for fd, old in zip(fds, saved, strict=True):
            os.dup2(old, fd)
            os.close(old)


# -- to_oxen targets (the transaction itself is oxen_export.to_oxen) ---------------------------
def remotes(path: str | Path) -> list[tuple[str, str]]:
    """(name, url) of each remote recorded in the repository's .oxen/config.toml."""
    try:
        config = tomllib.loads(Path(path, ".oxen", "config.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    found = config.get("remotes") or []
    return [(str(r.get("name")), str(r.get("url"))) for r in found if isinstance(r, dict) and r.get("name")]


def check_target(path: str | Path, push: bool) -> None:
    """What `--to-oxen DIR [--push]` needs, checked before anything is billed: the oxenai package,
    a folder (not a file), and with `push` a repository that has a remote."""
    require_oxen()
    repo_path = Path(path).expanduser()
    if repo_path.exists() and not repo_path.is_dir():
        raise UsageProblem(f"{repo_path} is a file, not a folder; give to_oxen a folder for the repository.")
    if push and not remotes(repo_path):
        raise UsageProblem(no_remote(repo_path))


def no_remote(repo_path: Path) -> str:
    return (
        f"The Oxen repository at {repo_path} has no remote to push to; add one with `oxen config "
        "--set-remote origin https://hub.oxen.ai/<namespace>/<repo>` in that folder (nothing "
        "was written)."
    )


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
                with quiet(), as_author(*find_author()):
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
    groups: tuple[Refs | None, ...],
    target: str,
    *,
    remote_factory: Callable[[str, str], Any] | None = None,
) -> tuple[tuple[Refs | None, ...], str | None]:
    """Every inline (data: URI) input uploaded to `target` and sent as its file URL instead.

    The identity (and so the cache key) is unchanged: the same picture is the same request
    whether it went inline or through the repository. Returns the groups and a note. The groups
    are resolved ones (`input_images.resolve_inputs`): a reference not yet read is left as is.
    """
    import base64
    import dataclasses

    from oxen_magic.planning.image_refs import InputImage

    repo, host = split_target(target)
    remote = None
    swapped: dict[str, InputImage] = {}
    sent = 0
    out: list[Refs | None] = []
    for group in groups:
        if not group:
            out.append(group)
            continue
        images: list[ImageRef] = []
        for image in group:
            if not isinstance(image, InputImage):
                images.append(image)
                continue
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
