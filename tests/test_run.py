"""The Run (issue 21 item 1): `Session.prepare(spec)` checks everything and sends nothing,
`run.execute()` sends, fills the grid, bills and exports; every front end takes that one path.

Against the local hub (loopback): prepare sends no generate request; execute fills the results
prepare laid out; a dry run sends nothing; a budget the images would pass is refused at prepare;
a run dropped unrun gives its hold back; the magic, `generate()`, the command line and the panel
send the same requests for the same spec through `Session.prepare` and `Run.execute`. Then the
one mapping of problems to sentences (`problems.explain`) and the pieces that now say what they
did instead of writing into the results (the ledger's budget note, the exports).
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import run_cell

import oxen_magic
from oxen_magic.core.errors import AuthError, MissingKeyError, NetworkError, UsageProblem
from oxen_magic.exports.exports import export
from oxen_magic.frontends import cli
from oxen_magic.frontends.problems import STOPPED_BEFORE, STOPPED_LOOKUP, explain
from oxen_magic.localhub import LocalHub
from oxen_magic.network.client import OxenClient
from oxen_magic.planning.options import build_spec
from oxen_magic.session.run import LOCAL_HINT, Run
from oxen_magic.session.session import Session, current_session

PROMPT = "a paper boat on a pond"
DEV, TURBO = "flux-2-dev", "z-image-turbo"  # $0.025 and $0.002 per image on the local hub


def bodies(hub: LocalHub) -> list[str]:
    """The generate requests the hub received, as comparable JSON (order aside)."""
    return sorted(json.dumps(call.body, sort_keys=True) for call in hub.generate_calls())


# -- prepare, then execute ------------------------------------------------------------------------
def test_prepare_sends_nothing_and_execute_fills_the_grid_it_laid_out(oxen_env: Path, hub: LocalHub) -> None:
    spec = current_session().spec(f"--model {DEV},{TURBO} --seed 1..2", PROMPT)
    run = current_session().prepare(spec)
    assert hub.generate_calls() == []  # the model reads only
    grid = run.results
    assert len(grid) == 4 and [i.status for i in grid] == ["pending"] * 4
    assert grid.to_send == list(grid.items) and grid.host == hub.url
    assert run.results is grid and run.plan is grid.plan and tuple(run.spec.seeds) == (1, 2)
    assert run.execute() is grid
    assert grid.done == 4 and len(hub.generate_calls()) == 4
    assert oxen_magic.spend().images == 4  # billed through the session's ledger
    with pytest.raises(RuntimeError, match="executed already"):
        run.execute()
    assert len(hub.generate_calls()) == 4


def test_a_second_prepare_sees_the_cache_and_sends_only_what_is_new(oxen_env: Path, hub: LocalHub) -> None:
    session = current_session()
    session.prepare(session.spec(f"--model {TURBO} --seed 1..2", PROMPT)).execute()
    run = session.prepare(session.spec(f"--model {TURBO} --seed 1..3", PROMPT))
    assert [i.seed for i in run.results.to_send or []] == [3]
    run.execute()
    assert run.results.done == 3 and len(hub.generate_calls()) == 3


def test_a_dry_run_sends_nothing_and_says_what_it_would_cost(oxen_env: Path, hub: LocalHub) -> None:
    session = current_session()
    run = session.prepare(session.spec(f"--model {DEV} --seed 1..3 --dry-run", PROMPT))
    assert [i.status for i in run.results] == ["planned"] * 3
    assert run.execute() is run.results
    assert hub.generate_calls() == [] and oxen_magic.spend().images == 0
    assert any(n.startswith("Dry run: 3 image(s) planned (est. $0.075)") for n in run.results.notes)


def test_a_budget_the_images_would_pass_is_refused_at_prepare(oxen_env: Path, hub: LocalHub) -> None:
    session = current_session()
    session.configure(max_spend=0.05)
    with pytest.raises(UsageProblem, match=r"^These 3 new image\(s\) would cost about \$0\.075"):
        session.prepare(session.spec(f"--model {DEV} --seed 1..3", PROMPT))
    assert hub.generate_calls() == []
    assert oxen_magic.spend().held == 0


def test_a_run_holds_its_estimate_until_it_ends_or_is_dropped(oxen_env: Path, hub: LocalHub) -> None:
    session = current_session()
    session.configure(max_spend=1.0)
    run = session.prepare(session.spec(f"--model {DEV} --seed 1..2", PROMPT))
    assert oxen_magic.spend().held == pytest.approx(0.05)
    del run
    gc.collect()
    assert oxen_magic.spend().held == 0  # dropped unrun: nothing is kept from the next run
    run = session.prepare(session.spec(f"--model {DEV} --seed 1..2", PROMPT))
    run.execute()
    spent = oxen_magic.spend()
    assert spent.held == 0 and spent.total == pytest.approx(0.05) and spent.left == pytest.approx(0.95)


def test_a_run_without_a_session_charges_nothing(hub: LocalHub, tmp_path: Path) -> None:
    client = OxenClient(hub.url, api_key=hub.api_key)
    try:
        run = Run.prepare(build_spec(f"--model {TURBO} --seed 1,2", PROMPT), client)
        assert run.ledger is None and hub.generate_calls() == []
        assert run.execute().done == 2 and len(hub.generate_calls()) == 2
    finally:
        client.close()
    assert oxen_magic.spend().images == 0


def test_a_missing_key_is_refused_at_prepare_naming_the_local_hub(
    oxen_env: Path, hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OXEN_API_KEY")
    session = current_session()
    with pytest.raises(MissingKeyError) as info:
        session.prepare(session.spec(f"--model {TURBO} --seed 1", PROMPT))
    assert str(info.value).endswith(LOCAL_HINT) and hub.generate_calls() == []


def test_the_runs_exports_are_written_into_its_results(oxen_env: Path, hub: LocalHub, tmp_path: Path) -> None:
    session = current_session()
    folder = tmp_path / "out"
    run = session.prepare(session.spec(f"--model {TURBO} --seed 1,2 --save {folder}", PROMPT))
    run.execute()
    assert len(list(folder.glob("*.png"))) == 2
    assert any(note.startswith("Saved 2") for note in run.results.notes), run.results.notes
    assert run.results.export_failures == [] and not run.results.export_interrupted


# -- one path for every front end -----------------------------------------------------------------
@pytest.fixture
def path_taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Which steps ran: each `Session.prepare` and `Run.execute` call, in order."""
    steps: list[str] = []
    prepare, execute = Session.prepare, Run.execute

    def spied_prepare(self: Session, spec: Any) -> Run:
        steps.append("prepare")
        return prepare(self, spec)

    def spied_execute(self: Run, *args: Any, **kwargs: Any) -> Any:
        steps.append("execute")
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(Session, "prepare", spied_prepare)
    monkeypatch.setattr(Run, "execute", spied_execute)
    yield steps


