"""Check cells that check: a workshop exercise's grid, judged ✓ or ✗ with a hint.

An exercise has a start cell, `oxen_magic.exercise("1")`, run before the student's own cell, and
a check cell, `oxen_magic.check("1", prompt=..., images=6, ...)`, run after it. The check looks
only at grids made since that exercise's start cell ran (by the magic, the panel or Python), so
it can never find the demo grid above the exercise, nor another exercise's grid: with no
student work it says ✗ and how to go on. Why a start cell rather than a name: students name
their results anything (or nothing), and "the newest grid" is whatever ran last, which before
the student's cell runs is someone else's grid.

Each keyword is one requirement with its own hint, so the answer says what is missing, not only
that something is. `prompt`/`prompts` are the exercise's words, where `{name}` stands for any
words (`"a {animal} in the snow"` accepts a fox as well as an owl).

(Named `exercises`, not `check`: a submodule named like the function would replace
`oxen_magic.check` with the module once imported.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from oxen_magic.display.html import NO_MATH, esc
from oxen_magic.results.results import Results
from oxen_magic.session.session import current_session
from oxen_magic.session.state import Exercises, RecentGrids


def _tables() -> tuple[Exercises, RecentGrids]:
    """The session's exercises and recent grids (`state.py`): a new session starts afresh."""
    state = current_session().state
    return state.exercises, state.grids


def _name(exercise: object) -> str:
    text = str(exercise).strip()
    if not text:
        raise ValueError('Name the exercise, e.g. oxen_magic.exercise("1").')
    return text


def exercise(name: object) -> Started:
    """Mark the start of exercise `name`: its check looks only at grids made after this."""
    key = _name(name)
    exercises, grids = _tables()
    exercises.start(key, grids.alive())
    return Started(key)


@dataclass(frozen=True)
class Started:
    """What a start cell shows."""

    name: str

    def __repr__(self) -> str:
        return f"Exercise {self.name}: write your cell below, run it, then run the check cell."


def _pattern(prompt: str) -> re.Pattern[str]:
    """The exercise's words with `{name}` standing for any words."""
    parts = re.split(r"\{[A-Za-z_]\w*\}", prompt.strip())
    return re.compile(r".+?".join(re.escape(p) for p in parts), re.S)


def _seeds(grid: Results) -> list[int]:
    return sorted({i.seed for i in grid if i.seed is not None})


def _models(grid: Results) -> list[str]:
    return sorted({str(i.model) for i in grid if i.model is not None})


def _prompts(grid: Results) -> list[str]:
    return sorted({str(i.prompt) for i in grid if i.prompt is not None})


@dataclass
class Check:
    """✓ or ✗ for one exercise, with what to do next; true when it passed."""

    exercise: str
    passed: bool
    message: str
    hint: str = ""
    grid: Results | None = field(default=None, repr=False)

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = "✓" if self.passed else "✗"
        text = f"{mark} Exercise {self.exercise}: {self.message}"
        return text + (f" Hint: {self.hint}" if self.hint and not self.passed else "")

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour = "#1a7f37" if self.passed else "#b42318"
        mark = "✓" if self.passed else "✗"
        hint = f" <em>Hint: {esc(self.hint)}</em>" if self.hint and not self.passed else ""
        return (
            f'<div class="{NO_MATH}"><b style="color:{colour}">{mark} Exercise {esc(self.exercise)}:</b> '
            f"{esc(self.message)}{hint}</div>"
        )


def _problems(
    grid: Results,
    *,
    prompt: str | None,
    prompts: Sequence[str] | None,
    images: int | None,
    max_images: int | None,
    models: int | Sequence[str] | None,
    seeds: int | Sequence[int] | None,
    cols: int | None,
    fresh: bool,
    same_as: str | None,
) -> list[str]:
    """What this grid lacks, one sentence each (empty: it passes)."""
    found: list[str] = []
    wanted = [prompt] if prompt is not None else list(prompts or [])
    have = _prompts(grid)
    if wanted:
        patterns = [_pattern(p) for p in wanted]
        if len(have) != len(wanted) or not all(any(p.fullmatch(h) for h in have) for p in patterns):
            words = " and ".join(repr(p) for p in wanted)
            found.append(f"its prompts should be {words}, and are {', '.join(map(repr, have))}.")
    if grid.failed or grid.done < grid.total:
        missing = grid.total - grid.done
        found.append(f"{missing} of its {grid.total} images did not arrive; run your cell again.")
    if images is not None and grid.total != images:
        found.append(f"it has {grid.total} images and the exercise asks for {images}.")
    if max_images is not None and grid.total > max_images:
        found.append(f"it has {grid.total} images, more than {max_images}.")
    got_models = _models(grid)
    if isinstance(models, int) and len(got_models) < models:
        found.append(f"it compares {len(got_models)} model(s) and the exercise asks for at least {models}.")
    elif models is not None and not isinstance(models, int) and got_models != sorted(models):
        found.append(f"its models are {', '.join(got_models)} and should be {', '.join(sorted(models))}.")
    got_seeds = _seeds(grid)
    if isinstance(seeds, int) and len(got_seeds) < seeds:
        found.append(f"it has {len(got_seeds)} seed(s) and needs at least {seeds}.")
    elif seeds is not None and not isinstance(seeds, int) and got_seeds != sorted(set(seeds)):
        found.append(f"its seeds are {got_seeds} and should be {sorted(set(seeds))}.")
    if cols is not None and grid.cols != cols:
        found.append(f"its rows hold {grid.cols} images and should hold {cols} (--cols {cols}).")
    if fresh and any(i.cached for i in grid):
        found.append("its image came from the cache: add --no-cache so the server makes it again.")
    if same_as is not None:
        found.extend(_compare(grid, same_as))
    return found


