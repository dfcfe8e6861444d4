"""Unit tests for `oxen_magic.planning.options`: the `%%oxenimage` grammar into a frozen `Spec`.

Pure and fast: no kernel, no server, no files.
"""

from __future__ import annotations

import contextlib
import random
import re
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oxen_magic.core.errors import UsageProblem
from oxen_magic.planning.options import (
    DEFAULT_MODEL,
    HELP,
    Defaults,
    Spec,
    build_spec,
    split_list,
    split_words,
)
from oxen_magic.planning.params import parse_params
from oxen_magic.planning.prompts import EMPTY_LINE_PROMPT, EMPTY_PROMPT, fill_template, split_prompts
from oxen_magic.planning.ranges import MAX_RANGE, SEED_MAX, parse_ints, parse_seeds


def problem(fn: Callable[..., object], *args: Any, **kwargs: Any) -> str:
    """The message of the `UsageProblem` that `fn(*args)` must raise."""
    with pytest.raises(UsageProblem) as info:
        fn(*args, **kwargs)
    return str(info.value)


# --- seeds and steps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7", (7,)),
        ("0", (0,)),
        (str(SEED_MAX), (SEED_MAX,)),
        ("1..4", (1, 2, 3, 4)),
        ("3..3", (3,)),
        ("1..10:3", (1, 4, 7, 10)),
        ("1..9:3", (1, 4, 7)),
        ("1..2:100", (1,)),
        ("1,5,9", (1, 5, 9)),
        ("1..3,10", (1, 2, 3, 10)),
        ("9,1,5,1,9", (1, 5, 9)),
        ("3..6,1..4", (1, 2, 3, 4, 5, 6)),
        (" 1 , 2 ", (1, 2)),
        ("007", (7,)),
        ("+7", (7,)),
    ],
)
def test_parse_ints_grammar(text: str, expected: tuple[int, ...]) -> None:
    assert parse_ints(text) == expected
    assert parse_seeds(text) == (expected, False)


def test_parse_ints_full_max_range_is_allowed() -> None:
    values = parse_ints(f"1..{MAX_RANGE}")
    assert len(values) == MAX_RANGE
    assert values[0] == 1
    assert values[-1] == MAX_RANGE


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1..x", ["'1..x' is not a seed number or range", "1..4", "1..10:3"]),
        ("5..-2", ["seed -2 is out of range", f"0 to {SEED_MAX}"]),
        ("-3", ["seed -3 is out of range"]),
        (str(SEED_MAX + 1), [f"seed {SEED_MAX + 1} is out of range"]),
        ("1..", ["range '1..' needs both ends", "1..4"]),
        ("..3", ["range '..3' needs both ends"]),
        ("..", ["needs both ends"]),
        ("1,,2", ["Empty item in the seed list '1,,2'", "extra comma"]),
        ("1,", ["Empty item", "extra comma"]),
        ("1..10:0", ["step in the seed range '1..10:0' must be 1 or more"]),
        ("1..10:-2", ["must be 1 or more"]),
        ("10..1", ["range '10..1' runs backwards", "(1..10)"]),
        ("0..100000000", ["holds 100000001 values", f"more than {MAX_RANGE}", "--max-images"]),
        ("1..6000,7000..13000", [f"holds more than {MAX_RANGE} values"]),
        ("abc", ["'abc' is not a seed number or range", "1,5,9"]),
        ("1.5", ["'1.5' is not a seed number"]),
        ("1..4:", ["'1..4:' is not a seed number"]),
        ("", ["The seed list is empty", "7", "1..4"]),
        ("   ", ["The seed list is empty"]),
        ("9" * 5000, ["is out of range"]),  # int() alone would raise a plain ValueError
        ("1.." + "9" * 5000, ["is out of range"]),
    ],
)
def test_malformed_seed_specs(text: str, words: list[str]) -> None:
    message = problem(parse_seeds, text)
    for word in words:
        assert word in message
    assert problem(parse_ints, text) == message


@pytest.mark.parametrize("text", ["random:0", "random:x", "random:-1", "random:1.5", "random:10001"])
def test_malformed_random_count(text: str) -> None:
    message = problem(parse_seeds, text)
    assert message == f"'{text}' needs a count from 1 to {MAX_RANGE}, like random:4."


def test_random_seeds_with_deterministic_rng() -> None:
    seeds, random_seeds = parse_seeds("random:4", random.Random(0))  # type: ignore[arg-type]
    assert random_seeds is True
    assert len(seeds) == 4
    assert list(seeds) == sorted(set(seeds))
    assert all(0 <= s < 2**31 for s in seeds)
    # Same source of randomness, same seeds: the duck-typed rng is really what is used.
    assert parse_seeds("random:4", random.Random(0))[0] == seeds  # type: ignore[arg-type]
    assert parse_seeds("RANDOM : 4".replace(" ", ""), random.Random(0))[0] == seeds  # type: ignore[arg-type]


