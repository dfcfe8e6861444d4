"""Matching a notebook cell's prompt template against a prompt in linear time (`pack export --notebook`).

Kept apart from `pack.py` because it is a small algorithm of its own, with its own tests.
"""

from __future__ import annotations

import re


class Template:
    """A cell's prompt with `{name}` placeholders, matched against a cached prompt in linear time.

    Each placeholder stands for some text (at least one character, any character); `{{` and `}}`
    are literal braces. A regular expression with one `.+?` per placeholder backtracks: adjacent
    placeholders (`{a}{b}...{h} in the style of {artist}!`) took time exponential in the prompt's
    length. Here the template is literal pieces with gaps between them, and a gap only has a
    least width (adjacent placeholders add up), so the leftmost place for each middle piece is
    always a right choice: one `startswith`, one `find` per middle piece, one `endswith`.
    `steps` counts those calls (the tests check it stays that small).
    """

    def __init__(self, prompt: str) -> None:
        self.pattern = prompt
        #: literal pieces, and before each piece after the first the least width of the gap
        self.pieces: list[str] = [""]
        self.gaps: list[int] = []
        for part in re.split(r"(\{\{|\}\}|\{[^{}]*\})", prompt):
            if part.startswith("{") and part != "{{":
                if len(self.gaps) == len(self.pieces):  # placeholders side by side: one wider gap
                    self.gaps[-1] += 1
                else:
                    self.gaps.append(1)
            elif part:
                if len(self.gaps) == len(self.pieces):
                    self.pieces.append("")
                self.pieces[-1] += part[0] if part in ("{{", "}}") else part
        self.trailing = len(self.gaps) == len(self.pieces)  # ends with a gap
        self.steps = 0

    def fullmatch(self, text: str) -> bool:
        """Whether the whole of `text` is what this template gives for some placeholder values."""
        pieces, gaps = self.pieces, self.gaps
        self.steps += 1
        if not gaps:
            return text == pieces[0]
        if not text.startswith(pieces[0]):
            return False
        pos = len(pieces[0])
        last = len(pieces) - 1 if not self.trailing else len(pieces)
        for i in range(1, last):
            self.steps += 1
            found = text.find(pieces[i], pos + gaps[i - 1])
            if found < 0:
                return False
            pos = found + len(pieces[i])
        if self.trailing:
            return len(text) - pos >= gaps[-1]
        self.steps += 1
        tail = pieces[-1]
        return text.endswith(tail) and len(text) - len(tail) >= pos + gaps[-1]

    def __repr__(self) -> str:
        return f"Template({self.pattern!r})"
