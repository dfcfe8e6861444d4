"""The command line (`python -m oxen_magic`, installed as `oxen-image`) as a subprocess against the
local hub, and one sweep through all four front ends giving the same images and request bodies."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from support import run_cell

import oxen_magic
from oxen_magic.frontends.panel import Panel
from oxen_magic.localhub import LocalHub

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a red cube on a white background"
TURBO, DEV = "z-image-turbo", "flux-2-dev"


def cli(
    *args: str, cwd: Path, timeout: float = 60, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "oxen_magic", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def pixels(image: Image.Image) -> bytes:
    return image.convert("RGB").tobytes()


def test_cli_writes_pngs_with_parameters_and_a_contact_sheet(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    done = cli(PROMPT, "--model", f"{TURBO},{DEV}", "--seed", "1..2", "--save", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "contact-sheet.png",
        "flux-2-dev_seed-1.png",
        "flux-2-dev_seed-2.png",
        "z-image-turbo_seed-1.png",
        "z-image-turbo_seed-2.png",
    ]
    with Image.open(out / "flux-2-dev_seed-2.png") as png:
        assert json.loads(png.text["parameters"]) == {"model": DEV, "prompt": PROMPT, "seed": 2}
    assert "4/4 images" in done.stdout and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 4  # not a TTY: one plain line per image
    assert len(hub.generate_calls()) == 4
    again = cli(PROMPT, "-m", f"{TURBO},{DEV}", "-s", "1..2", "--save", "out", cwd=tmp_path)
    assert again.returncode == 0 and "4 from cache" in again.stdout and len(hub.generate_calls()) == 4
    default = cli(PROMPT, "-m", TURBO, "-s", "3", cwd=tmp_path)  # no --save: ./oxen-images
    assert default.returncode == 0 and (tmp_path / "oxen-images" / "z-image-turbo_seed-3.png").is_file()


@pytest.mark.parametrize(
    ("args", "expect"),
    [
        ((PROMPT, "--seed", "4..1"), "runs backwards"),
        ((PROMPT, "--colour", "red"), "Unknown option --colour"),
        ((PROMPT, "--model", "flux-2-devv", "-s", "1"), "Model not found"),
        ((PROMPT, "--out", "x"), "--save DIR"),
        (("--seed", "1"), "Prompt cannot be empty"),
        ((PROMPT, "--api-key", "x"), "API keys are never taken"),
    ],
)
def test_cli_bad_usage_is_one_line_and_exit_2(
    oxen_env: Path, hub: LocalHub, tmp_path: Path, args: tuple[str, ...], expect: str
) -> None:
    done = cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert expect in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert done.stderr.startswith("oxen-image: ") and "Traceback" not in done.stderr
    assert hub.generate_calls() == [] and not (tmp_path / "oxen-images").exists()


def test_cli_exit_1_when_some_failed(oxen_env: Path, hub: LocalHub, tmp_path: Path) -> None:
    hub.fail_next(1, 400)
    done = cli(PROMPT, "-m", TURBO, "-s", "1..3", "--concurrency", "1", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "failed: z-image-turbo seed" in done.stderr and "Traceback" not in done.stderr
    assert len(list((tmp_path / "oxen-images").glob("z-image-turbo_*.png"))) == 2


def test_cli_list_models_dry_run_help(oxen_env: Path, hub: LocalHub, tmp_path: Path) -> None:
    listed = cli("--list-models", cwd=tmp_path)
    assert listed.returncode == 0 and DEV in listed.stdout and "$0.025" in listed.stdout
    dry = cli(PROMPT, "-m", DEV, "-s", "1..3", "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0 and "Dry run: 3 image(s) planned (est. $0.075)" in dry.stdout
    assert hub.generate_calls() == [] and not (tmp_path / "oxen-images").exists()
    helped = cli("--help", cwd=tmp_path)
    assert (
        helped.returncode == 0 and "usage: oxen-image PROMPT" in helped.stdout and "--seed" in helped.stdout
    )
    assert cli(cwd=tmp_path).returncode == 2


def test_cli_no_key_names_both_ways_on(
    oxen_env: Path, hub: LocalHub, tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.delenv("OXEN_API_KEY")
    done = cli(PROMPT, "-s", "1", cwd=tmp_path)
    assert done.returncode == 2 and "--host local" in done.stderr and "login" in done.stderr
    local = cli(PROMPT, "-s", "1", "--host", "local", "--save", "o", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    assert len(list((tmp_path / "o").glob("*_seed-1.png"))) == 1


def test_cli_ctrl_c_keeps_what_arrived(oxen_env: Path, hub: LocalHub, tmp_path: Path) -> None:
    hub.latency = 0.5
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "oxen_magic", PROMPT, "-m", TURBO, "-s", "1..20", "--concurrency", "1"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the first image arrived
    assert first.startswith("1/20 "), first
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Interrupted: kept" in err and "Traceback" not in err
    saved = list((tmp_path / "oxen-images").glob("z-image-turbo_seed-*.png"))
    assert 1 <= len(saved) < 20
    assert (tmp_path / "oxen-images" / "contact-sheet.png").is_file()


def test_all_four_front_ends_make_the_same_images_and_requests(
    shell: Any, hub: LocalHub, tmp_path: Path
) -> None:
    """The magic, the panel, generate() and the command line, each with --no-cache so each sends."""
    words = ["--model", f"{TURBO},{DEV}", "--seed", "1..2", "--aspect-ratio", "1:1", "--no-cache"]

    def bodies() -> list[str]:
        got = sorted(json.dumps(r.body, sort_keys=True) for r in hub.generate_calls())
        hub.reset()
        return got

    _, error = run_cell(shell, " ".join(words) + " --out magic", PROMPT)
    assert error is None
    magic = shell.user_ns["magic"]
    from_magic = bodies()

    panel = Panel(shell, line=" ".join(words), prompt=PROMPT)
    try:
        assert panel.generate() and panel.wait(30)
        from_panel = bodies()
        panel_results = panel.result
    finally:
        panel.close()

    grid = oxen_magic.generate(
        PROMPT, model=[TURBO, DEV], seed=range(1, 3), aspect_ratio="1:1", no_cache=True
    )
    from_generate = bodies()

    done = cli(PROMPT, *words, "--save", "cli", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    from_cli = bodies()

    assert len(from_magic) == 4
    assert from_magic == from_panel == from_generate == from_cli
    for item in magic:
        if item.request is None:
            continue
        key = (item.model, item.seed)
        expected = pixels(item.image)
        assert pixels(panel_results[key].image) == expected
        assert pixels(grid[key].image) == expected
        with Image.open(tmp_path / "cli" / f"{item.filename()}.png") as png:
            assert pixels(png) == expected


# -- the shell's ways of giving prompts, the terminal, subcommands --------------------------------
KLEIN = "black-forest-labs-flux-2-klein-4b"  # the default model


def test_cli_prompts_by_words_with_dashes_and_from_stdin(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    done = cli("a", "--seed", "1", "red", "cube", "---", "a blue {ball}", "--save", "a", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    piped = cli("-", "--seed", "2", "--save", "b", cwd=tmp_path, stdin="a green cone\n---\na pink box\n")
    assert piped.returncode == 0, piped.stderr
    prompts = sorted((r.body or {}).get("prompt") for r in hub.generate_calls())
    assert prompts == ["a blue {ball}", "a green cone", "a pink box", "a red cube"]
    assert len(list((tmp_path / "b").glob(f"{KLEIN}_*.png"))) == 2
    both = cli("-", "more", "words", cwd=tmp_path)
    assert both.returncode == 2 and len(both.stderr.strip().splitlines()) == 1


def test_cli_unusable_answers_exit_1_and_keys_stay_out(oxen_env: Path, hub: LocalHub, tmp_path: Path) -> None:
    hub.garbage = "not_image"
    done = cli(PROMPT, "--seed", "1..2", cwd=tmp_path)
    assert done.returncode == 1 and "failed:" in done.stderr and "Traceback" not in done.stderr
    pasted = cli(PROMPT, "--oxen-api-key", "abc", cwd=tmp_path)
    assert pasted.returncode == 2 and "never taken as an option" in pasted.stderr
    assert hub.api_key and all(hub.api_key not in r.stdout + r.stderr for r in (done, pasted))


def test_cli_progress_bar_with_eta_on_a_terminal(oxen_env: Path, hub: LocalHub, tmp_path: Path) -> None:
    hub.latency = 0.05
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "oxen_magic", PROMPT, "--seed", "1..6", "--concurrency", "1"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(60) == 0
    os.close(leader)
    shown = b"".join(chunks).decode()
    assert "\r[" in shown and "6/6" in shown and "s left" in shown  # the ETA, as every front end says it
    assert "seed 1: done" not in shown  # the bar, not the plain lines


def test_cli_pack_and_handout_are_subcommands(oxen_env: Path, hub: LocalHub, tmp_path: Path) -> None:
    assert cli(PROMPT, "--seed", "1..2", cwd=tmp_path).returncode == 0
    packed = cli("pack", "export", "room.zip", "--host", hub.url, cwd=tmp_path)
    assert packed.returncode == 0, packed.stderr
    assert (tmp_path / "room.zip").stat().st_size > 0
    notebook = str(ROOT / "notebooks" / "workshop.ipynb")
    handout = cli("handout", notebook, "--out", "student.ipynb", cwd=tmp_path)
    assert handout.returncode == 0, handout.stderr
    assert (tmp_path / "student.ipynb").is_file()
    wrong = cli("pack", "sideways", cwd=tmp_path)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr  # pack's own usage message


def test_cli_a_reader_that_leaves_early_is_no_error(oxen_env: Path, hub: LocalHub, tmp_path: Path) -> None:
    """`oxen-image --list-models | head -1`: the pipe closes under the listing."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "oxen_magic", "--list-models"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0 and "Traceback" not in err and "BrokenPipe" not in err


