"""Handouts: an instructor's notebook into a student copy and a separate solutions notebook.

`python -m oxen_magic.handout INSTRUCTOR.ipynb --out student.ipynb --solutions solutions.ipynb`

In the instructor's notebook:

* a code cell tagged `solution` is an exercise's answer. In the student copy each run of
  consecutive solution cells becomes one empty exercise cell (tagged `exercise`) holding its
  hint; the answers go, in order and under their exercise's heading, to the solutions notebook.
  A markdown cell tagged `solution` (an answer explained) goes to the solutions notebook only.
* the hint is the solution cell's `hint` metadata (`{"hint": "use --cols"}`), which works for
  `%%oxenimage` cells (whose first line must be the magic); a Python cell may instead start with a
  comment line `# Hint: ...`, which is then taken out of the solution.
* a cell tagged `instructor` (agenda notes, the budget table) is left out of the student copy.

Every output is cleared and nothing hidden is left behind: a collapsed ("hidden") solution
would still be in the file, and in every HTML export of it. Cell ids are kept (exercise cells get
`exercise-N`), so the same notebook always makes the same handout, byte for byte.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOLUTION, EXERCISE, INSTRUCTOR = "solution", "exercise", "instructor"
DEFAULT_HINT = "Write your cell here, then run it."
_HINT_LINE = re.compile(r"^#\s*(?:hint\s*:\s*)?(.*\S)\s*$", re.I)


class HandoutError(ValueError):
    """A notebook that cannot be turned into a handout, in one sentence with the fix."""


@dataclass
class Handout:
    """The two notebooks (nbformat nodes) and what was done."""

    student: Any
    solutions: Any
    exercises: int
    dropped: int

    def __str__(self) -> str:
        return (
            f"{self.exercises} exercise(s): solutions replaced by hints, {self.dropped} instructor "
            "cell(s) left out, all outputs cleared."
        )


def _tags(cell: Any) -> list[str]:
    tags = cell.get("metadata", {}).get("tags", [])
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _clean(cell: Any) -> Any:
    """A copy with no outputs, no execution count, nothing collapsed or hidden, no timings."""
    new = copy.deepcopy(cell)
    if new.cell_type == "code":
        new.outputs, new.execution_count = [], None
    for key in ("execution", "collapsed", "scrolled", "jupyter", "hint"):
        new.metadata.pop(key, None)
    return new


def hint_of(cell: Any) -> tuple[str | None, str]:
    """(the hint, the solution's source without a hint comment line)."""
    hint = cell.metadata.get("hint")
    source = cell.source
    if isinstance(hint, str) and hint.strip():
        return hint.strip(), source
    first, _, rest = source.partition("\n")
    match = _HINT_LINE.match(first) if first.startswith("#") else None
    if match:
        return match.group(1), rest.lstrip("\n")
    return None, source


def make_handout(nb: Any) -> Handout:
    """The student copy and the solutions notebook of an instructor's notebook (nbformat v4)."""
    import nbformat

    student_cells: list[Any] = []
    solution_cells: list[Any] = []
    heading: Any = None
    heading_used = False
    group: list[Any] = []
    exercises = dropped = 0

    def close_group() -> None:
        nonlocal exercises, heading_used
        if not group:
            return
        exercises += 1
        hints = [h for h in (hint_of(c)[0] for c in group) if h]
        text = "\n".join(f"# Hint: {h}" for h in hints) if hints else f"# {DEFAULT_HINT}"
        cell = nbformat.v4.new_code_cell(text + "\n", metadata={"tags": [EXERCISE]})
        cell["id"] = f"exercise-{exercises}"
        student_cells.append(cell)
        if heading is not None and not heading_used:
            solution_cells.append(_clean(heading))
            heading_used = True
        for c in group:
            answer = _clean(c)
            answer.source = hint_of(c)[1]
            answer.metadata["tags"] = [t for t in _tags(c) if t != SOLUTION]
            if not answer.metadata["tags"]:
                answer.metadata.pop("tags")
            solution_cells.append(answer)
        group.clear()

    for cell in nb.cells:
        tags = _tags(cell)
        if SOLUTION in tags and cell.cell_type == "code":
            group.append(cell)
            continue
        close_group()
        if SOLUTION in tags:  # an answer written out (markdown): to the solutions only
            if heading is not None and not heading_used:
                solution_cells.append(_clean(heading))
                heading_used = True
            solution_cells.append(_clean(cell))
            continue
        if INSTRUCTOR in tags:
            dropped += 1
            continue
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#"):
            heading, heading_used = cell, False
        student_cells.append(_clean(cell))
    close_group()

    metadata = {k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")}
    student = nbformat.v4.new_notebook(cells=student_cells, metadata=copy.deepcopy(metadata))
    title = next((c.source.splitlines()[0].lstrip("# ") for c in nb.cells if c.cell_type == "markdown"), "")
    intro = nbformat.v4.new_markdown_cell(f"# Solutions: {title}".rstrip(": "))
    intro["id"] = "solutions-title"
    solutions = nbformat.v4.new_notebook(cells=[intro, *solution_cells], metadata=copy.deepcopy(metadata))
    for made in (student, solutions):
        made.nbformat, made.nbformat_minor = 4, max(5, int(nb.get("nbformat_minor", 5)))
        nbformat.validate(made)
    return Handout(student, solutions, exercises, dropped)


def write_handout(source: str | Path, out: str | Path, solutions: str | Path | None = None) -> Handout:
    """Read `source`, write the student copy to `out` (and the solutions, when asked)."""
    try:
        import nbformat
    except ModuleNotFoundError:
        raise HandoutError(
            "Handouts need nbformat; install it with pip install 'oxen_magic[demo]'."
        ) from None
    try:
        nb = nbformat.read(str(source), as_version=4)
    except OSError as exc:
        raise HandoutError(f"Cannot read {source} ({exc.strerror or exc}); check the file name.") from None
    except Exception as exc:  # nbformat raises several kinds for a file that is not a notebook
        raise HandoutError(
            f"{source} is not a notebook ({type(exc).__name__}); give an .ipynb file."
        ) from None
    if Path(out).resolve() == Path(source).resolve() or (
        solutions is not None and Path(solutions).resolve() == Path(source).resolve()
    ):
        raise HandoutError(f"The handout would overwrite {source}; write it to another file with --out.")
    made = make_handout(nb)
    for path, notebook in ((out, made.student), (solutions, made.solutions)):
        if path is None:
            continue
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(nbformat.writes(notebook) + "\n", encoding="utf-8")
    return made


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m oxen_magic.handout",
        description="Turn an instructor's notebook into a student copy (solutions replaced by hints).",
    )
    parser.add_argument("notebook", help="the instructor's notebook")
    parser.add_argument("--out", required=True, help="where to write the student copy")
    parser.add_argument("--solutions", help="where to write the solutions notebook")
    args = parser.parse_args(argv)
    try:
        made = write_handout(args.notebook, args.out, args.solutions)
    except HandoutError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"Wrote {args.out}" + (f" and {args.solutions}" if args.solutions else "") + f": {made}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