def test_random_seeds_default_rng_and_count_one() -> None:
    seeds, random_seeds = parse_seeds("random:16")
    assert random_seeds
    assert len(set(seeds)) == 16
    assert all(0 <= s <= 2**31 - 1 for s in seeds)
    one, flag = parse_seeds("random")
    assert flag
    assert len(one) == 1


def test_random_seeds_are_distinct_even_when_the_rng_repeats() -> None:
    class Repeating:
        """Repeats values: parse_seeds must keep drawing until it has K distinct."""

        def __init__(self) -> None:
            self.calls = 0

        def randrange(self, lo: int, hi: int) -> int:
            self.calls += 1
            return lo + self.calls // 2

    rng = Repeating()
    seeds, _ = parse_seeds("random:3", rng)  # type: ignore[arg-type]
    assert seeds == (0, 1, 2)
    assert rng.calls == 4  # 0, 1, 1 (repeat: drawn again), 2


def test_steps_lists_and_bounds() -> None:
    assert parse_ints("20,30..50:10", "steps", lo=1, hi=1000) == (20, 30, 40, 50)
    assert build_spec("-n 4..8:2", "a cat").steps == (4, 6, 8)
    assert build_spec("--steps 30,10,30", "a cat").steps == (10, 30)
    assert problem(build_spec, "--steps 0", "a cat") == "The steps 0 is out of range; use 1 to 1000."
    assert "steps 1001 is out of range" in problem(build_spec, "-n 1..1001", "a cat")
    assert "not a steps number or range" in problem(build_spec, "-n many", "a cat")
    with pytest.raises(UsageProblem):
        build_spec("-n random:3", "a cat")  # random: is for seeds only


def test_seed_options_in_build_spec() -> None:
    spec = build_spec("-s 1..10:3", "a cat")
    assert spec.seeds == (1, 4, 7, 10)
    assert spec.random_seeds is False
    spec = build_spec("--seed random:5", "a cat", rng=random.Random(1))  # type: ignore[arg-type]
    assert spec.random_seeds is True
    assert len(spec.seeds) == 5
    assert build_spec("", "a cat").seeds == (None,)
    assert build_spec("--seed=3", "a cat").seeds == (3,)
    assert "out of range" in problem(build_spec, "-s -5", "a cat")


# --- lists and params --------------------------------------------------------------------------


def test_model_and_aspect_ratio_lists() -> None:
    spec = build_spec("--model a,b --model c -m b", "a cat")
    assert spec.models == ("a", "b", "c")
    spec = build_spec("-a 1:1,16:9 --aspect-ratio 1:1 -a ' 9:16 '", "a cat")
    assert spec.aspect_ratios == ("1:1", "16:9", "9:16")
    assert build_spec("", "a cat").aspect_ratios == (None,)
    assert split_list(None, "model") == ()
    assert split_list(["x , y", "y,z"], "model") == ("x", "y", "z")
    message = problem(build_spec, "--model a,", "a cat")
    assert message == "Empty item in the model list 'a,'; remove the comma."
    assert "Empty item in the aspect ratio list ',1:1'" in problem(build_spec, "-a ,1:1", "a cat")


def test_param_parsing() -> None:
    assert parse_params(None) == ()
    assert parse_params(["guidance=3.5", " output_format = png ", "note=a=b", "empty="]) == (
        ("guidance", "3.5"),
        ("output_format", "png"),
        ("note", "a=b"),
        ("empty", ""),
    )
    with pytest.raises(UsageProblem, match=r"^--param k is given twice; give it once\.$"):
        parse_params(["k=1", "k=2"])  # not last-one-wins: which did the user mean?
    spec = build_spec("-p guidance=3.5 --param 'negative_prompt=blurry, dark'", "a cat")
    assert spec.params == (("guidance", "3.5"), ("negative_prompt", "blurry, dark"))


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("guidance", "--param 'guidance' needs the form key=value, like guidance=3.5."),
        ("=3", "--param '=3' needs the form key=value, like guidance=3.5."),
        ("1x=2", "--param name '1x' is not a parameter name; use letters and _."),
        ("a-b=2", "--param name 'a-b' is not a parameter name; use letters and _."),
        ("model=x", "--param model=... is set by its own option; use that instead."),
        ("prompt=x", "--param prompt=... is set by its own option; use that instead."),
        (
            "response_format=b64_json",
            "--param response_format=... is set by its own option; use that instead.",
        ),
        ("target_namespace=o", "--param target_namespace=... is set by its own option; use that instead."),
        ("seed=3", "Use --seed for seed (it can sweep), not --param."),
        ("aspect_ratio=1:1", "Use --aspect-ratio for aspect_ratio (it can sweep), not --param."),
        ("num_inference_steps=9", "Use --steps for num_inference_steps (it can sweep), not --param."),
    ],
)
def test_param_errors(item: str, message: str) -> None:
    assert problem(parse_params, [item]) == message
    assert problem(build_spec, f"-p '{item}'", "a cat") == message


