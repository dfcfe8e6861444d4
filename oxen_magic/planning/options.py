"""The `%%oxenimage` grammar: an options line and a cell body into a frozen `Spec`.

Pure functions, no I/O: everything here can be tested without a kernel or a server, and the panel
reuses it by writing the same options line a learner would type. Every error is a `UsageProblem`
whose message is one sentence naming the problem and the fix.
"""

from __future__ import annotations

import argparse
import difflib
import math
import re
import secrets
import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from oxen_magic.core import validate
from oxen_magic.core.errors import UsageProblem
from oxen_magic.planning.hints import needs_an_image, param_hint
from oxen_magic.planning.image_refs import GRAMMAR as INPUT_GRAMMAR
from oxen_magic.planning.image_refs import Refs
from oxen_magic.planning.image_refs import parse as parse_inputs
from oxen_magic.planning.params import parse_params
from oxen_magic.planning.prompts import EMPTY_LINE_PROMPT, EMPTY_PROMPT, fill_template, split_prompts
from oxen_magic.planning.ranges import parse_ints, parse_seeds

DEFAULT_MODEL = "black-forest-labs-flux-2-klein-4b"
FORMATS = ("url", "b64_json")

SEED_GRAMMAR = """\
Seeds (--seed / -s) and steps (--steps / -n) take whole numbers:
  7            one value
  1..4         a range, both ends included: 1, 2, 3, 4
  1..10:3      a range with a step: 1, 4, 7, 10
  1,5,9        a list; items may be ranges: 1..3,10
  random:4     (seeds only) four random seeds, printed so you can reuse them
Values are sorted and duplicates dropped. With no --seed the server picks one (not cached).
Lists (--model, --aspect-ratio, --input-image) are comma separated or the option repeated (the
two merge); --param may be repeated for different names; any other option is given at most once.
Numbers are written with the digits 0-9.
A line holding only --- in the cell body separates prompts; {name} in a prompt is filled
from your variables ({{ and }} for literal braces)."""


@dataclass(frozen=True)
class Defaults:
    """What `%config OxenMagic` sets; options on the line override it."""

    model: str = DEFAULT_MODEL
    concurrency: int = 0  # 0: auto (the runner's window finds the server's limit)
    max_images: int = 64
    response_format: str = "url"
    size: int = 256
    cols: int = 8
    host: str | None = None
    upload_repo: str | None = None  # "namespace/repo" that local --input-image files go to


@dataclass(frozen=True)
class Spec:
    """Everything a cell asked for, validated for form (not yet against model schemas)."""

    prompts: tuple[str, ...]
    models: tuple[str, ...]
    seeds: tuple[int | None, ...] = (None,)
    aspect_ratios: tuple[str | None, ...] = (None,)
    steps: tuple[int | None, ...] = (None,)
    #: References as written (`image_refs.py`); `input_images.resolve_inputs` reads them in prepare.
    input_images: tuple[Refs | None, ...] = (None,)
    params: tuple[tuple[str, str], ...] = ()
    response_format: str = "url"
    namespace: str | None = None
    random_seeds: bool = False
    host: str | None = None
    out: str | None = None
    cols: int = 8
    size: int = 256
    use_cache: bool = True
    concurrency: int = 0  # 0: auto
    save_dir: str | None = None
    max_images: int = 64
    dry_run: bool = False
    to_oxen: str | None = None
    push: bool = False
    to_html: str | None = None
    upload_repo: str | None = None
    list_models: bool = field(default=False, compare=False)
    #: `--list-models WORD --developer NAME`: the API's own search and `developer_name` filter.
    search: str | None = field(default=None, compare=False)
    developer: str | None = field(default=None, compare=False)

    @property
    def count(self) -> int:
        """How many requests the cartesian product holds, before any per-model dedupe."""
        axes = (self.prompts, self.models, self.seeds, self.aspect_ratios, self.steps, self.input_images)
        return math.prod(len(axis) for axis in axes)


AUTO = "auto"


