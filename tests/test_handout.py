"""Handouts (issue 14, item 5) and the workshop notebook they are made from (item 9).

The committed student copy and solutions must be exactly what the handout command makes from
notebooks/workshop.ipynb today; the student copy must hold no answer and no output; the check
cells must find a student's grid whatever it was named; and the budget table must be what the
notebooks make when run (notebooks/budget.py measures it against the local hub).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.utils.capture import capture_output

from oxen_magic.handout import DEFAULT_HINT, HandoutError, make_handout, write_handout

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
WORKSHOP = NOTEBOOKS / "workshop.ipynb"
STUDENT = NOTEBOOKS / "workshop_student.ipynb"
SOLUTIONS = NOTEBOOKS / "workshop_solutions.ipynb"
COMMAND = "python -m oxen_magic.handout notebooks/workshop.ipynb --out notebooks/workshop_student.ipynb "
COMMAND += "--solutions notebooks/workshop_solutions.ipynb"


def workshop() -> Any:
    return nbformat.read(str(WORKSHOP), as_version=4)


def test_the_committed_handout_is_up_to_date(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "oxen_magic.handout", str(WORKSHOP), "--out", str(tmp_path / "s.ipynb"),
         "--solutions", str(tmp_path / "a.ipynb")],
        capture_output=True, text=True, check=False, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Wrote ") and "4 exercise(s)" in result.stdout
    for made, committed in ((tmp_path / "s.ipynb", STUDENT), (tmp_path / "a.ipynb", SOLUTIONS)):
        assert made.read_text() == committed.read_text(), f"{committed.name} is stale; run: {COMMAND}"


def test_the_student_copy_holds_no_answer_no_output_and_no_instructor_cell() -> None:
    nb = workshop()
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    instructor = [c for c in nb.cells if "instructor" in c.metadata.get("tags", [])]
    assert len([c for c in solutions if c.cell_type == "code"]) == 6 and len(instructor) >= 4
    assert len([c for c in solutions if c.cell_type == "markdown"]) == 2  # answers explained
    student_text = STUDENT.read_text()
    student = nbformat.reads(student_text, as_version=4)
    elsewhere = "\n".join(c.source for c in nb.cells if c not in solutions)
    for cell in solutions:
        # every line of an answer (but the hint, and lines other cells also hold) is gone
        for line in cell.source.splitlines():
            if line.strip() and not line.startswith("# Hint") and line not in elsewhere:
                assert json.dumps(line)[1:-1] not in student_text, line
    for cell in instructor:
        assert cell.source.splitlines()[0] not in student_text
    assert all(
        not c.get("outputs") and c.get("execution_count") is None
        for c in student.cells
        if c.cell_type == "code"
    )
    assert not any("jupyter" in c.metadata or "solution" in c.metadata.get("tags", []) for c in student.cells)
    exercises = [c for c in student.cells if "exercise" in c.metadata.get("tags", [])]
    assert [c.id for c in exercises] == [f"exercise-{n}" for n in range(1, 5)]
    assert all(c.source.startswith("# Hint: ") for c in exercises)
    assert "--seed 1..6" in exercises[0].source  # the hint, from the solution's metadata
    # the answers, in order, in the solutions notebook
    answers = [c.source for c in nbformat.read(str(SOLUTIONS), as_version=4).cells if c.cell_type == "code"]
    assert len(answers) == 6 and answers[0].startswith("%%oxenimage --seed 1..6 --cols 3")
    assert "`1..8:2` is seeds 1, 3, 5 and 7" in SOLUTIONS.read_text()
    assert "`1..8:2` is seeds 1, 3, 5 and 7" not in student_text
    assert not any(a.startswith("# Hint") for a in answers)  # a hint comment is not part of the answer


def test_hints_from_metadata_a_comment_line_or_the_default(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_markdown_cell("### Exercise A"),
        nbformat.v4.new_code_cell(
            "%%oxenimage --seed 1\na cat", metadata={"tags": ["solution"], "hint": "one seed"}
        ),
        nbformat.v4.new_markdown_cell("### Exercise B"),
        nbformat.v4.new_code_cell("# Hint: use len()\nprint(len(grid))", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["solution"]}),  # same exercise
        nbformat.v4.new_markdown_cell("### Exercise C"),
        nbformat.v4.new_code_cell("y = 2", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("print('teacher only')", metadata={"tags": ["instructor"]}),
    ]
    made = make_handout(nb)
    assert (made.exercises, made.dropped) == (3, 1)
    exercises = [c.source for c in made.student.cells if c.cell_type == "code"]
    assert exercises == ["# Hint: one seed\n", "# Hint: use len()\n", f"# {DEFAULT_HINT}\n"]
    answers = [c.source for c in made.solutions.cells if c.cell_type == "code"]
    assert answers == ["%%oxenimage --seed 1\na cat", "print(len(grid))", "x = 1", "y = 2"]
    headings = [c.source for c in made.solutions.cells if c.cell_type == "markdown"]
    assert headings == ["# Solutions: Title", "### Exercise A", "### Exercise B", "### Exercise C"]
    path = tmp_path / "in.ipynb"
    nbformat.write(nb, str(path))
    first = write_handout(path, tmp_path / "out.ipynb")
    assert first.exercises == 3
    again = (tmp_path / "out.ipynb").read_text()
    write_handout(path, tmp_path / "out.ipynb")
    assert (tmp_path / "out.ipynb").read_text() == again  # the same notebook, the same handout


def test_bad_input_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(HandoutError, match=r"Cannot read .*missing\.ipynb .*check the file name"):
        write_handout(tmp_path / "missing.ipynb", tmp_path / "out.ipynb")
    (tmp_path / "junk.ipynb").write_text("not a notebook")
    with pytest.raises(HandoutError, match="is not a notebook"):
        write_handout(tmp_path / "junk.ipynb", tmp_path / "out.ipynb")
    with pytest.raises(HandoutError, match="would overwrite"):
        write_handout(WORKSHOP, WORKSHOP)


def _check_cells() -> list[str]:
    return [
        c.source for c in workshop().cells if c.source.lstrip().startswith(("boats = oxen", "grid = oxen"))
    ]


def test_check_cells_find_the_grid_whatever_the_student_named_it(shell: Any) -> None:
    ex1_check, ex2_check, *_ = _check_cells()
    shell.run_cell("import oxen_magic")  # the setup cell's import
    with capture_output() as out:
        shell.run_cell("%%oxenimage --seed 1..6 --cols 3 --out my_boats_grid\na paper boat on a pond")
        shell.run_cell("%%oxenimage --model z-image-turbo --seed 9 --out something_else\na lighthouse")
        shell.run_cell(ex1_check)  # finds the boats by prompt, though a later grid exists
    assert "position 4 is seed 5" in out.stdout, out.stdout + out.stderr
    with capture_output() as out:
        shell.run_cell("%%oxenimage --seed 1,2\na cat in the snow\n---\na cat in a library")  # no --out
        shell.run_cell(ex2_check)
    assert "4 images; prompts: ['a cat in a library', 'a cat in the snow']" in out.stdout, out.stdout


def test_the_budget_table_is_what_the_notebooks_make() -> None:
    cell = next(c for c in workshop().cells if "budget" in c.metadata.get("tags", []))
    values = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(cell.source).body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id.isupper()
    }
    result = subprocess.run(
        [sys.executable, str(NOTEBOOKS / "budget.py")],
        capture_output=True, text=True, check=False, timeout=600,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("OXEN_")}, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    measured = json.loads(result.stdout)
    stale = "stale: run `python notebooks/budget.py --write`, then rerun notebooks/workshop.ipynb"
    assert values["IMAGES"] == measured["images"], stale
    assert values["PRICES"] == measured["prices"], stale
    assert sum(sum(m.values()) for m in measured["images"].values()) > 50
