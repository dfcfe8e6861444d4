"""Check cells that check (issue 19, item 6): `oxen_magic.exercise()` / `oxen_magic.check()` in a
real IPython shell against the local hub, and the workshop notebook's own check cells.

A check looks only at grids made since its exercise's start cell ran: with no student work it
says ✗ with its hint (never finding the demo grid, nor another exercise's grid); with the
solution it says ✓, whatever the student named the result.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nbformat
import pytest
from IPython.utils.capture import capture_output
from PIL import Image

import oxen_magic

WORKSHOP = Path(__file__).resolve().parent.parent / "notebooks" / "workshop.ipynb"
BOAT = "a paper boat on a pond"


def _run(shell: Any, source: str) -> str:
    """Run one cell as a notebook would; what it printed and displayed (text)."""
    with capture_output() as out:
        result = shell.run_cell(source)
    assert result.error_in_exec is None, result.error_in_exec
    return out.stdout + out.stderr  # the test shell prints a cell's value as Out[n]: ...


def test_a_check_sees_only_grids_made_since_its_start(shell: Any) -> None:
    shell.run_cell("import oxen_magic")
    _run(shell, f"%%oxenimage --seed 1..6 --cols 3 --out demo\n{BOAT}")  # the demo above the exercise
    no_start = oxen_magic.check("1", prompt=BOAT, images=6)
    assert not no_start and 'run oxen_magic.exercise("1")' in str(no_start)
    assert "Exercise 1: write your cell below" in _run(shell, 'oxen_magic.exercise("1")')
    hint = "six seeds are --seed 1..6"
    nothing = oxen_magic.check("1", prompt=BOAT, images=6, cols=3, hint=hint)
    assert not nothing and str(nothing).startswith("✗ Exercise 1: no grid has been made since")
    assert str(nothing).endswith(f"Hint: {hint}")  # the demo grid, identical to the answer, is not found
    _run(shell, f"%%oxenimage --seed 1..5 --cols 3 --out my_try\n{BOAT}")
    wrong = oxen_magic.check("1", prompt=BOAT, images=6, cols=3, hint=hint)
    assert not wrong and "it has 5 images and the exercise asks for 6" in str(wrong)
    _run(shell, f"%%oxenimage --seed 1..6 --cols 3 --out whatever_name\n{BOAT}")
    _run(shell, "%%oxenimage --seed 9 --out later\na lighthouse")  # a later, unrelated grid
    right = oxen_magic.check("1", prompt=BOAT, images=6, cols=3, hint=hint)
    assert right and str(right).startswith("✓ Exercise 1:") and "Hint" not in str(right)
    assert right.grid is shell.user_ns["whatever_name"] and right.grid[4].seed == 5
    html = right._repr_html_()
    assert "✓" in html and "mathjax_ignore" in html
    # another exercise never sees exercise 1's grids
    oxen_magic.exercise("2")
    assert "no grid has been made since" in str(oxen_magic.check("2", images=6))


def test_grids_and_exercises_belong_to_the_session(shell: Any) -> None:
    """The session owns what a check looks at (`session.state`): a grid from `generate()` counts
    like one from the magic, and a new session (a restarted kernel) starts with none."""
    from oxen_magic.session.session import current_session, reset_session

    oxen_magic.exercise("g")
    grid = oxen_magic.generate(BOAT, seed=[1, 2], show=False)
    assert oxen_magic.latest() is grid and grid in current_session().state.grids.alive()
    assert oxen_magic.check("g", prompt=BOAT, images=2).grid is grid
    reset_session()
    assert 'run oxen_magic.exercise("g")' in str(oxen_magic.check("g", images=2))
    with pytest.raises(LookupError, match="No grid has been made in this notebook yet"):
        oxen_magic.latest()


def test_dry_runs_and_refused_plans_are_not_answers(shell: Any) -> None:
    shell.run_cell("import oxen_magic")
    oxen_magic.exercise("x")
    _run(shell, f"%%oxenimage --seed 1..6 --dry-run\n{BOAT}")
    with capture_output():
        refused = shell.run_cell(f"%%oxenimage --seed 1..20 --max-images 4\n{BOAT}")
    assert "more than the limit of 4" in str(refused.error_in_exec)  # refused before sending
    assert "no grid has been made since" in str(oxen_magic.check("x", images=6))


def test_each_requirement_says_what_is_missing(shell: Any) -> None:
    shell.run_cell("import oxen_magic\nanimal = 'owl'")
    oxen_magic.exercise("2")
    _run(
        shell,
        "%%oxenimage --model z-image-turbo --seed 1,2\na {animal} in the snow\n---\na {animal} in a library",
    )
    rules: dict[str, Any] = dict(prompts=["a {animal} in the snow", "a {animal} in a library"], seeds=[1, 2])
    assert oxen_magic.check("2", **rules)  # {animal} stands for any words
    rules["models"] = ["flux-2-dev", "z-image-turbo"]
    assert "its models are z-image-turbo and should be flux-2-dev, z-image-turbo" in str(
        oxen_magic.check("2", **rules)
    )
    three = oxen_magic.check("2", prompt=BOAT, models=3, seeds=3, max_images=2, cols=2)
    for part in ("its prompts should be", "at least 3", "needs at least 3", "more than 2", "--cols 2"):
        assert part in str(three), (part, str(three))


def test_a_fresh_image_compared_with_another_exercise(shell: Any, tmp_path: Path) -> None:
    shell.run_cell("import oxen_magic")
    oxen_magic.exercise("a")
    _run(shell, f"%%oxenimage --seed 1..2 --out first\n{BOAT}")
    oxen_magic.exercise("b")
    _run(shell, f"%%oxenimage --seed 2\n{BOAT}")  # from the cache
    assert "exercise a has not passed its check yet" in str(oxen_magic.check("b", same_as="a"))
    assert oxen_magic.check("a", images=2)
    cached = oxen_magic.check("b", images=1, fresh=True, same_as="a")
    assert not cached and "came from the cache: add --no-cache" in str(cached)
    _run(shell, f"%%oxenimage --seed 2 --no-cache\n{BOAT}")
    assert oxen_magic.check("b", images=1, fresh=True, same_as="a")
    _run(shell, "%%oxenimage --seed 2 --no-cache\na paper boat on a lake")
    other = oxen_magic.check("b", images=1, fresh=True, same_as="a")
    assert other  # the newest fails, but an earlier one since the start passed
    # the same picture re-encoded (a hosted model's rerun) counts; another picture does not
    from oxen_magic.frontends.exercises import _looks_the_same

    first = shell.user_ns["first"]
    buffer = io.BytesIO()
    first[1].image.convert("RGB").save(buffer, "JPEG", quality=90)
    reencoded = SimpleNamespace(image=Image.open(io.BytesIO(buffer.getvalue())))
    assert buffer.getvalue() != first[1].data and _looks_the_same(first[1], reencoded)
    assert not _looks_the_same(first[0], reencoded)
    oxen_magic.exercise("b")
    _run(shell, "%%oxenimage --seed 3 --no-cache\na paper boat on a lake")
    assert "has no image of" in str(oxen_magic.check("b", images=1, fresh=True, same_as="a"))


def _cells() -> dict[str, Any]:
    return {c.id: c for c in nbformat.read(str(WORKSHOP), as_version=4).cells}


#: (start cell, the exercise's solution cells, its check cell) in workshop.ipynb
EXERCISES = [
    ("code-ex1-start", ["code-18"], "code-19"),
    ("code-ex2-start", ["code-21", "code-22"], "code-23"),
    ("code-ex3-start", ["code-25"], "code-26"),
    ("code-ex4-start", ["code-29", "code-30"], "code-31"),
]


@pytest.mark.parametrize("solved", [False, True], ids=["no student work", "the solutions"])
def test_the_workshop_check_cells(
    shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, solved: bool
) -> None:
    monkeypatch.chdir(tmp_path)  # exercise 4 saves PNGs under out/
    cells = _cells()
    for cid in ("code-11", "code-15"):  # the budget guard and the demo grid above the exercises
        _run(shell, cells[cid].source)
    shell.run_cell("import oxen_magic")
    for start, solutions, check in EXERCISES:
        assert cells[start].source.startswith("oxen_magic.exercise(")
        _run(shell, cells[start].source)
        if solved:
            for cid in solutions:
                assert "solution" in cells[cid].metadata.get("tags", [])
                _run(shell, cells[cid].source)
        text = _run(shell, cells[check].source)
        if solved and start == "code-ex1-start":
            assert "position 4 is seed 5" in text  # the lesson of exercise 1, once it passed
        if solved:
            assert "✓ Exercise" in text and "✗" not in text, text
        else:
            assert "✗ Exercise" in text and "Hint: " in text and "✓" not in text, text
            assert "position 4 is seed" not in text and "same image" not in text