def test_the_front_ends_send_the_same_requests_through_one_path(
    shell: Any, hub: LocalHub, tmp_path: Path, path_taken: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    line = f"--model {DEV},{TURBO} --seed 1..2 --steps 4 --no-cache"
    sent: dict[str, list[str]] = {}

    _, error = run_cell(shell, line, PROMPT)
    assert error is None
    sent["magic"] = bodies(hub)

    hub.reset()
    oxen_magic.generate(PROMPT, model=[DEV, TURBO], seed=range(1, 3), steps=4, no_cache=True)
    sent["generate"] = bodies(hub)

    hub.reset()
    assert cli.main([PROMPT, *line.split(), "--save", str(tmp_path / "cli")]) == 0
    sent["cli"] = bodies(hub)

    hub.reset()
    from oxen_magic.frontends.panel import Panel

    panel = Panel(shell, line=line)
    panel.prompt.value = PROMPT
    assert panel.generate() and panel.wait(30)
    sent["panel"] = bodies(hub)

    assert len(sent["magic"]) == 4 and all(got == sent["magic"] for got in sent.values()), sent
    assert path_taken == ["prepare", "execute"] * 4
    capsys.readouterr()


# -- one sentence for each problem ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("exc", "sentence", "code"),
    [
        (UsageProblem("Unknown option --zzz; see %%oxenimage? for the options."), None, 2),
        (AuthError("The API refused the key (HTTP 401).", 401), "The API refused the key (HTTP 401).", 2),
        (NetworkError("Could not reach the API."), "Could not reach the API.", 1),
        (KeyboardInterrupt(), STOPPED_LOOKUP, 130),
    ],
)
def test_explain_gives_one_sentence_and_the_exit_status(
    exc: BaseException, sentence: str | None, code: int
) -> None:
    problem = explain(exc)
    assert problem is not None and problem.exit_code == code
    assert problem.sentence == (sentence or str(exc))