# --- prompts and templates ---------------------------------------------------------------------


def test_split_prompts() -> None:
    assert split_prompts("a cat") == ["a cat"]
    assert split_prompts("a cat\n---\na dog\n  ---  \na fox") == ["a cat", "a dog", "a fox"]
    assert split_prompts("a cat,\n  on a mat\n---\n\na dog\n") == ["a cat,\n  on a mat", "a dog"]
    assert split_prompts("a --- b\n----\nc") == ["a --- b\n----\nc"]  # only a line of exactly ---
    assert split_prompts("a\r\n---\r\nb") == ["a", "b"]
    assert split_prompts("") == [""]


def test_build_spec_prompts() -> None:
    assert build_spec("", "  a cat  \n").prompts == ("a cat",)
    assert build_spec("", "a cat\n---\na dog").prompts == ("a cat", "a dog")
    message = problem(build_spec, "", "a cat\n---\n---\na dog")
    assert message == "A prompt between --- lines is empty; write one or remove the extra ---."
    assert "A prompt between --- lines is empty" in problem(build_spec, "", "a cat\n---\n")


def test_fill_template() -> None:
    variables = {"animal": "cat", "n": 3, "place": "a mat"}
    assert fill_template("a {animal} on {place}", variables) == "a cat on a mat"
    assert fill_template("{ animal } x{n}", variables) == "cat x3"
    assert fill_template("{{literal}} and {{{animal}}}", variables) == "{literal} and {cat}"
    assert fill_template('json: {{"a": 1}}', {}) == 'json: {"a": 1}'
    assert fill_template("no braces at all", {}) == "no braces at all"
    assert fill_template("{animal}", {"animal": "{place}"}) == "{place}"  # filled once, not recursively


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (
            "a {animal}",
            "The prompt uses {animal} but no variable 'animal' is defined; set it in a cell above, "
            "or write {{animal}} for literal braces.",
        ),
        ("a { cat", "The prompt has an unmatched '{'; write {{ for a literal brace."),
        ("a } cat", "The prompt has an unmatched '}'; write }} for a literal brace."),
        ("a {} cat", "'{}' in the prompt is not a variable name; write {{ and }} for literal braces."),
        ("a {1} cat", "'{1}' in the prompt is not a variable name; write {{ and }} for literal braces."),
        (
            "a {x.y} cat",
            "'{x.y}' in the prompt reaches into a variable; only plain names are filled, so put the "
            "value in a variable first (or write {{ and }} for literal braces).",
        ),
    ],
)
def test_fill_template_errors(prompt: str, message: str) -> None:
    assert problem(fill_template, prompt, {}) == message
    assert problem(build_spec, "", prompt) == message


def test_build_spec_fills_templates_from_variables() -> None:
    spec = build_spec("", "a {animal}\n---\ntwo {animal}s", {"animal": "fox"})
    assert spec.prompts == ("a fox", "two foxs")
    assert build_spec("a {animal}", None, {"animal": "owl"}).prompts == ("a owl",)


@pytest.mark.parametrize(
    ("line", "body", "variables"),
    [
        ("", "", None),
        ("", "   \n\t\n", None),
        ("--seed 1", None, None),
        ("", "{x}", {"x": "   "}),
        ("{x}", None, {"x": ""}),
    ],
)
def test_empty_prompt(line: str, body: str | None, variables: dict[str, str] | None) -> None:
    message = problem(build_spec, line, body, variables)
    assert message.startswith("Prompt cannot be empty")
    assert message == (EMPTY_PROMPT if body is not None else EMPTY_LINE_PROMPT)


