"""Handouts: an instructor's notebook into a student copy and a separate solutions notebook.

`python -m oxen_magic handout INSTRUCTOR.ipynb --out student.ipynb --solutions solutions.ipynb`

In the instructor's notebook:

* a code cell tagged `solution` is an exercise's answer. In the student copy each run of
  consecutive solution cells becomes one empty exercise cell (tagged `exercise`) holding its
  hint. The solutions notebook is the student copy with the answers in place (so it runs top to
  bottom, check cells included); a markdown cell tagged `solution` (an answer explained) goes
  there only.
* the hint is the solution cell's `hint` metadata (`{"hint": "use --cols"}`), which works for
  `%%oxenimage` cells (whose first line must be the magic); a Python cell may instead start with a
  line `# Hint: ...`, which is then taken out of the solution. Nothing else is ever published: a
  first comment such as `# answer: 42` stays in the solution, and a hint of several lines is
  written as several comment lines.
* a cell tagged `instructor` (agenda notes, the budget table) is left out of both.
* tags are read without regard to case (`Solution`, `INSTRUCTOR`).

`--audit STUDENT.ipynb` reads a student copy (made by this tool or by hand) and lists every line
of a solution cell, its source or its outputs, that reached it; it exits 1 when something
leaked. Every build audits its own student copy before writing it.

Every output is cleared and nothing hidden is left behind: a collapsed ("hidden") solution
would still be in the file, and in every HTML export of it. Cell ids are kept (exercise cells get
`exercise-N`), so the same notebook always makes the same handout, byte for byte.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oxen_magic.core.atomic import write_text_atomic

SOLUTION, EXERCISE, INSTRUCTOR = "solution", "exercise", "instructor"
DEFAULT_HINT = "Write your cell here, then run it."
_HINT_LINE = re.compile(r"^#\s*hint\s*:\s*(.*\S)\s*$", re.I)
#: Solution lines shorter than this (`)`, `---`, `else:`) say nothing of the answer on their own.
_AUDIT_MIN = 6


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
    """The cell's tags as written (`_has` compares them without regard to case)."""
    tags = cell.get("metadata", {}).get("tags", [])
    return [str(t) for t in tags] if isinstance(tags, list) else []


def _has(cell: Any, tag: str) -> bool:
    return any(t.strip().lower() == tag for t in _tags(cell))


def _clean(cell: Any) -> Any:
    """A copy with no outputs, no execution count, nothing collapsed or hidden, no timings."""
    new = copy.deepcopy(cell)
    if new.cell_type == "code":
        new.outputs, new.execution_count = [], None
    for key in ("execution", "collapsed", "scrolled", "jupyter", "hint"):
        new.metadata.pop(key, None)
    return new


def _answer(cell: Any) -> Any:
    """A solution cell for the solutions notebook: cleaned, without its `solution` tag."""
    answer = _clean(cell)
    answer.metadata["tags"] = [t for t in _tags(cell) if t.strip().lower() != SOLUTION]
    if not answer.metadata["tags"]:
        answer.metadata.pop("tags")
    return answer


def hint_of(cell: Any) -> tuple[str | None, str]:
    """(the hint, the solution's source without a hint comment line)."""
    hint = cell.metadata.get("hint")
    source = cell.source
    if isinstance(hint, str) and hint.strip():
        return hint.strip(), source
    first, _, rest = source.partition("\n")
    match = _HINT_LINE.match(first.strip())
    if match:
        return match.group(1), rest.lstrip("\n")
    return None, source


def _hint_comment(hint: str) -> str:
    """`# Hint: ...`, every line of a hint of several lines a comment too."""
    lines = [line.rstrip() for line in hint.strip().splitlines()]
    return "\n".join([f"# Hint: {lines[0]}", *(f"#   {line}".rstrip() for line in lines[1:])])