# -- files, exits and bytes (issue 20) ----------------------------------------------------------
#: Runs the command line with PIL's PNG encoder watched: `HOOK=limit` lowers RLIMIT_FSIZE (writes
#: past it fail with EFBIG, as on a full disk) at the first PNG saved with its parameters;
#: `HOOK=sigint:3,4` sends this process SIGINT (a real Ctrl-C) as the 3rd and 4th are encoded.
HOOKED = """
import os, resource, signal, sys
from PIL import Image
mode, _, arg = os.environ.get("HOOK", "").partition(":")
original, count = Image.Image.save, [0]
def save(self, fp, format=None, **kw):
    if "pnginfo" in kw:
        count[0] += 1
        if mode == "limit" and count[0] == 1:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (int(arg), resource.RLIM_INFINITY))
        if mode == "sigint" and str(count[0]) in arg.split(","):
            os.kill(os.getpid(), signal.SIGINT)
    return original(self, fp, format, **kw)
Image.Image.save = save
from oxen_magic.frontends.cli import main
sys.exit(main(sys.argv[1:]))
"""


def hooked(hook: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOOK": hook}
    return subprocess.run(
        [sys.executable, "-c", HOOKED, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_cli_a_second_prompt_keeps_the_first_runs_files(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    first = cli("a cat", "-m", TURBO, "-s", "1", "--save", "ow", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "ow"
    cat = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(cat) == ["contact-sheet.png", "z-image-turbo_seed-1.png"]
    second = cli("a dog", "-m", TURBO, "-s", "1", "--save", "ow", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert {n: (out / n).read_bytes() for n in cat} == cat  # nothing of the cat's run replaced
    assert sorted(p.name for p in out.iterdir()) == [
        "contact-sheet.png",
        "contact-sheet_2.png",
        "z-image-turbo_seed-1.png",
        "z-image-turbo_seed-1_2.png",
    ]
    assert "already held other images, which were kept" in second.stdout
    assert "Wrote the contact sheet ow/contact-sheet_2.png." in second.stdout
    with Image.open(out / "z-image-turbo_seed-1_2.png") as png:
        assert json.loads(png.text["parameters"])["prompt"] == "a dog"


def test_cli_a_full_disk_keeps_earlier_files_and_exits_1(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    first = cli("a cat", "-m", TURBO, "-s", "1", "--save", "ow", "--to-html", "g.html", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = {p: p.read_bytes() for p in [*(tmp_path / "ow").iterdir(), tmp_path / "g.html"]}
    done = hooked(
        "limit:100", "a dog", "-m", TURBO, "-s", "1", "--save", "ow", "--to-html", "g.html", cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr
    assert {p: p.read_bytes() for p in before} == before  # every earlier file whole and unchanged
    assert sorted(p.name for p in (tmp_path / "ow").iterdir()) == sorted(
        p.name for p in before if p.parent.name == "ow"
    )
    assert temps(tmp_path) == [] and "Traceback" not in done.stderr
    failures = [line for line in done.stderr.splitlines() if line.startswith("oxen-image: ")]
    assert failures == [
        "oxen-image: Could not save the PNGs to ow (File too large).",
        "oxen-image: Could not write the gallery to g.html (File too large); any earlier file is unchanged.",
    ]


def test_cli_ctrl_c_while_saving_finishes_the_saving(oxen_env: Path, hub: LocalHub, tmp_path: Path) -> None:
    done = hooked("sigint:3", PROMPT, "-m", TURBO, "-s", "1..8", "--save", "out", cwd=tmp_path)
    assert done.returncode == 130, done.stderr
    assert "nothing was sent" not in done.stderr and "Traceback" not in done.stderr
    assert "press Ctrl-C again to stop now" in done.stderr
    saved = sorted((tmp_path / "out").glob("z-image-turbo_seed-*.png"))
    assert len(saved) == 8 and "Saved 8 PNG file(s) to out." in done.stdout
    assert (tmp_path / "out" / "contact-sheet.png").is_file() and temps(tmp_path) == []


def test_cli_a_second_ctrl_c_stops_saving_and_says_what_was_saved(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    done = hooked("sigint:3,4", PROMPT, "-m", TURBO, "-s", "1..8", "--save", "out", cwd=tmp_path)
    assert done.returncode == 130, done.stderr
    assert "nothing was sent" not in done.stderr and "Traceback" not in done.stderr
    saved = sorted((tmp_path / "out").iterdir())
    assert len(saved) == 3 and temps(tmp_path) == []
    for path in saved:
        with Image.open(path) as png:
            png.load()  # whole files only
    assert "Stopped at Ctrl-C while saving: 3 of 8 PNG file(s) are in out, each whole" in done.stderr


def test_cli_export_targets_are_checked_before_anything_is_sent(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    for args in (["--to-html", "/proc/nope/x.html"], ["--to-oxen", "/proc/nope/r"], ["--save", "/proc/nope"]):
        done = cli(PROMPT, "-s", "1", *args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and args[0] in done.stderr
    assert hub.generate_calls() == []


@pytest.mark.parametrize(
    "words",
    [
        [b"a caf\xe9 cube", b"-s", b"1"],
        [PROMPT.encode(), b"-m", b"flux-2-\xff", b"-s", b"1"],
        [PROMPT.encode(), b"-s", b"1", b"--save", b"out-\xe9"],
    ],
)
def test_cli_bytes_that_are_not_utf8_are_refused(
    oxen_env: Path, hub: LocalHub, tmp_path: Path, words: list[bytes]
) -> None:
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"oxen_magic", *words],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=60,
    )
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert len(err.strip().splitlines()) == 1 and "not UTF-8 text" in err and "\\x" in err
    assert hub.generate_calls() == []
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("out", "oxen-images"))]


def test_cli_prompts_on_stdin_that_are_not_utf8_are_refused(
    oxen_env: Path, hub: LocalHub, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "oxen_magic", "-", "-s", "1"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8"},
        input=b"a caf\xe9 cube\n",
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 2 and b"not UTF-8 text" in done.stderr and hub.generate_calls() == []