# --- the options line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "suggestion"),
    [
        ("--modle flux-2-dev", "--model"),
        ("--modle=flux-2-dev", "--model"),
        ("--seeds 1", "--seed"),
        ("--aspect_ratio 1:1", "--aspect-ratio"),
        ("--nocache", "--no-cache"),
        ("--list-model", "--list-models"),
    ],
)
def test_misspelt_option_suggests(line: str, suggestion: str) -> None:
    name = line.split()[0].split("=")[0]
    assert problem(build_spec, line, "a cat") == f"Unknown option {name}; did you mean {suggestion}?"


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("--model flux-2-dev --guidance 3", "--param guidance=3"),
        ("--guidance=2.5 -m flux-2-dev", "--param guidance=2.5"),
        ("-m qwen-image --negative-prompt blurry", "--param negative_prompt=blurry"),
        ("--model flux-2-dev --seed 1 --guidance", "--param guidance=VALUE"),
        # the default model (klein-4b) calls it guidance_scale
        ("--guidance 3", "--param guidance_scale=3"),
        ("--guidance-scale 4", "--param guidance_scale=4"),
    ],
)
def test_a_model_parameter_typed_as_an_option_gets_the_param_form(line: str, hint: str) -> None:
    name = next(w for w in line.split() if w.startswith("--g") or w.startswith("--n")).split("=")[0]
    assert problem(build_spec, line, "a cat") == f"Unknown option {name}; did you mean {hint}?"


def test_no_param_hint_when_no_chosen_model_takes_it() -> None:
    message = problem(build_spec, "--model z-image-turbo --guidance 3", "a cat")
    assert message == "Unknown option --guidance; see %%oxenimage? for the options."
    # parameters with an option of their own keep pointing at that option
    assert problem(build_spec, "--seeds 3", "a cat").endswith("did you mean --seed?")


def test_the_param_hint_follows_the_configured_default_model() -> None:
    line = "--guidance 3"
    hint = problem(build_spec, line, "a cat", defaults=Defaults(model="flux-2-dev"))
    assert hint == "Unknown option --guidance; did you mean --param guidance=3?"


def test_unknown_option_without_close_match() -> None:
    message = problem(build_spec, "--zzzzzzzz 3", "a cat")
    assert message == "Unknown option --zzzzzzzz; see %%oxenimage? for the options."


@pytest.mark.parametrize(
    "line",
    ["--api-key sk-secret", "--token sk-secret", "--key=sk-secret", "--API_KEY sk-secret", "--password x"],
)
def test_key_like_options_are_refused(line: str) -> None:
    message = problem(build_spec, line, "a cat")
    assert "API keys are never taken as an option" in message
    assert "oxen_magic.login()" in message
    assert "OXEN_API_KEY" in message
    assert "sk-secret" not in message


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("--cols abc", ["--cols takes a whole number like 4; got 'abc'."]),
        ("--format png", ["invalid choice: 'png'", "url", "b64_json"]),
        ("--model", ["expected one argument"]),
        ("-s", ["expected one argument"]),
        ("-x", ["Unrecognized arguments: -x"]),
    ],
)
def test_argparse_errors_become_usage_problems(line: str, words: list[str]) -> None:
    message = problem(build_spec, line, "a cat")
    for word in words:
        assert word in message


@pytest.mark.parametrize("out", ["1abc", "my-var", "a b", "x.y", ""])
def test_out_must_be_an_identifier(out: str) -> None:
    message = problem(build_spec, f"--out '{out}'", "a cat")
    assert message == f"--out '{out}' is not a Python variable name; use letters, digits, _."


def test_out_accepts_identifiers() -> None:
    assert build_spec("--out results_1", "a cat").out == "results_1"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--concurrency 0", "--concurrency must be 1 or more (got 0)."),
        ("--concurrency -2", "--concurrency must be 1 or more (got -2)."),
        ("--concurrency 65", "--concurrency 65 is too many; use 1 to 64."),
        ("--cols 0", "--cols must be 1 or more (got 0)."),
        ("--size 0", "--size must be 1 or more (got 0)."),
        ("--size 16", "--size 16 is not a sensible cell width; use 32 to 2048 pixels."),
        ("--size 4096", "--size 4096 is not a sensible cell width; use 32 to 2048 pixels."),
        ("--max-images 0", "--max-images must be 1 or more (got 0)."),
    ],
)
def test_numeric_option_bounds(line: str, message: str) -> None:
    assert problem(build_spec, line, "a cat") == message


def test_max_images_refusal_names_the_count_and_the_fix() -> None:
    message = problem(build_spec, "-s 1..100", "a cat")
    assert message == (
        "This cell would generate 100 images, more than the limit of 64; narrow the sweep, or raise "
        "the limit with --max-images 100 (or %config OxenMagic.max_images = 100)."
    )
    # The whole product counts: 3 models x 2 prompts x 3 seeds x 2 ratios x 2 steps = 72.
    message = problem(build_spec, "-m a,b,c -s 1..3 -a 1:1,16:9 -n 10,20", "x\n---\ny")
    assert "would generate 72 images" in message
    assert "--max-images 72" in message
    assert build_spec("-s 1..100 --max-images 100", "a cat").count == 100
    message = problem(build_spec, "-s 1..5", "a cat", defaults=Defaults(max_images=4))
    assert "would generate 5 images, more than the limit of 4" in message
    assert build_spec("-s 1..5 --max-images 5", "a cat", defaults=Defaults(max_images=4)).max_images == 5


