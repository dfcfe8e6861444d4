"""Origins and URLs: the same-origin rule the key depends on, and no silent https -> http.

Split from the transport (`httptransport.py`), which sends; these say where a URL points and
whether the key or an unencrypted fetch may go there (the client checks result URLs with them too).
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from oxen_magic.core.errors import BadResponseError


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with default ports filled in, for the same-origin rule."""
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.scheme, (parts.hostname or "").lower(), port)


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def check_not_downgraded(source: str, target: str, how: str) -> None:
    """Refuse plain http reached from https (off loopback): never silently drop encryption."""
    if urlsplit(source).scheme == "https" and urlsplit(target).scheme == "http" and not is_loopback(target):
        raise BadResponseError(
            f"The https API {how} to plain http ({site_of(target)}), which was refused rather than "
            "fetched unencrypted."
        )


def join_url(base: str, ref: str, what: str) -> str:
    """`ref` resolved against `base`, or `BadResponseError` when it is no http(s) address."""
    try:
        url = urljoin(base, ref)
        ok = urlsplit(url).scheme in ("http", "https") and bool(origin(url)[1])
    except ValueError:  # a bad IPv6 literal or port: urllib raises while parsing
        ok = False
    if not ok:
        raise BadResponseError(f"The API {what} that is not a web address.")
    return url


def site_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
