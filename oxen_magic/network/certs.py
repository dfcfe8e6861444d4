"""Which certificate authorities an HTTPS answer is checked against.

A company network that inspects HTTPS has its own certificate authority, named by the standard
variables. `requests` merges `REQUESTS_CA_BUNDLE` (and `CURL_CA_BUNDLE`) itself only when `verify`
is left at its default, and never reads `SSL_CERT_FILE` (the variable OpenSSL, curl and Python's
own `ssl` use), so the transport asks this module at every call instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from oxen_magic.core.errors import OxenError

#: Where a certificate authority bundle may be named, in the order they are read.
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


def ca_bundle(env: Mapping[str, str] | None = None) -> str | bool:
    """What `requests` verifies certificates against: the first of `CA_VARIABLES` that is set,
    else True (its usual roots). Read at each call, so a variable set in a running kernel counts.
    A named file that is not there is one clear sentence, not an OSError from deep in requests.
    """
    env = os.environ if env is None else env
    for name in CA_VARIABLES:
        path = env.get(name, "").strip()
        if not path:
            continue
        if not os.path.exists(path):
            raise OxenError(
                f"{name} names {path}, which does not exist; point it at your network's certificate "
                "bundle (a .pem file) or unset it."
            )
        return path
    return True
