"""What the panel's parts share: the magic line's prefix, the label width, and the flag that tells
a control's change event apart from the panel writing its own controls.

The parts (controls.py, simple.py, input_control.py, checks.py, classroom.py, display.py, run.py)
are small classes that `Panel` builds and wires together; each is handed the widgets it reads and
the callbacks it makes, so none of them knows the panel.
"""

from __future__ import annotations

from types import TracebackType

#: What the magic line starts with; `build_spec` gets the rest.
PREFIX = "%%oxenimage"
_DESC = {"description_width": "110px"}


class Quiet:
    """Raised while the panel writes its own controls (a refresh, a restore, new model choices),
    so the change events that writing fires are not taken for the user's. Re-entrant: leaving
    puts back the value it had on entry."""

    def __init__(self) -> None:
        self.active = False
        self._saved: list[bool] = []

    def __enter__(self) -> Quiet:
        self._saved.append(self.active)
        self.active = True
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.active = self._saved.pop()