def test_bad_quoting() -> None:
    message = problem(build_spec, '--namespace "my-org', "a cat")
    assert message == "Cannot read the options line (No closing quotation); check its quotes."
    assert problem(split_words, "a 'b") == message
    assert split_words("-p 'negative_prompt=a b' x") == ["-p", "negative_prompt=a b", "x"]


def test_words_on_the_cell_magic_line_are_refused() -> None:
    message = problem(build_spec, "a cat --seed 1", "a dog")
    assert message.startswith("Unexpected words on the %%oxenimage line ('a cat')")
    assert "the prompt goes in the cell body" in message


def test_one_line_form_takes_the_prompt_from_the_line() -> None:
    spec = build_spec("-s 1..2 a red fox", None)
    assert spec.prompts == ("a red fox",)
    assert spec.seeds == (1, 2)
    assert build_spec('"a red   fox" --seed 3', None).prompts == ("a red   fox",)
    # No prompt splitting on one line; a word starting with -- is read as an option.
    assert problem(build_spec, "a --- b", None) == "Unknown option ---; see %%oxenimage? for the options."
    assert build_spec("a {x}", None, {"x": "cat"}).prompts == ("a cat",)


def test_list_models() -> None:
    spec = build_spec("--list-models", None)
    assert spec.list_models is True
    assert spec.prompts == ()
    assert spec.models == ()
    assert spec.host is None
    assert build_spec("--list-models --host http://h:1", "").host == "http://h:1"
    assert build_spec("--list-models", None, defaults=Defaults(host="hub.oxen.ai")).host == "hub.oxen.ai"


def test_defaults_applied() -> None:
    spec = build_spec("", "a cat")
    assert spec == Spec(prompts=("a cat",), models=(DEFAULT_MODEL,))
    assert (spec.response_format, spec.cols, spec.size, spec.concurrency, spec.max_images) == (
        "url",
        8,
        256,
        0,  # auto: the runner's window adapts to the server
        64,
    )
    assert (spec.use_cache, spec.namespace, spec.host, spec.out, spec.save_dir, spec.params) == (
        True,
        None,
        None,
        None,
        None,
        (),
    )
    assert spec.count == 1
    defaults = Defaults(
        model="z-image-turbo",
        concurrency=2,
        max_images=10,
        response_format="b64_json",
        size=128,
        cols=4,
        host="http://127.0.0.1:9",
    )
    spec = build_spec("", "a cat", defaults=defaults)
    assert (spec.models, spec.concurrency, spec.max_images, spec.response_format) == (
        ("z-image-turbo",),
        2,
        10,
        "b64_json",
    )
    assert (spec.size, spec.cols, spec.host) == (128, 4, "http://127.0.0.1:9")


def test_options_override_defaults() -> None:
    defaults = Defaults(model="z-image-turbo", response_format="b64_json", host="http://127.0.0.1:9")
    line = (
        "-m flux-2-dev --format url --cols 3 --size 64 --concurrency 5 --max-images 9 "
        "--host hub.oxen.ai --namespace my-org --no-cache --save out/dir --out res"
    )
    spec = build_spec(line, "a cat", defaults=defaults)
    assert spec.models == ("flux-2-dev",)
    assert spec.response_format == "url"
    assert (spec.cols, spec.size, spec.concurrency, spec.max_images) == (3, 64, 5, 9)
    assert (spec.host, spec.namespace, spec.use_cache, spec.save_dir, spec.out) == (
        "hub.oxen.ai",
        "my-org",
        False,
        "out/dir",
        "res",
    )
    assert build_spec("--namespace ''", "a cat").namespace is None


def test_spec_is_frozen_and_counts_the_product() -> None:
    spec = build_spec("-m a,b -s 1..3 -a 1:1,16:9", "x\n---\ny")
    assert spec.count == 2 * 2 * 3 * 2
    with pytest.raises(FrozenInstanceError):
        spec.models = ("c",)  # type: ignore[misc]


def test_help_text_renders() -> None:
    # A bare "%oxenimage" in an argparse help string is a %-format and crashed the import.
    assert "(one-line %oxenimage only) the prompt" in HELP
    assert "random:4" in HELP
    assert re.search(r"--max-images", HELP)


# --- properties --------------------------------------------------------------------------------


def _number(n: int) -> st.SearchStrategy[str]:
    return st.sampled_from([str(n), f"+{n}", f"{n:04d}"])