def _concurrency(text: str) -> int:
    """`--concurrency N`, or `auto` (0: the runner's window adapts to the server)."""
    if text.strip().lower() == AUTO:
        return 0
    validate.ascii_digits_only(text.strip(), "--concurrency", "concurrency")
    if not re.fullmatch(r"\s*[+-]?[0-9]{1,9}\s*", text):
        raise UsageProblem(
            f"--concurrency takes a whole number or auto; got '{text[:20]}' (use a number or auto)."
        )
    return validate.whole_number(text, "--concurrency")


class _Parser(argparse.ArgumentParser):
    """argparse that raises `UsageProblem` instead of printing usage and exiting."""

    def error(self, message: str) -> Any:  # argparse calls this on bad input
        raise UsageProblem(f"{message[0].upper()}{message[1:]}; see %%oxenimage? for the options.")


class _Once(argparse.Action):
    """A single-valued option: given twice (`--seed 1 --seed 2`) is refused, not last-one-wins."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        if getattr(namespace, self.dest, None) is not None:
            flag = max(self.option_strings, key=len)
            hint = f" (a list like {flag} 1,2 sweeps several)" if self.dest in ("seed", "steps") else ""
            raise UsageProblem(f"{flag} is given twice; give it once{hint}.", self.dest)
        setattr(namespace, self.dest, values)


def _parser() -> _Parser:
    p = _Parser(prog="%%oxenimage", add_help=False, allow_abbrev=False)

    def add(*flags: str, **kwargs: Any) -> None:
        if "action" not in kwargs and flags[-1].startswith("--"):
            kwargs["action"] = _Once
        p.add_argument(*flags, **kwargs)

    add("-m", "--model", action="append", help="model id(s): a comma list, or repeated (merged)")
    add("-s", "--seed", help="seed(s): 7, 1..4, 1..10:3, 1,5,9 or random:4")
    add("-a", "--aspect-ratio", action="append", help="aspect ratio(s): 1:1 or 1:1,16:9, or repeated")
    add("-n", "--steps", help="num_inference_steps: a number, list or range like --seed")
    add("-i", "--input-image", action="append", help="input image(s): file, URL or variable; , axis, + joins")
    add("-p", "--param", action="append", metavar="KEY=VALUE", help="a model-specific parameter (repeatable)")
    add("--format", choices=FORMATS, help="how images come back: url (default) or b64_json")
    add("--namespace", help="target_namespace: the user or organisation billed")
    add("--host", help="API host, e.g. hub.oxen.ai or http://127.0.0.1:8765")
    add("--out", help="store the result object in this variable")
    add("--cols", help="at most this many images per grid row")
    add("--size", help="display width of a grid cell in pixels")
    add("--no-cache", action="store_true", help="do not read the on-disk cache")
    add(
        "--concurrency",
        help="at most this many requests in flight (default auto: adapts to the server, up to 32)",
    )
    add("--save", metavar="DIR", help="also save each image as a PNG (with its parameters) here")
    add("--to-oxen", metavar="REPO_DIR", help="also commit the images and a table to this Oxen repository")
    add("--push", action="store_true", help="with --to-oxen: push that commit to the repository's remote")
    add("--to-html", metavar="FILE", help="also write a standalone HTML gallery of the grid here")
    add("--max-images", help="refuse plans larger than this (default 64)")
    add("--dry-run", action="store_true", help="show the grid plan and estimated cost; send nothing")
    add(
        "--list-models",
        action="store_true",
        help="show the image models and their parameters (a word after it searches them)",
    )
    add("--developer", help="with --list-models: only this developer's models (e.g. black-forest-labs)")
    p.add_argument("prompt", nargs="*", help="(one-line %%oxenimage only) the prompt")
    return p


PARSER = _parser()
HELP = PARSER.format_help() + "\n" + SEED_GRAMMAR + "\n" + INPUT_GRAMMAR

#: An option whose name holds one of these is someone pasting a key (`--oxen-api-key`, `--secret`).
KEY_WORDS = ("key", "token", "auth", "password", "passwd", "secret", "bearer", "credential")
OPTION_NAMES = sorted(o for a in PARSER._actions for o in a.option_strings if o.startswith("--"))


def _refuse_keys_and_typos(words: Sequence[str], default_model: str | None = None) -> None:
    for index, word in enumerate(words):
        if not word.startswith("--"):
            continue
        name = word[2:].split("=", 1)[0]
        if any(part in name.lower() for part in KEY_WORDS):
            raise UsageProblem(
                "API keys are never taken as an option (they would be saved in the notebook); "
                "run oxen_magic.login(), set OXEN_API_KEY, or use `oxen config --auth`."
            )
        if "--" + name not in OPTION_NAMES:
            close = difflib.get_close_matches("--" + name, OPTION_NAMES, n=1, cutoff=0.6)
            hint = param_hint(words, index, name, default_model) or (
                f"did you mean {close[0]}?" if close else "see %%oxenimage? for the options."
            )
            raise UsageProblem(f"Unknown option --{name}; {hint}")


def parse_words(
    words: Sequence[str], default_model: str | None = DEFAULT_MODEL, *, intermixed: bool = False
) -> argparse.Namespace:
    """The options line's words into argparse's namespace; typos and key options refused.
    `intermixed`: prompt words may come between options (the command line)."""
    _refuse_keys_and_typos(words, default_model)
    if intermixed:
        return PARSER.parse_intermixed_args(list(words))
    return PARSER.parse_args(list(words))


def to_words(args: argparse.Namespace, skip: Collection[str] = ()) -> list[str]:
    """The inverse of `parse_words` (leaving out the options named in `skip`), in help order."""
    words: list[str] = []
    for action in PARSER._actions:
        if not action.option_strings or action.dest in skip:
            continue
        flag = max(action.option_strings, key=len)
        value = getattr(args, action.dest, None)
        if action.nargs == 0:
            words += [flag] if value else []
        elif isinstance(value, list):
            for item in value:
                words += [flag, str(item)]
        elif value is not None:
            words += [flag, str(value)]
    return words


def split_words(line: str) -> list[str]:
    """Shell-style split, with a one-line error for unbalanced quotes."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageProblem(f"Cannot read the options line ({exc}); check its quotes.") from None


