"""Handouts (issue 14, item 5) and the workshop notebook they are made from (item 9).

The committed student copy and solutions must be exactly what the handout command makes from
notebooks/workshop.ipynb today; the student copy must hold no answer and no output; the check
cells must find a student's grid whatever it was named; and the budget table must be what the
notebooks make when run (notebooks/budget.py measures it against the local hub).
"""

from __future__ import annotations

import ast
import contextlib
import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from oxen_magic.exports.handout import DEFAULT_HINT, HandoutError, make_handout, write_handout
from oxen_magic.exports.handout import main as handout_main

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
WORKSHOP = NOTEBOOKS / "workshop.ipynb"
STUDENT = NOTEBOOKS / "workshop_student.ipynb"
SOLUTIONS = NOTEBOOKS / "workshop_solutions.ipynb"
COMMAND = "python -m oxen_magic handout notebooks/workshop.ipynb --out notebooks/workshop_student.ipynb "
COMMAND += "--solutions notebooks/workshop_solutions.ipynb"


def workshop() -> Any:
    return nbformat.read(str(WORKSHOP), as_version=4)


def test_the_committed_handout_is_up_to_date(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "oxen_magic", "handout", str(WORKSHOP), "--out", str(tmp_path / "s.ipynb"),
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
    # the solutions notebook is the student copy with the answers in place (it runs top to bottom)
    solved = nbformat.read(str(SOLUTIONS), as_version=4)
    student_code = [c.source for c in student.cells if c.cell_type == "code"]
    answers = [c.source for c in solved.cells if c.cell_type == "code" and c.source not in student_code]
    assert len(answers) == 6 and answers[0].startswith("%%oxenimage --seed 1..6 --cols 3")
    assert [c.id for c in solved.cells if c.id in {x.id for x in student.cells}] == [
        c.id for c in student.cells if not c.id.startswith("exercise-")
    ]
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
    assert answers == [
        "%%oxenimage --seed 1\na cat",
        "print(len(grid))",
        "x = 1",
        "y = 2",
    ]  # no instructor cell
    headings = [c.source for c in made.solutions.cells if c.cell_type == "markdown"]
    assert headings == ["# Solutions: Title", "# Title", "### Exercise A", "### Exercise B", "### Exercise C"]
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
    assert values["GUESSED"] == measured["guessed"], stale
    # Oxen documents only these prices; every other one is marked a guess in the table
    assert "flux-2-dev" not in values["GUESSED"] and "nano-banana" in values["GUESSED"]
    output = "".join(o.get("text", "") for o in cell.outputs)
    assert "guessed price(s)" in output and "nano-banana" in output
    assert sum(sum(m.values()) for m in measured["images"].values()) > 50


# -- handouts that cannot leak (issue 19, item 8) ------------------------------------------------


def _nb(*cells: Any) -> Any:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_markdown_cell("### Exercise"),
        *cells,
    ]
    return nb


def _handout(tmp_path: Path, nb: Any, *extra: str) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "in.ipynb"
    nbformat.write(nb, str(source))
    return _command(str(source), *extra)


def _command(*argv: str) -> subprocess.CompletedProcess[str]:
    """`python -m oxen_magic handout ARGV` run in this process: its exit code and what it printed.

    (Each new process would pay ~1.5 s of CPU importing nbformat's validator; the command as a
    process is run by test_the_committed_handout_is_up_to_date and test_cli.)"""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = handout_main(list(argv))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(list(argv), code, out.getvalue(), err.getvalue())


def test_only_a_hint_line_is_published_never_another_first_comment() -> None:
    made = make_handout(
        _nb(
            nbformat.v4.new_code_cell("# answer: 42 seeds\nx = 42", metadata={"tags": ["solution"]}),
            nbformat.v4.new_markdown_cell("### Next"),
            nbformat.v4.new_code_cell("#  HINT :  try len()\ny = len([1])", metadata={"tags": ["solution"]}),
        )
    )
    exercises = [c.source for c in made.student.cells if c.cell_type == "code"]
    assert exercises == [f"# {DEFAULT_HINT}\n", "# Hint: try len()\n"]
    assert "answer: 42" not in nbformat.writes(made.student)
    answers = [c.source for c in made.solutions.cells if c.cell_type == "code"]
    assert answers == ["# answer: 42 seeds\nx = 42", "y = len([1])"]  # the comment stays with its answer