def make_handout(nb: Any) -> Handout:
    """The student copy and the solutions notebook of an instructor's notebook (nbformat v4)."""
    import nbformat

    student_cells: list[Any] = []
    solution_cells: list[Any] = []
    group: list[Any] = []
    exercises = dropped = 0

    def close_group() -> None:
        nonlocal exercises
        if not group:
            return
        exercises += 1
        hints = [h for h in (hint_of(c)[0] for c in group) if h]
        text = "\n".join(_hint_comment(h) for h in hints) if hints else f"# {DEFAULT_HINT}"
        cell = nbformat.v4.new_code_cell(text + "\n", metadata={"tags": [EXERCISE]})
        cell["id"] = f"exercise-{exercises}"
        student_cells.append(cell)
        for c in group:
            answer = _answer(c)
            answer.source = hint_of(c)[1]
            solution_cells.append(answer)
        group.clear()

    for cell in nb.cells:
        if _has(cell, SOLUTION) and cell.cell_type == "code":
            group.append(cell)
            continue
        close_group()
        if _has(cell, SOLUTION):  # an answer written out (markdown): to the solutions only
            solution_cells.append(_answer(cell))
            continue
        if _has(cell, INSTRUCTOR):
            dropped += 1
            continue
        student_cells.append(_clean(cell))
        solution_cells.append(_clean(cell))
    close_group()

    metadata = {k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")}
    student = nbformat.v4.new_notebook(cells=student_cells, metadata=copy.deepcopy(metadata))
    titles = (c.source.strip().splitlines() for c in nb.cells if c.cell_type == "markdown")
    title = next((lines[0].lstrip("# ") for lines in titles if lines), "")
    intro = nbformat.v4.new_markdown_cell(f"# Solutions: {title}".rstrip(": "))
    intro["id"] = "solutions-title"
    solutions = nbformat.v4.new_notebook(cells=[intro, *solution_cells], metadata=copy.deepcopy(metadata))
    for made in (student, solutions):
        made.nbformat, made.nbformat_minor = 4, max(5, int(nb.get("nbformat_minor", 5)))
        nbformat.validate(made)
    return Handout(student, solutions, exercises, dropped)


def _read(path: str | Path) -> Any:
    """A notebook, checked against the nbformat schema; anything else is one `HandoutError`."""
    try:
        import nbformat
    except ModuleNotFoundError:
        raise HandoutError(
            "Handouts need nbformat; install it with pip install 'oxen_magic[demo]'."
        ) from None
    try:
        with warnings.catch_warnings():  # e.g. "cell ids missing": the schema check below decides
            warnings.simplefilter("ignore")
            nb = nbformat.read(str(path), as_version=4)
            nbformat.validate(nb)
    except OSError as exc:
        raise HandoutError(f"Cannot read {path} ({exc.strerror or exc}); check the file name.") from None
    except Exception as exc:  # nbformat raises several kinds for a file that is not a notebook
        what = (
            "its JSON is damaged" if type(exc).__name__ == "NotJSONError" else "a field is missing or wrong"
        )
        raise HandoutError(
            f"{path} is not a notebook ({what}); give an .ipynb file saved by Jupyter."
        ) from None
    return nb


def _same(a: str | Path, b: str | Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def write_handout(source: str | Path, out: str | Path, solutions: str | Path | None = None) -> Handout:
    """Read `source`, write the student copy to `out` (and the solutions, when asked)."""
    import nbformat

    if _same(out, source) or (solutions is not None and _same(solutions, source)):
        raise HandoutError(f"The handout would overwrite {source}; write it to another file with --out.")
    if solutions is not None and _same(out, solutions):
        raise HandoutError(
            f"--out and --solutions are the same file ({out}); the answers would be in the student copy, "
            "so give two different files."
        )
    nb = _read(source)
    try:
        made = make_handout(nb)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise HandoutError(
            f"{source} has a cell this tool cannot read ({type(exc).__name__}); open and save it in Jupyter."
        ) from None
    leaks = audit(nb, made.student)
    if leaks:  # by construction this never happens; a bug must not publish an answer
        raise HandoutError(f"Refusing to write {out}: it would hold an answer ({leaks[0]}).")
    try:
        for path, notebook in ((out, made.student), (solutions, made.solutions)):
            if path is not None:
                write_text_atomic(path, nbformat.writes(notebook) + "\n")
    except OSError as exc:
        raise HandoutError(f"Cannot write {path} ({exc.strerror or exc}); choose another file.") from None
    return made


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if len(line.strip()) >= _AUDIT_MIN]


def _output_text(cell: Any) -> str:
    """What a cell printed (streams, plain text): a grid's HTML is markup any grid shares."""
    parts: list[str] = []
    for out in cell.get("outputs", []) or []:
        parts.append(str(out.get("text", "")))
        value = (out.get("data") or {}).get("text/plain", "")
        parts.append(value if isinstance(value, str) else "".join(map(str, value)))
    return "\n".join(parts)


def audit(instructor: Any, student: Any) -> list[str]:
    """Every line of a solution cell (source or output) found in `student`, as
    `cell <id>: '<line>'`; lines the instructor's other cells also hold, and hint lines, do not
    count (an import both share gives nothing away)."""
    solutions = [c for c in instructor.cells if _has(c, SOLUTION)]
    shared: set[str] = set()
    for cell in instructor.cells:
        if not _has(cell, SOLUTION):
            shared.update(_lines(cell.source))
    student_lines: set[str] = set()
    student_text: list[str] = []
    for cell in student.cells:
        student_lines.update(_lines(cell.source))
        student_text.append(_output_text(cell))
        student_text.append(json.dumps(cell.get("metadata", {}), ensure_ascii=False))
    blob = "\n".join(student_text)
    found: list[str] = []
    for cell in solutions:
        hint, answer = hint_of(cell)
        published = set(_lines(_hint_comment(hint))) if hint else set()
        for line in dict.fromkeys(_lines(answer) + _lines(_output_text(cell))):
            if line in shared or line in published:
                continue
            if line in student_lines or line in blob:
                found.append(f"cell {cell.get('id', '?')}: {line[:100]!r}")
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m oxen_magic handout",
        description="Turn an instructor's notebook into a student copy (solutions replaced by hints).",
    )
    parser.add_argument("notebook", help="the instructor's notebook")
    parser.add_argument("--out", help="where to write the student copy")
    parser.add_argument("--solutions", help="where to write the solutions notebook")
    parser.add_argument(
        "--audit",
        metavar="STUDENT",
        help="list what of the solution cells reached this student copy (exit 1)",
    )
    args = parser.parse_args(argv)
    if (args.out is None) == (args.audit is None):
        parser.error("give --out FILE to make a handout, or --audit STUDENT.ipynb to check one")
    try:
        if args.audit is not None:
            leaks = audit(_read(args.notebook), _read(args.audit))
            for leak in leaks:
                print(leak)
            if leaks:
                print(
                    f"{len(leaks)} line(s) of {args.notebook}'s answers are in {args.audit}.", file=sys.stderr
                )
                return 1
            print(f"No answer of {args.notebook} is in {args.audit}.")
            return 0
        made = write_handout(args.notebook, args.out, args.solutions)
    except HandoutError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"Wrote {args.out}" + (f" and {args.solutions}" if args.solutions else "") + f": {made}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