@st.composite
def seed_terms(draw: st.DrawFn) -> tuple[str, set[int]]:
    """One valid term of the seed grammar and, computed independently, the set it describes."""
    kind = draw(st.sampled_from(["int", "range", "stepped"]))
    a = draw(st.integers(0, 3000))
    if kind == "int":
        return draw(_number(a)), {a}
    b = a + draw(st.integers(0, 60))
    if kind == "range":
        return f"{draw(_number(a))}..{draw(_number(b))}", set(range(a, b + 1))
    s = draw(st.integers(1, 25))
    described = {a + k * s for k in range((b - a) // s + 1)}
    return f"{draw(_number(a))}..{draw(_number(b))}:{draw(_number(s))}", described


@st.composite
def seed_specs(draw: st.DrawFn) -> tuple[str, set[int]]:
    terms = draw(st.lists(seed_terms(), min_size=1, max_size=6))
    spaces = st.sampled_from(["", " ", "  "])
    text = ",".join(draw(spaces) + t + draw(spaces) for t, _ in terms)
    return text, set().union(*(values for _, values in terms))


@settings(max_examples=200, deadline=None)
@given(seed_specs())
def test_valid_seed_specs_parse_to_the_described_set(case: tuple[str, set[int]]) -> None:
    text, described = case
    values = parse_ints(text)
    assert values == tuple(sorted(values))
    assert len(set(values)) == len(values)
    assert len(values) == len(described)
    assert set(values) == described
    assert parse_seeds(text) == (values, False)


GRAMMAR_TEXT = st.one_of(
    st.text(),
    st.text(alphabet="0123456789.,:+- random²١"),
)
WORDS = st.sampled_from(
    [
        "--seed", "-s", "--steps", "-n", "--model", "-m", "-a", "--aspect-ratio", "-p", "--param",
        "--format", "--cols", "--size", "--concurrency", "--max-images", "--out", "--host",
        "--namespace", "--no-cache", "--save", "--list-models", "--", "-", "--api-key", "--modle",
        "1..3", "random:3", "1..", "x", "k=v", "seed=1", "=", "0", "-1", "1:1", "url", "b64_json",
        "'", '"', "{x}", "{", "}", "---", "a cat", "--cols=", "--format=",
    ]
)  # fmt: skip
OPTION_LINES = st.one_of(st.text(), st.lists(WORDS, max_size=8).map(" ".join))


@settings(max_examples=200, deadline=None)
@given(GRAMMAR_TEXT)
def test_number_parsers_raise_only_usage_problems(text: str) -> None:
    for parse in (parse_seeds, parse_ints, lambda t: parse_ints(t, "steps", lo=1, hi=1000)):
        with contextlib.suppress(UsageProblem):
            parse(text)


@settings(max_examples=200, deadline=None)
@given(OPTION_LINES, st.one_of(st.none(), st.text()))
def test_build_spec_raises_only_usage_problems(line: str, body: str | None) -> None:
    for args in ((line, body, {"x": "X"}), ("", line, None), (line, None, None)):
        with contextlib.suppress(UsageProblem):
            build_spec(*args)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(), st.text(alphabet="{}ab x_1")))
def test_fill_template_raises_only_usage_problems(text: str) -> None:
    try:
        filled = fill_template(text, {"x": "X", "a": 1})
    except UsageProblem:
        return
    if "{" not in text and "}" not in text:
        assert filled == text


def test_concurrency_auto_overrides_a_configured_number() -> None:
    assert build_spec("--concurrency auto", "a cat", defaults=Defaults(concurrency=8)).concurrency == 0
    assert build_spec("--concurrency 3", "a cat").concurrency == 3
    with pytest.raises(UsageProblem, match="use a number or auto"):
        build_spec("--concurrency lots", "a cat")


# --- hardening: what a user types can neither break the kernel nor leak ------------------------
DIGITS_NOT_0_9 = [
    "３",
    "٣",
    "۳",
    "³",
    "१२",
    "1２",
]  # fullwidth, Arabic-Indic, Persian, superscript, Devanagari


@pytest.mark.parametrize("digits", DIGITS_NOT_0_9)
@pytest.mark.parametrize(
    "line",
    [
        "--seed {}",
        "--seed 1..{}",
        "--seed 1,{}",
        "--seed random:{}",
        "--steps {}",
        "--cols {}",
        "--size {}",
        "--concurrency {}",
        "--max-images {}",
    ],
)
def test_numbers_take_ascii_digits_only(line: str, digits: str) -> None:
    message = problem(build_spec, line.format(digits), "a cat")
    assert "uses a digit that is not 0-9" in message and "0-9" in message, message
    assert "\n" not in message


def test_ascii_numbers_still_parse() -> None:
    spec = build_spec("--seed 1..3 --steps 4 --cols 2 --size 64 --concurrency 3 --max-images 9", "a cat")
    assert (spec.seeds, spec.steps, spec.cols, spec.size, spec.concurrency, spec.max_images) == (
        (1, 2, 3),
        (4,),
        2,
        64,
        3,
        9,
    )


