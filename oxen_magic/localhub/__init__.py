"""A local stand-in for the Oxen.ai inference API: a real HTTP server on loopback.

`LocalHub` reproduces the contract in `oxen-api.md` (models list/detail/search, synchronous
`POST /api/ai/images/generate`, temporary result-file URLs, both error body shapes) closely enough
that the real client, notebooks, benchmarks and offline workshop rehearsals run against it unchanged.

Images are deterministic placeholders that explain themselves (drawn by `placeholder.py`): the
same request always gives the same bytes.

The hub is built from parts, each in its module:

* `hub.py` — `LocalHub`: builds the parts, lifecycle, test controls; `knobs.py` — what it is made
  with (`Knobs`, read on every request and settable on the hub; `Setup`, the parts' sizes);
* `router.py` — which route answers; `routes.py` — model list/detail/search, result files, the
  key check; `generate.py` — the image routes (generate and edit); `fetch_inputs.py` — fetching
  `input_image`; `models.py` — the models served; `validation.py` — schema checks;
* `storage.py` — result files with expiry and caps; `faults.py` — failure injection;
* `replies.py` — reply and error shapes; `server.py` — HTTP plumbing; `cli.py` — the command line;
* `bodies.py` — request bodies, capped before they are read; `hosts.py` — the Host check against
  DNS rebinding; `records.py` — the bounded record of requests (`requests`); `arrivals.py` —
  requests counted as they arrive and as they are answered (`wait_for_calls`, `wait_until`) and
  the counters (`billed`, `in_flight`, `rejected`); `placeholder.py` — the pictures drawn.

Failure injection for tests: `fail_next` (429 with Retry-After, the API's JSON 503, a proxy's
5xx HTML page, `gateway=True` for a bare 503), `fail_rate` (random transient 503s from a seeded
RNG), `garbage` (answers a client cannot use), `expire_urls`, `latency` (a slow answer),
`extra_images` and `input_route` (see `LocalHub`). Requests are recorded in `requests` (the
newest, each clipped: see `records.py`) once answered; a test waits for them with
`wait_for_calls(n)` (arrived, or `answered=True`) and moves URL expiry with a fake `clock`.

Run it by hand with `python -m oxen_magic.localhub --port 8765 --latency 0.5 --key KEY`.
"""

from __future__ import annotations

from oxen_magic.localhub.cli import main
from oxen_magic.localhub.faults import GARBAGE_KINDS
from oxen_magic.localhub.hub import LocalHub
from oxen_magic.localhub.models import FINE_TUNED_ID, default_catalogue, malformed_catalogue
from oxen_magic.localhub.replies import RecordedRequest, _Reply
from oxen_magic.localhub.routes import EDIT_PATH, FILES_PREFIX, GENERATE_PATH, MODELS_PATH
from oxen_magic.localhub.validation import validate

__all__ = [
    "EDIT_PATH",
    "FILES_PREFIX",
    "FINE_TUNED_ID",
    "GARBAGE_KINDS",
    "GENERATE_PATH",
    "MODELS_PATH",
    "LocalHub",
    "RecordedRequest",
    "_Reply",
    "default_catalogue",
    "main",
    "malformed_catalogue",
    "validate",
]