def split_list(values: Sequence[str] | None, what: str) -> tuple[str, ...]:
    """Comma lists, possibly repeated, into a tuple without duplicates (order kept)."""
    out: list[str] = []
    for value in values or ():
        for item in value.split(","):
            item = item.strip()
            if not item:
                raise UsageProblem(f"Empty item in the {what} list '{value}'; remove the comma.")
            if item not in out:
                out.append(item)
    return tuple(out)


def build_spec(
    line: str,
    body: str | None = None,
    variables: Mapping[str, Any] | None = None,
    defaults: Defaults | None = None,
    rng: secrets.SystemRandom | None = None,
) -> Spec:
    """Parse a magic's options line (and the cell body, for the cell magic) into a `Spec`.

    `body` is None for the one-line `%oxenimage`, whose prompt is the rest of the line. Input
    images stay references (`image_refs.py`): nothing is read here, so the panel rebuilds this freely.
    """
    defaults = defaults or Defaults()
    args = parse_words(split_words(line), defaults.model)
    if args.host is not None:
        validate.host_without_credentials(args.host)
    if args.list_models:
        return Spec(
            prompts=(),
            models=(),
            host=args.host or defaults.host,
            list_models=True,
            search=" ".join(args.prompt).strip() or None,
            developer=(args.developer or "").strip() or None,
        )
    if args.developer is not None:
        raise UsageProblem("--developer filters --list-models; add --list-models, or remove --developer.")
    prompts = _prompts(args, body, variables or {}, defaults)
    seeds: tuple[int | None, ...] = (None,)
    random_seeds = False
    if args.seed is not None:
        seeds, random_seeds = parse_seeds(args.seed, rng)
    steps = parse_ints(args.steps, "steps", lo=1, hi=1000) if args.steps is not None else (None,)
    outputs = _outputs(args, defaults)  # checked before the lists, as they always were
    spec = Spec(
        prompts=prompts,
        models=split_list(args.model, "model") or (defaults.model,),
        seeds=seeds,
        aspect_ratios=split_list(args.aspect_ratio, "aspect ratio") or (None,),
        steps=steps,
        input_images=parse_inputs(args.input_image, variables) if args.input_image else (None,),
        params=parse_params(args.param),
        response_format=args.format or defaults.response_format,
        namespace=args.namespace or None,
        random_seeds=random_seeds,
        host=args.host or defaults.host,
        use_cache=not args.no_cache,
        dry_run=args.dry_run,
        upload_repo=defaults.upload_repo or None,
        **outputs,
    )
    if spec.count > spec.max_images:
        raise UsageProblem(
            f"This cell would generate {spec.count} images, more than the limit of "
            f"{spec.max_images}; narrow the sweep, or raise the limit with --max-images "
            f"{spec.count} (or %config OxenMagic.max_images = {spec.count})."
        )
    return spec


