"""`Spec` + what we know of each model → a `Plan`: the requests to send and the grid they fill.

Pure: the caller fetches the models' descriptions and passes them in. Validation against each
model's `request_schema` happens here, so a wrong value is reported before anything is billed.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from oxen_magic.core.errors import UsageProblem
from oxen_magic.core.money import Estimate, estimate
from oxen_magic.network.imageroutes import GENERATE_PATH
from oxen_magic.network.model_info import ModelInfo
from oxen_magic.planning.image_refs import Group, InputImage, sketched
from oxen_magic.planning.options import Spec
from oxen_magic.planning.params import check_value, typed_params
from oxen_magic.planning.required import check_inputs, count_param, is_list, read_timeout, request_path

#: Grid axes in the order they nest; the seed sweep is the column axis whenever it varies.
#: `image`: the images one request asks for (`--param num_images=4`), one cell each.
AXES = ("model", "input_image", "prompt", "steps", "aspect_ratio", "image", "seed")
#: The key the cache files image k > 0 of one answer under (never sent).
IMAGE_KEY = "_image"


@dataclass(frozen=True)
class Request:
    """One image to generate: exactly the JSON body sent (minus auth), plus where it goes."""

    model: str
    prompt: str
    seed: int | None = None
    aspect_ratio: str | None = None
    steps: int | None = None
    extra: tuple[tuple[str, Any], ...] = ()
    response_format: str = "url"
    namespace: str | None = None
    inputs: tuple[InputImage, ...] = ()
    input_list: bool = False
    path: str = GENERATE_PATH
    #: Seconds the answer may take (a slow model: an edit, an upscaler); None: the client's.
    read_timeout: float | None = None
    #: How many images the POST behind this cell asks for (`num_images` and the like): every
    #: one is billed. Cell `image` 0 sends the POST; cells 1..count-1 show its other images.
    count: int = 1
    image: int = 0

    @property
    def billed_images(self) -> int:
        """Images this cell's POST bills: `count` for the cell that sends it, 0 for the cells
        that show its other images (so a sum over cells counts each image once). An answer
        carrying more images than asked bills those too: the runner adds a cell for each."""
        return self.count if self.image == 0 else 0

    def sender(self) -> Request:
        """The request whose POST fills this cell (itself for image 0)."""
        return self if self.image == 0 else dataclasses.replace(self, image=0)

    def payload(self) -> dict[str, Any]:
        """The body as sent: `input_image` as URLs (or data: URIs), a list if the schema says so."""
        if any(not i.url for i in self.inputs):  # a plan of a spec whose inputs were not read
            raise ValueError("input images not resolved: run input_images.resolve_inputs first")
        return self._body([i.url for i in self.inputs])

    def key_body(self) -> dict[str, Any]:
        """The body with each input image replaced by its identity: what the cache keys on
        (image k > 0 of one answer under `_image: k`, so each image has its own entry)."""
        body = self._body([i.identity for i in self.inputs])
        if self.image:
            body[IMAGE_KEY] = self.image
        return body

    def _body(self, images: list[str]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model}
        if self.prompt:
            body["prompt"] = self.prompt
        if images:
            body["input_image"] = images if self.input_list else images[0]
        if self.response_format != "url":
            body["response_format"] = self.response_format
        if self.namespace:
            body["target_namespace"] = self.namespace
        if self.aspect_ratio is not None:
            body["aspect_ratio"] = self.aspect_ratio
        if self.steps is not None:
            body["num_inference_steps"] = self.steps
        if self.seed is not None:
            body["seed"] = self.seed
        body.update(self.extra)
        return body

    @property
    def params(self) -> dict[str, Any]:
        """The generation parameters (no transport fields; inputs as URL or hash, never data:)."""
        body = self._body([i.record for i in self.inputs])
        body.pop("response_format", None)
        body.pop("target_namespace", None)
        return body


@dataclass(frozen=True)
class Cell:
    """Where a request's image goes in the grid, or a note for a cell with no request."""

    row: int
    col: int
    request: Request | None
    note: str | None = None


@dataclass(frozen=True)
class Plan:
    """The requests (deduplicated), the grid they fill and what the user should be told."""

    cells: tuple[Cell, ...]
    row_labels: tuple[str, ...]
    col_labels: tuple[str, ...]
    row_axes: tuple[str, ...]
    col_axis: str | None
    notes: tuple[str, ...] = ()
    cost: float | None = None
    unpriced: int = 0
    #: The input images each row / column header shows (empty where the inputs do not vary
    #: along it); `fixed_inputs`: the one group every request shares, shown above the grid.
    row_inputs: tuple[Group, ...] = ()
    col_inputs: tuple[Group, ...] = ()
    fixed_inputs: Group = ()
    #: Price per image by model id (None: unknown), for the spend ledger and the cost of new images.
    prices: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def requests(self) -> tuple[Request, ...]:
        return tuple(c.request for c in self.cells if c.request is not None)

    def cost_line(self) -> str | None:
        """ "est. $0.10" style text, or None when no price is known."""
        return Estimate(self.cost or 0.0, self.unpriced, self.cost is not None).line()