def test_a_hint_of_several_lines_stays_a_comment() -> None:
    hint = "first use --seed\nthen --cols 3\n\nand run it"
    made = make_handout(
        _nb(
            nbformat.v4.new_code_cell(
                "%%oxenimage --seed 1..6 --cols 3\na boat", metadata={"tags": ["solution"], "hint": hint}
            )
        )
    )
    (cell,) = [c for c in made.student.cells if c.cell_type == "code"]
    lines = cell.source.splitlines()
    assert lines[0] == "# Hint: first use --seed" and all(line.startswith("#") for line in lines), lines
    assert "then --cols 3" in cell.source and "and run it" in cell.source
    ast.parse(cell.source)  # a cell of comments only: nothing runs


def test_tags_are_matched_whatever_their_case() -> None:
    made = make_handout(
        _nb(
            nbformat.v4.new_code_cell("secret_answer = 1", metadata={"tags": ["Solution"]}),
            nbformat.v4.new_markdown_cell("The answer explained", metadata={"tags": ["SOLUTION"]}),
            nbformat.v4.new_code_cell("print('teacher only')", metadata={"tags": ["INSTRUCTOR"]}),
            nbformat.v4.new_code_cell("print('for all')", metadata={"tags": ["Other"]}),
        )
    )
    student = nbformat.writes(made.student)
    assert (
        "secret_answer" not in student and "The answer explained" not in student and "teacher" not in student
    )
    assert "print('for all')" in student and (made.exercises, made.dropped) == (1, 1)
    solutions = nbformat.writes(made.solutions)
    assert "secret_answer = 1" in solutions and "The answer explained" in solutions
    assert all("solution" not in str(c.metadata.get("tags", [])).lower() for c in made.solutions.cells)


def test_out_and_solutions_must_differ(tmp_path: Path) -> None:
    nb = _nb(nbformat.v4.new_code_cell("secret_answer = 1", metadata={"tags": ["solution"]}))
    result = _handout(
        tmp_path, nb, "--out", str(tmp_path / "x.ipynb"), "--solutions", str(tmp_path / "x.ipynb")
    )
    assert result.returncode == 2 and not (tmp_path / "x.ipynb").exists()
    assert result.stderr.count("\n") == 1 and "--out and --solutions are the same file" in result.stderr
    # the same file by another name (a symlink) is the same file
    (tmp_path / "real.ipynb").write_text("{}")
    (tmp_path / "link.ipynb").symlink_to(tmp_path / "real.ipynb")
    result = _handout(
        tmp_path, nb, "--out", str(tmp_path / "link.ipynb"), "--solutions", str(tmp_path / "real.ipynb")
    )
    assert result.returncode == 2 and "the same file" in result.stderr
    assert (tmp_path / "real.ipynb").read_text() == "{}"


def _broken(tmp_path: Path) -> dict[str, str]:
    good = json.loads(
        nbformat.writes(_nb(nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["solution"]})))
    )
    no_source = copy.deepcopy(good)
    del no_source["cells"][2]["source"]
    no_cells = {k: v for k, v in good.items() if k != "cells"}
    empty_first = copy.deepcopy(good)
    empty_first["cells"][0]["source"] = ""
    return {
        "bad JSON": '{"cells": [',
        "a list": "[]",
        "no cells": json.dumps(no_cells),
        "a cell without source": json.dumps(no_source),
        "cells not a list": json.dumps({**good, "cells": 3}),
        "an empty first markdown cell": json.dumps(empty_first),
    }