def _prompts(
    args: argparse.Namespace, body: str | None, variables: Mapping[str, Any], defaults: Defaults
) -> tuple[str, ...]:
    """The prompts (the cell body's, split at `---`, or the one-line magic's words), filled from
    the variables; none only when an input image is given (an upscaler needs no prompt)."""
    if body is None:
        texts = [" ".join(args.prompt).strip()]
    else:
        if args.prompt:
            raise UsageProblem(
                f"Unexpected words on the %%oxenimage line ({' '.join(args.prompt)[:60]!r}); the prompt "
                "goes in the cell body, and options start with --."
            )
        texts = split_prompts(body)
    empty = EMPTY_PROMPT if body is not None else EMPTY_LINE_PROMPT
    if args.input_image and all(not t for t in texts):
        texts = [""]  # an upscaler needs no prompt; the plan asks for one where a model does
    elif (
        not args.input_image
        and all(not t for t in texts)
        and (needs := needs_an_image(args.model or [defaults.model]))
    ):
        raise UsageProblem(needs, field="input_image")
    elif any(not t for t in texts):
        raise UsageProblem(
            empty
            if len(texts) == 1
            else "A prompt between --- lines is empty; write one or remove the extra ---."
        )
    prompts = tuple(validate.prompt_length(fill_template(t, variables)) for t in texts)
    if any(not p.strip() for p in prompts) and not (args.input_image and texts == [""]):
        raise UsageProblem(empty)
    return prompts


def _outputs(args: argparse.Namespace, defaults: Defaults) -> dict[str, Any]:
    """How the grid is shown, run and kept (`--out`, `--cols`, `--size`, `--concurrency`,
    `--max-images`, the export targets), each checked for form."""
    out = validate.out_name(args.out) if args.out is not None else None
    numbers = {
        name: validate.whole_number(text, "--" + name.replace("_", "-"))
        for name in ("cols", "size", "max_images")
        if (text := getattr(args, name)) is not None
    }
    if args.concurrency is not None:
        numbers["concurrency"] = _concurrency(args.concurrency)
    for flag, path, noun in (
        ("--save", args.save, "folder"),
        ("--to-oxen", args.to_oxen, "folder"),
        ("--to-html", args.to_html, "file"),
    ):
        if path is not None:  # a NUL here would only fail once the images were billed
            validate.folder_text(path, flag, noun=noun)
    concurrency = defaults.concurrency if args.concurrency is None else numbers["concurrency"]  # 0: auto
    if concurrency > 64:
        raise UsageProblem(f"--concurrency {concurrency} is too many; use 1 to 64.")
    if args.push and not args.to_oxen:
        raise UsageProblem("--push pushes what --to-oxen commits; add --to-oxen REPO_DIR, or drop --push.")
    size = numbers.get("size") or defaults.size
    if not 32 <= size <= 2048:
        raise UsageProblem(f"--size {size} is not a sensible cell width; use 32 to 2048 pixels.")
    return {
        "out": out,
        "cols": numbers.get("cols") or defaults.cols,
        "size": size,
        "concurrency": concurrency,
        "max_images": numbers.get("max_images") or defaults.max_images,
        "save_dir": args.save,
        "to_oxen": args.to_oxen or None,
        "push": args.push,
        "to_html": args.to_html or None,
    }