def suggest(name: str, known: Sequence[str]) -> str:
    """`Model not found: X` with close matches, the sentence the magic shows."""
    lowered = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=3, cutoff=0.55)
    if not close:
        close = [k for k in lowered if name.lower() in k][:3]
    hint = (
        "did you mean " + " or ".join(lowered[c] for c in close) + "?"
        if close
        else "run %oxenimage --list-models to see the image models."
    )
    return f"Model not found: {name}; {hint}"


def axis_label(axis: str, value: Any, prompts: Sequence[str] = ()) -> str:
    if axis == "seed":
        return "random seed" if value is None else f"seed {value}"
    if axis == "steps":
        return "default steps" if value is None else f"{value} steps"
    if axis == "aspect_ratio":
        return "default ratio" if value is None else str(value)
    if axis == "image":
        return f"image {value + 1}"
    if axis == "input_image":
        return "no input image" if not value else " + ".join(i.label for i in value)
    if axis == "prompt":
        short = value if len(value) <= 40 else value[:39] + "…"
        return f"prompt {list(prompts).index(value) + 1}: {short}" if len(prompts) > 1 else short
    return str(value)


def make_plan(spec: Spec, models: Mapping[str, ModelInfo | None]) -> Plan:
    """The cartesian product of the spec's axes, checked against each known model schema.

    `models` maps each model id in the spec to its description (None: schema unknown, so values
    are sent as given). A parameter a model does not take is left out of its requests with a note;
    a seed sweep over a model without seeds becomes one request, since every seed would return the
    same image. Input images not yet resolved (`input_images.resolve_inputs`) are laid out by
    their labels: enough for the panel's live check, not for sending.
    """
    groups = tuple(None if refs is None else sketched(refs) for refs in spec.input_images)
    values: dict[str, tuple[Any, ...]] = {
        "model": spec.models,
        "input_image": groups,
        "prompt": spec.prompts,
        "steps": spec.steps,
        "aspect_ratio": spec.aspect_ratios,
        "image": (0,),
        "seed": spec.seeds,
    }
    extras, notes = typed_params(spec.params, models, spec.models)
    counts = {m: count_param(models.get(m), dict(extras[m]))[1] for m in spec.models}
    values["image"] = tuple(range(max(counts.values(), default=1)))
    for model in spec.models:
        info = models.get(model)
        _check_values(spec, info, model, notes)
        check_inputs(spec, info, model)
        if info is not None and info.takes("prompt") is False and any(spec.prompts):
            notes.append(f"{model} takes no prompt; sent without it.")
    grid = _Grid.of(values, spec.prompts)
    cells = _cells(spec, models, values, grid, extras, counts)
    sent = [c.request for c in cells if c.request is not None]
    if len(sent) > spec.max_images:
        raise UsageProblem(
            f"This cell would generate {len(sent)} images (counting every image a request asks for), "
            f"more than the limit of {spec.max_images}; narrow the sweep, or raise the limit with "
            f"--max-images {len(sent)} (or %config OxenMagic.max_images = {len(sent)})."
        )
    # Price x the images each POST asks for: one cell per image, so each is counted once.
    cost = estimate(((m.estimate if (m := models.get(r.model)) else None), r.billed_images) for r in sent)
    notes += _timed_notes(models, spec.models)
    return Plan(
        cells=tuple(cells),
        row_labels=grid.row_labels,
        col_labels=grid.col_labels,
        row_axes=grid.row_axes,
        col_axis=grid.col_axis,
        notes=tuple(notes),
        cost=cost.cost if cost.priced else None,
        unpriced=cost.unpriced if cost.priced else 0,
        row_inputs=_heads(grid.row_axes, grid.row_values, "input_image" in grid.row_axes),
        col_inputs=tuple(v or () for v in grid.col_values) if grid.col_axis == "input_image" else (),
        fixed_inputs=(groups[0] or ()) if len(groups) == 1 else (),
        prices={m: (info.estimate if (info := models.get(m)) is not None else None) for m in spec.models},
    )


@dataclass(frozen=True)
class _Grid:
    """Which axes vary, and how: the seed sweep is the columns whenever it varies, else the last
    varying axis; every other varying axis nests in the rows."""

    row_axes: tuple[str, ...]
    col_axis: str | None
    row_values: list[tuple[Any, ...]]
    col_values: tuple[Any, ...]
    row_labels: tuple[str, ...]
    col_labels: tuple[str, ...]

    @classmethod
    def of(cls, values: Mapping[str, tuple[Any, ...]], prompts: Sequence[str]) -> _Grid:
        varying = [a for a in AXES if len(values[a]) > 1]
        col_axis = "seed" if "seed" in varying else (varying[-1] if varying else None)
        row_axes = tuple(a for a in varying if a != col_axis)
        col_values = values[col_axis] if col_axis else (None,)
        row_values = list(itertools.product(*(values[a] for a in row_axes))) or [()]
        row_labels = tuple(
            " · ".join(axis_label(a, v, prompts) for a, v in zip(row_axes, row, strict=True))
            for row in row_values
        )
        col_labels = col_labels_for(col_axis, col_values, prompts)
        return cls(row_axes, col_axis, row_values, col_values, row_labels, col_labels)


