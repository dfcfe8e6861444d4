"""Whole-number option values: `7`, `1..4`, `1..10:3`, `1,5,9`, `random:4`.

Split from `options.py` (the grammar) because range expansion has its own guards (bounded sizes,
ASCII digits only, no absurdly long numbers); `options` and the panel's checks use them.
"""

from __future__ import annotations

import re
import secrets

from oxen_magic.core import validate
from oxen_magic.core.errors import UsageProblem

#: Seeds are sent as JSON integers; most models take 32-bit seeds.
SEED_MAX = 2**32 - 1
#: The most values one range may expand to (a guard against `1..10**12` eating memory).
MAX_RANGE = 10_000


def parse_ints(text: str, what: str = "seed", *, lo: int = 0, hi: int = SEED_MAX) -> tuple[int, ...]:
    """`7`, `1..4`, `1..10:3`, `1,5,9`, `1..3,10` into a sorted, duplicate-free tuple."""
    text = text.strip()
    if not text:
        raise UsageProblem(f"The {what} list is empty; write a number like 7 or a range like 1..4.")
    validate.ascii_digits_only(text, what, _FIELD.get(what, what))
    values: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise UsageProblem(f"Empty item in the {what} list '{text}'; remove the extra comma.")
        values.update(_expand(item, what, lo, hi))
        if len(values) > MAX_RANGE:
            raise UsageProblem(
                f"The {what} list '{text}' holds more than {MAX_RANGE} values; narrow it "
                "(--max-images limits a cell to 64 images by default)."
            )
    return tuple(sorted(values))


_FIELD = {"seed": "seed", "steps": "num_inference_steps"}
_INT = r"[+-]?[0-9]+"  # not \\d, which takes any script's digits (３, ٣) that int() also reads
_RANGE = re.compile(rf"^({_INT})\.\.({_INT})(?::({_INT}))?$")


def _expand(item: str, what: str, lo: int, hi: int) -> range | tuple[int, ...]:
    if re.fullmatch(_INT, item):
        return (_bounded(_int(item, what, lo, hi), what, lo, hi),)
    m = _RANGE.match(item)
    if not m:
        if ".." in item:
            left, _, right = item.partition("..")
            if not left.strip() or not right.split(":")[0].strip():
                raise UsageProblem(f"The {what} range '{item}' needs both ends, like 1..4.")
        raise UsageProblem(f"'{item}' is not a {what} number or range; write 7, 1..4, 1..10:3 or 1,5,9.")
    start, end = _int(m.group(1), what, lo, hi), _int(m.group(2), what, lo, hi)
    step = _int(m.group(3), what, lo, hi) if m.group(3) is not None else 1
    if step < 1:
        raise UsageProblem(f"The step in the {what} range '{item}' must be 1 or more.")
    _bounded(start, what, lo, hi)
    _bounded(end, what, lo, hi)
    if end < start:
        raise UsageProblem(
            f"The {what} range '{item}' runs backwards; write the smaller end first ({end}..{start})."
        )
    if (end - start) // step + 1 > MAX_RANGE:
        raise UsageProblem(
            f"The {what} range '{item}' holds {(end - start) // step + 1} values, more than "
            f"{MAX_RANGE}; narrow it (--max-images limits a cell to 64 images by default)."
        )
    return range(start, end + 1, step)


def _int(text: str, what: str, lo: int, hi: int) -> int:
    """`int()` that refuses absurdly long numbers (Python raises ValueError past 4300 digits)."""
    if len(text.lstrip("+-").lstrip("0")) > 40:
        raise UsageProblem(f"The {what} {text[:20]}… is out of range; use {lo} to {hi}.")
    return int(text)


def _bounded(value: int, what: str, lo: int, hi: int) -> int:
    if not lo <= value <= hi:
        raise UsageProblem(f"The {what} {value} is out of range; use {lo} to {hi}.")
    return value


def parse_seeds(text: str, rng: secrets.SystemRandom | None = None) -> tuple[tuple[int, ...], bool]:
    """Seeds and whether they were picked at random (`random:K`)."""
    text = text.strip()
    head, _, count = text.partition(":")
    if head.strip().lower() == "random":
        count = count.strip() or "1"
        validate.ascii_digits_only(count, "seed count", "seed")
        if not (count.isascii() and count.isdecimal()) or len(count) > 6 or not 1 <= int(count) <= MAX_RANGE:
            raise UsageProblem(f"'{text}' needs a count from 1 to {MAX_RANGE}, like random:4.")
        pick = rng or secrets.SystemRandom()
        seeds: set[int] = set()
        while len(seeds) < int(count):
            seeds.add(pick.randrange(0, 2**31))
        return tuple(sorted(seeds)), True
    return parse_ints(text, "seed"), False