@pytest.mark.parametrize("text", ["1_000", " ", "1e3", "0x10", "+", "4.0", "9" * 13])
def test_whole_number_options_refuse_what_int_would_read(text: str) -> None:
    message = problem(build_spec, f"--cols '{text}'", "a cat")
    assert message.startswith("--cols takes a whole number like 4") or "--cols must be 1" in message


@pytest.mark.parametrize(
    ("line", "flag"),
    [
        ("--seed 1 --seed 2", "--seed"),
        ("-s 1 --seed 2", "--seed"),
        ("--seed=1 -s 2", "--seed"),
        ("--steps 4 -n 8", "--steps"),
        ("--size 100 --size 200", "--size"),
        ("--cols 1 --cols 2", "--cols"),
        ("--concurrency 1 --concurrency 2", "--concurrency"),
        ("--max-images 1 --max-images 2", "--max-images"),
        ("--format url --format b64_json", "--format"),
        ("--namespace a --namespace b", "--namespace"),
        ("--host a.example --host b.example", "--host"),
        ("--out a --out b", "--out"),
        ("--save a --save b", "--save"),
    ],
)
def test_a_single_valued_option_given_twice_is_refused(line: str, flag: str) -> None:
    message = problem(build_spec, line, "a cat")
    assert message.startswith(f"{flag} is given twice; give it once"), message
    assert "b.example" not in message  # values are not echoed (a host may hold secrets)


def test_list_options_given_twice_merge() -> None:
    spec = build_spec("-m flux-2-dev --model z-image-turbo,flux-2-dev -a 1:1 --aspect-ratio 16:9", "a cat")
    assert spec.models == ("flux-2-dev", "z-image-turbo")
    assert spec.aspect_ratios == ("1:1", "16:9")
    assert build_spec("--no-cache --no-cache", "a cat").use_cache is False  # a flag twice is harmless
    assert "repeated (merged)" in HELP and "any other option is given at most once" in HELP
    # -i repeated is an axis like -i a,b (the help says so, where it lists what merges)
    urls = "https://a.example/1.png", "https://a.example/2.png"
    repeated = build_spec(f"-m flux-2-dev -i {urls[0]} --input-image {urls[1]}", "a cat")
    assert repeated.input_images == build_spec(f"-m flux-2-dev -i {urls[0]},{urls[1]}", "a cat").input_images
    assert len(repeated.input_images) == 2 and "--aspect-ratio, --input-image) are comma" in HELP
    (whole,) = build_spec("-m flux-2-dev -i https://a.example/x,y.png", "a cat").input_images
    assert whole is not None and whole[0].url == "https://a.example/x,y.png"  # a comma inside one URL


@pytest.mark.parametrize(
    ("out", "kind"),
    [
        ("print", "would hide Python's built-in print"),
        ("len", "would hide Python's built-in len"),
        ("ｐｒｉｎｔ", "would hide Python's built-in print"),  # Python reads it as print
        ("__builtins__", "a name Python keeps for itself"),
        ("__name__", "a name Python keeps for itself"),
        ("__x__", "a name Python keeps for itself"),
        ("In", "a name IPython uses"),
        ("Out", "a name IPython uses"),
        ("get_ipython", "a name IPython uses"),
        ("exit", "a name IPython uses"),
        ("quit", "a name IPython uses"),
        ("_", "a name IPython uses"),
        ("__", "a name IPython uses"),
        ("___", "a name IPython uses"),
        ("_i", "a name IPython uses"),
        ("_ii", "a name IPython uses"),
        ("_iii", "a name IPython uses"),
        ("_i12", "a name IPython uses"),
        ("_7", "a name IPython uses"),
        ("_oh", "a name IPython uses"),
        ("_ih", "a name IPython uses"),
        ("_dh", "a name IPython uses"),
        ("class", "a Python keyword"),
        ("None", "a Python keyword"),
        ("True", "a Python keyword"),
    ],
)
def test_out_refuses_names_python_or_ipython_rely_on(out: str, kind: str) -> None:
    message = problem(build_spec, f"--out {out}", "a cat")
    assert message.startswith(f"--out '{out}' ") and kind in message, message
    assert "like grid" in message


@pytest.mark.parametrize(
    ("out", "stored"), [("grid", "grid"), ("_image", "_image"), ("ｇｒｉｄ", "grid"), ("é", "é")]
)
def test_out_accepts_ordinary_names_as_python_reads_them(out: str, stored: str) -> None:
    assert build_spec(f"--out {out}", "a cat").out == stored


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("secret internals")