def _cells(
    spec: Spec,
    models: Mapping[str, ModelInfo | None],
    values: Mapping[str, tuple[Any, ...]],
    grid: _Grid,
    extras: Mapping[str, tuple[tuple[str, Any], ...]],
    counts: Mapping[str, int],
) -> list[Cell]:
    """Every point of the grid: its request, or a note where it repeats one or has no image."""
    cells: list[Cell] = []
    # Keyed by the JSON body, not the Request: --param values may be lists (unhashable).
    seen: dict[str, tuple[int, int]] = {}
    for r, row in enumerate(grid.row_values):
        for c, col in enumerate(grid.col_values):
            point = dict(zip(grid.row_axes, row, strict=True))
            if grid.col_axis:
                point[grid.col_axis] = col
            for axis in AXES:
                point.setdefault(axis, values[axis][0])
            count = counts[point["model"]]
            if point["image"] >= count:
                cells.append(Cell(r, c, None, note=f"{point['model']} makes {count} image(s) per request"))
                continue
            request = _request(spec, models.get(point["model"]), point, extras[point["model"]], count)
            key = json.dumps(request.key_body(), sort_keys=True, default=str)
            if key in seen:
                where = seen[key]
                same = grid.col_labels[where[1]]
                if where[0] != r:  # name the row too, else "seed 1" reads as this row's own cell
                    same = f"{grid.row_labels[where[0]]}, {same}" if same else grid.row_labels[where[0]]
                cells.append(Cell(r, c, None, note=f"same request as {same}"))
            else:
                seen[key] = (r, c)
                cells.append(Cell(r, c, request))
    return cells


def _request(
    spec: Spec,
    info: ModelInfo | None,
    point: Mapping[str, Any],
    extra: tuple[tuple[str, Any], ...],
    count: int,
) -> Request:
    """One point's request, holding only what its model takes."""
    group: Group = point["input_image"] or ()
    return Request(
        model=point["model"],
        prompt=point["prompt"] if _takes(info, "prompt") else "",
        seed=point["seed"] if _takes(info, "seed") else None,
        aspect_ratio=point["aspect_ratio"] if _takes(info, "aspect_ratio") else None,
        steps=point["steps"] if _takes(info, "num_inference_steps") else None,
        extra=extra,
        response_format=spec.response_format,
        namespace=spec.namespace,
        inputs=group,
        input_list=bool(group) and is_list(info, len(group)),
        path=request_path(info, bool(group)),
        read_timeout=read_timeout(info, point["model"], bool(group)),
        count=count,
        image=point["image"],
    )


def _timed_notes(models: Mapping[str, ModelInfo | None], ids: Sequence[str]) -> list[str]:
    """What the estimate and the budget make of per-second prices (`pricing.method: time`)."""
    notes = []
    for model in ids:
        info = models.get(model)
        if info is None or info.cost_per_image is not None or info.cost_per_second is None:
            continue
        if info.typical_seconds is not None:
            notes.append(
                f"{model} is priced per second ({info.price_text}): estimated at its typical "
                f"{info.typical_seconds:g} s per image."
            )
        else:
            notes.append(
                f"{model} is priced per second ({info.price_text}) and its typical duration is "
                "unknown, so its images are not in the estimate or the budget."
            )
    return notes


def _heads(axes: Sequence[str], rows: Sequence[tuple[Any, ...]], varies: bool) -> tuple[Group, ...]:
    """Each row's input group, when the inputs vary along the rows."""
    if not varies:
        return ()
    at = list(axes).index("input_image")
    return tuple(row[at] or () for row in rows)


def col_labels_for(axis: str | None, vals: Sequence[Any], prompts: Sequence[str]) -> tuple[str, ...]:
    if axis is None:
        return ("",)
    return tuple(axis_label(axis, v, prompts) for v in vals)


def _takes(info: ModelInfo | None, name: str) -> bool:
    """Unknown schema: send what the user asked for and let the server judge."""
    return info is None or info.takes(name) is not False


def _check_values(spec: Spec, info: ModelInfo | None, model: str, notes: list[str]) -> None:
    """Validate the swept values against one model's schema; note what it does not take."""
    if info is None or info.request_schema is None:
        return
    swept: dict[str, list[Any]] = {
        "seed": [s for s in spec.seeds if s is not None],
        "aspect_ratio": [a for a in spec.aspect_ratios if a is not None],
        "num_inference_steps": [n for n in spec.steps if n is not None],
    }
    for name, vals in swept.items():
        if not vals:
            continue
        if not info.takes(name):
            extra = (
                f"; one image instead of {len(vals)}, since every seed gives the same request"
                if name == "seed" and len(vals) > 1
                else "; sent without it"
            )
            notes.append(f"{model} takes no {name}{extra}.")
            continue
        for v in vals:
            check_value(model, name, v, info.properties[name])