@pytest.mark.parametrize("case", list(_broken(Path())))
def test_a_malformed_notebook_is_one_sentence_and_exit_2(tmp_path: Path, case: str) -> None:
    source = tmp_path / "in.ipynb"
    source.write_text(_broken(tmp_path)[case])
    result = _command(
        str(source), "--out", str(tmp_path / "s.ipynb"), "--solutions", str(tmp_path / "a.ipynb")
    )
    if case == "an empty first markdown cell":  # a valid notebook: it works, titled by the next heading
        assert result.returncode == 0, result.stderr
        assert "# Solutions: Exercise" in (tmp_path / "a.ipynb").read_text()
        return
    assert result.returncode == 2, (case, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "is not a notebook" in result.stderr and not (tmp_path / "s.ipynb").exists()


def test_outputs_are_written_whole_and_never_through_a_symlink(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    out = tmp_path / "student.ipynb"
    out.symlink_to(precious)
    nb = _nb(nbformat.v4.new_code_cell("secret_answer = 1", metadata={"tags": ["solution"]}))
    result = _handout(tmp_path, nb, "--out", str(out))
    # refused in one sentence, as every file the project writes (oxen_magic/atomic.py)
    assert result.returncode == 2 and "symbolic link" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert precious.read_text() == "keep me" and out.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "in.ipynb",
        "precious.txt",
        "student.ipynb",
    ]  # no temp left


def test_audit_lists_what_of_a_solution_reached_the_student_file(tmp_path: Path) -> None:
    assert _command(str(WORKSHOP), "--audit", str(STUDENT)).returncode == 0  # the committed handout is clean
    nb = _nb(
        nbformat.v4.new_code_cell("import json", metadata={"tags": ["instructor"]}),
        nbformat.v4.new_code_cell(
            "# Hint: count them\nimport json\nanswer = 6 * 7", metadata={"tags": ["solution"]}
        ),
    )
    nb.cells[-1].outputs = [nbformat.v4.new_output("stream", text="the answer is 42\n")]
    nbformat.write(nb, str(tmp_path / "in.ipynb"))
    student = _nb(nbformat.v4.new_code_cell("# Hint: count them\nimport json\n"))
    nbformat.write(student, str(tmp_path / "clean.ipynb"))
    result = _command(str(tmp_path / "in.ipynb"), "--audit", str(tmp_path / "clean.ipynb"))
    assert result.returncode == 0 and "No answer" in result.stdout  # a hint and a shared import are not leaks
    student.cells.append(nbformat.v4.new_code_cell("  answer = 6 * 7"))
    student.cells.append(nbformat.v4.new_markdown_cell("x", metadata={"note": "the answer is 42"}))
    nbformat.write(student, str(tmp_path / "leaky.ipynb"))
    result = _command(str(tmp_path / "in.ipynb"), "--audit", str(tmp_path / "leaky.ipynb"))
    assert result.returncode == 1
    assert "'answer = 6 * 7'" in result.stdout and "'the answer is 42'" in result.stdout
    assert "2 line(s)" in result.stderr
    assert _command(str(tmp_path / "in.ipynb")).returncode == 2  # neither --out nor --audit


def test_budget_prices_say_which_are_guesses(hub: Any, oxen_env: Path) -> None:
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        import budget
    finally:
        sys.path.remove(str(NOTEBOOKS))
    made = {"a.ipynb": {"flux-2-dev": 2, "nano-banana": 1}}
    hub_prices = {"flux-2-dev": 0.025, "nano-banana": 0.039}
    prices, guessed, source = budget.price(made, hub_prices, None)
    assert prices == hub_prices and guessed == ["nano-banana"] and "guesses" in source
    real = budget.api_prices(hub.url)  # an API's model list (a model read): its own pricing
    assert real["flux-2-dev"] == 0.025 and "nano-banana" in real
    prices, guessed, source = budget.price(made, hub_prices, {"flux-2-dev": 0.03})
    assert prices == {"flux-2-dev": 0.03, "nano-banana": 0.039} and guessed == ["nano-banana"]
    assert not [r for r in hub.requests if r.method != "GET"]