class _NotText:
    def __str__(self) -> Any:
        return 42


@pytest.mark.parametrize(
    ("prompt", "variables", "words"),
    [
        (
            "a {thing}",
            {"thing": _Unprintable()},
            ["'thing'", "str() raised RuntimeError", "set it to a string"],
        ),
        ("a {thing}", {"thing": _NotText()}, ["'thing'", "set it to a string"]),
        ("a {__builtins__}", {"__builtins__": {}}, ["{__builtins__}", "Python's own names"]),
        ("a {__name__}", {"__name__": "__main__"}, ["{__name__}", "Python's own names"]),
        ("a {x.__class__}", {"x": 1}, ["reaches into a variable", "plain names"]),
        ("a {d[0]}", {"d": [1]}, ["reaches into a variable"]),
        ("a {d['k']}", {"d": {"k": 1}}, ["reaches into a variable"]),
        ("a {x!r}", {"x": 1}, ["is not a variable name"]),
        ("a {x:>9}", {"x": 1}, ["is not a variable name"]),
        ("a {big}", {"big": "x" * 5000}, ["'big'", "5,000 characters", "4,000"]),
    ],
)
def test_template_refuses_what_could_leak_or_break(
    prompt: str, variables: dict[str, Any], words: list[str]
) -> None:
    message = problem(build_spec, "", prompt, variables)
    for word in words:
        assert word in message, message
    assert "secret internals" not in message and "\n" not in message


def test_a_prompt_has_a_generous_limit() -> None:
    assert build_spec("", "x" * 4000).prompts == ("x" * 4000,)
    message = problem(build_spec, "", "x" * 4001)
    assert message.startswith("The prompt is 4,001 characters long, more than the limit of 4,000")
    assert problem(build_spec, "", "a cube\n---\n" + "y" * 9000).startswith("The prompt is 9,000")


@pytest.mark.parametrize(
    "host",
    [
        "https://alice:hunter2@hub.oxen.ai",
        "alice:hunter2@hub.oxen.ai",
        "http://alice@127.0.0.1:8765",
        "http://:hunter2@127.0.0.1:8765/",
        "https://alice:hunter2@hub.oxen.ai:99999",  # a bad port too: the credentials are found first
    ],
)
def test_a_host_with_credentials_is_refused_without_echoing_them(host: str) -> None:
    for line in (f"--host '{host}'", f"--list-models --host '{host}'"):
        message = problem(build_spec, line, "a cat")
        assert message.startswith("The Oxen host has a user name or password in it"), message
        assert "hunter2" not in message and "alice" not in message


def test_an_at_sign_after_the_host_is_not_a_credential() -> None:
    assert (
        build_spec("--host 'http://127.0.0.1:8765/api?x=a@b'", "a cat").host
        == "http://127.0.0.1:8765/api?x=a@b"
    )


@pytest.mark.parametrize(
    ("save", "words"),
    [
        ("''", ["--save needs a folder name"]),
        ("'   '", ["--save needs a folder name"]),
        ("'out\x00dir'", ["contains a NUL character", "'out\\x00dir'"]),  # shown escaped
        ("x" * 300, ["is too long a path"]),
        ("/tmp/" + "/".join(["abcdefgh"] * 600), ["is too long a path"]),
    ],
)
def test_save_paths_that_cannot_be_folders_are_refused(save: str, words: list[str]) -> None:
    message = problem(build_spec, f"--save {save}", "a cat")
    for word in words:
        assert word in message, message
    assert len(message) < 300 and "\x00" not in message


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("--to-oxen 'repo\x00'", ["The --to-oxen folder", "contains a NUL character"]),
        ("--to-html 'grid\x00.html'", ["The --to-html file", "contains a NUL character"]),
        ("--to-html ''", ["--to-html needs a file name, like --to-html grid.html"]),
        ("--save 'bad\ud800name'", ["The --save folder", "has a character no path can have"]),
    ],
)
def test_export_paths_are_checked_before_anything_is_sent(line: str, words: list[str]) -> None:
    message = problem(build_spec, line, "a cat")
    for word in words:
        assert word in message, message


@settings(max_examples=200, deadline=None)
@given(st.text(), st.sampled_from(["--save", "--to-oxen", "--to-html"]))
def test_typed_checks_raise_only_usage_problems(text: str, flag: str) -> None:
    from oxen_magic.core import validate

    for check in (
        validate.out_name,
        validate.host_without_credentials,
        validate.prompt_length,
        lambda t: validate.whole_number(t, "--cols"),
        lambda t: validate.template_value(t, {"x": 1, t: t}),
        lambda t: validate.folder_text(t, flag),
    ):
        with contextlib.suppress(UsageProblem):
            check(text)