def test_explain_names_the_command_and_leaves_bugs_alone() -> None:
    got = explain(UsageProblem("see %%oxenimage? for the options."), program="oxen-image")
    assert got is not None and got.sentence == "see oxen-image --help for the options."
    stopped = explain(KeyboardInterrupt(), stopped=STOPPED_BEFORE)
    assert stopped is not None and stopped.sentence == STOPPED_BEFORE
    assert explain(ZeroDivisionError("a bug")) is None


# -- the pieces say what they did; the run writes it -----------------------------------------------
def test_the_ledger_returns_its_note_and_writes_no_results(tmp_path: Path) -> None:
    from oxen_magic.session.ledger import Ledger

    ledger = Ledger(tmp_path)
    spec = build_spec("--model some-model --seed 1,2", PROMPT)
    from oxen_magic.planning.plan import make_plan
    from oxen_magic.results.results import Results

    grid = Results(make_plan(spec, {"some-model": None}))
    before = list(grid.notes)
    hold, note = ledger.check_budget({}, grid.items, 1.0)
    assert hold is None and note is not None and note.startswith("2 new image(s) have no listed price")
    assert grid.notes == before


def test_export_says_what_it_wrote_and_leaves_the_results_alone(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    session = current_session()
    grid = session.prepare(session.spec(f"--model {TURBO} --seed 1", PROMPT)).execute()
    notes = list(grid.notes)
    done = export(grid, build_spec(f"--save {tmp_path / 'again'}", PROMPT))
    assert done.failures == [] and not done.interrupted and len(done.notes) == 1
    assert grid.notes == notes and grid.export_failures == []


def test_execute_runs_in_any_thread(oxen_env: Path, hub: LocalHub) -> None:
    """The panel executes in its own thread: the run carries what it needs."""
    session = current_session()
    run = session.prepare(session.spec(f"--model {TURBO} --seed 1..3", PROMPT))
    worker = threading.Thread(target=run.execute)
    worker.start()
    worker.join(30)
    assert not worker.is_alive() and run.results.done == 3


# -- the pipeline over a fake network (tests/fakes.py): what prepare and execute send, in order -----
def test_over_a_fake_network_prepare_only_reads_and_execute_sends(tmp_path: Path) -> None:
    import base64

    from fakes import FakeTransport, json_answer, png

    from oxen_magic.network.cache import Cache
    from oxen_magic.network.model_info import bundled_catalogue

    model = "z-image-turbo"
    described = next(dict(m) for m in bundled_catalogue() if m["id"] == model)
    picture = base64.b64encode(png()).decode()
    fake = (
        FakeTransport()
        .on("GET", f"/api/ai/models/{model}", json_answer(described))
        .on("POST", "/api/ai/images/generate", json_answer({"images": [{"b64_json": picture}]}))
    )
    client = OxenClient("https://api.pipeline.invalid", "sk-pipeline-fake-KEY", transport=fake)
    spec = build_spec(f"--model {model} --seed 1..2", "a red cube")
    run = Run.prepare(spec, client, Cache(tmp_path / "cache"))
    assert [(c.method, c.path) for c in fake.calls] == [("GET", f"/api/ai/models/{model}")]
    assert [i.seed for i in run.results.to_send or []] == [1, 2]
    results = run.execute()
    posts = [c for c in fake.calls if c.method == "POST"]
    assert sorted(c.json_body["seed"] for c in posts) == [1, 2] and results.done == 2
    again = Run.prepare(spec, client, Cache(tmp_path / "cache"))
    assert again.results.to_send == []  # the cache answers both: nothing would be sent or billed