def _compare(grid: Results, other: str) -> list[str]:
    before = _tables()[0].accepted(other)
    if before is None:
        return [f"exercise {other} has not passed its check yet; do it first."]
    for item in grid:
        if item.status != "done" or item.model is None:
            continue
        try:
            match = before[item.model, item.seed]
        except KeyError:
            return [f"exercise {other}'s grid has no image of {item.model} with seed {item.seed}."]
        if match.data != item.data and not _looks_the_same(match, item):
            return [f"its image differs from exercise {other}'s {item.model}, seed {item.seed}."]
    return []


#: Mean difference (of 255) below which two pictures count as the same one re-encoded.
SAME_PICTURE = 4.0


def _looks_the_same(a: Any, b: Any) -> bool:
    """The same picture though not the same bytes: a hosted model may encode an image anew (or
    differ by a few pixel levels) on a rerun, which is still the image the exercise asks for."""
    from PIL import ImageChops, ImageStat

    try:
        first, second = (i.image.convert("L").resize((64, 64)) for i in (a, b))
    except Exception:  # an image that does not decode is not the same picture
        return False
    return float(ImageStat.Stat(ImageChops.difference(first, second)).mean[0]) < SAME_PICTURE


def check(
    exercise: object,
    *,
    prompt: str | None = None,
    prompts: Sequence[str] | None = None,
    images: int | None = None,
    max_images: int | None = None,
    models: int | Sequence[str] | None = None,
    seeds: int | Sequence[int] | None = None,
    cols: int | None = None,
    fresh: bool = False,
    same_as: object | None = None,
    hint: str = "",
) -> Check:
    """Judge the grids made since `oxen_magic.exercise(exercise)` ran; ✓ when one passes.

    `images`: exactly that many; `max_images`: at most; `models`/`seeds`: a list (exactly
    those) or a number (at least that many different ones); `cols`: images per row; `fresh`:
    made by the server, not read from the cache; `same_as`: the image of the same model and seed
    in the grid that passed exercise `same_as` (byte for byte, or the same picture re-encoded);
    `hint`: said with every ✗.
    """
    key = _name(exercise)
    other = _name(same_as) if same_as is not None else None
    exercises, grids = _tables()
    before = exercises.before(key)
    if before is None:
        start = f'its start cell has not run: run oxen_magic.exercise("{key}"), then your cell.'
        return Check(key, False, start, hint)
    recent = grids.alive()
    # made since the start, finished, and sent (not a dry run, nor a plan the limits refused)
    ran = ("done", "failed", "cancelled")
    mine = [
        g for g in reversed(recent)
        if g not in before and not g.running and any(i.status in ran for i in g)
    ]  # fmt: skip
    if not mine:
        none = "no grid has been made since the exercise began; write and run your cell."
        return Check(key, False, none, hint)
    rules = dict(
        prompt=prompt, prompts=prompts, images=images, max_images=max_images, models=models,
        seeds=seeds, cols=cols, fresh=fresh, same_as=other,
    )  # fmt: skip
    judged = [(g, _problems(g, **rules)) for g in mine]  # type: ignore[arg-type]
    for grid, problems in judged:
        if not problems:
            exercises.accept(key, grid)
            what = f"{grid.total} image(s), {len(_models(grid))} model(s), seeds {_seeds(grid)}"
            return Check(key, True, f"your grid ({what}) does what the exercise asks.", grid=grid)
    # the newest grid with the right words (else the newest) is the one the student meant
    grid, problems = next(
        ((g, p) for g, p in judged if not any(s.startswith("its prompts") for s in p)), judged[0]
    )
    return Check(key, False, "your newest grid is not it yet: " + " ".join(problems), hint, grid)
