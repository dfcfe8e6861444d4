"""Live checks of the panel's controls: pure (the grammar plus the schemas read when the panel
opened, checked with `plan.make_plan`), so no request is sent while someone types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import options
from ..errors import UsageProblem
from ..plan import make_plan, suggest
from .base import PREFIX, PanelBase
from .display import _error, _note
from .model_groups import about, guidance_param, known
from .simple import is_guidance

#: The controls in the order a person fills them in: the first problem is the one the status names.
_ORDER = ("prompt", "models", "seeds", "steps", "aspect_ratio", "input_image", "extra_options", "general")


class Checks(PanelBase):
    """Fills `_errors` (by control name) and the message next to each control."""

    _summary = ""

    def _validate(self) -> None:
        """Fill `self._errors` and the messages; pure (no request is sent)."""
        errors: dict[str, str] = {}
        variables = self._user_ns()
        prompt = self.prompt.value
        if not prompt.strip() and not self.input_image.value.strip():  # an upscaler needs none
            errors["prompt"] = "Write a prompt first."
        elif prompt.strip():
            try:
                texts = options.split_prompts(prompt)
                if any(not t for t in texts):
                    raise UsageProblem("A prompt between --- lines is empty; write one or remove the ---.")
                for text in texts:
                    options.fill_template(text, variables)
            except UsageProblem as exc:
                errors["prompt"] = str(exc)
        if not self.models.value:
            errors["models"] = self._no_models_reason() or "Pick at least one model."
        if self.seeds.value.strip():
            try:
                options.parse_seeds(self.seeds.value)
            except UsageProblem as exc:
                errors["seeds"] = str(exc)
        if self.steps.value.strip():
            try:
                options.parse_ints(self.steps.value, "steps", lo=1, hi=1000)
            except UsageProblem as exc:
                errors["steps"] = str(exc)
        problem = self._extra_problem(self.extra_options.value)
        if problem:
            errors["extra_options"] = problem
        if not errors:
            self._check_line(errors, variables)
        self._errors = errors
        for name, message in self.messages.items():
            if name in errors:
                message.value = _error(errors[name])
            elif name == "models" and (self._models_notice() or self._roles_note()):
                message.value = _note(self._models_notice() or self._roles_note())
            else:
                message.value = ""
        self._show_about()
        if "general" in errors:
            self._set_status(errors["general"], error=True)
        elif not self.running:
            self._set_status(self._waiting() or self._summary, error=False)

    def _waiting(self) -> str:
        """Why Generate is disabled (the first problem, in the order of the controls), or ""."""
        for name in sorted(self._errors, key=lambda n: _ORDER.index(n) if n in _ORDER else len(_ORDER)):
            return f"Generate is off until this is fixed: {self._errors[name]}"
        return ""

    def _show_about(self) -> None:
        """Plain words on each chosen model (what it is for, steps, price), from its description."""
        lines = [about(known(m, self._schemas), m) for m in self.models.value]
        items = "".join(f'<li style="margin:0">{_note(line)}</li>' for line in lines)
        self.about_models.value = (
            f'<ul style="margin:0;padding-left:18px;line-height:1.4">{items}</ul>' if lines else ""
        )

    def _models_notice(self) -> str:
        """Why the list could not be read, or the chosen ids it does not hold (checked at Generate:
        a private or fine-tuned model may exist without being listed)."""
        if self._schemas is None:
            return self._models_note or ""
        unlisted = [m for m in self.models.value if m not in self._schemas]
        return " ".join(
            f"{suggest(m, list(self._schemas))} (not in the list; checked when you press Generate)"
            for m in unlisted
        )

    def _check_line(self, errors: dict[str, str], variables: Mapping[str, Any]) -> None:
        """The whole line through the grammar, then against the schemas read at open."""
        self._summary = ""
        try:
            spec = options.build_spec(
                self._line[len(PREFIX) :], self.prompt.value, variables, self._defaults()
            )
        except UsageProblem as exc:
            errors["input_image" if exc.field == "input_image" else "general"] = str(exc)
            return
        schemas = self._schemas or {}
        try:
            plan = make_plan(spec, {m: schemas.get(m) for m in spec.models})
        except UsageProblem as exc:
            text = str(exc)
            where = {
                "aspect_ratio": "aspect_ratio",
                "num_inference_steps": "steps",
                "seed": "seeds",
                "input_image": "input_image",
                "prompt": "prompt",
            }.get(exc.field or "", "general")
            if where == "general" and spec.params:
                where = "extra_options"
            errors[where] = text
            return
        count = len(plan.requests)
        bits = [f"Ready: {count} image{'s' if count != 1 else ''}"]
        cost = plan.cost_line()
        if cost:
            bits.append(cost)
        local = (spec.host or self.session.settings.host or "").strip().lower() == "local"
        over = None if local else self._over_budget(plan.cost)  # the embedded hub bills nothing
        if over:
            bits[0] = bits[0].removeprefix("Ready: ")  # not "Ready" over a run a click may refuse
            bits.append(over)
        # the Guidance slider writes each chosen model's own name: that a model with guidance takes
        # no `guidance_scale` is expected, not news (a model without any still says so)
        ours = self._guidance_names() if self._guidance_words() else set()
        own = [m for m in self.models.value if guidance_param(known(m, self._schemas))]
        expected = {f"{m} takes no {g}; sent without it." for m in own for g in ours}
        notes = [n for n in plan.notes if n not in expected]
        self._summary = "\n".join([" · ".join(bits), *notes])

    def _over_budget(self, cost: float | None) -> str | None:
        """Said beside the estimate when it passes what the budget has left, so the status never
        says "Ready" over a run the click will refuse (cached pictures are free: only a warning)."""
        if not cost:
            return None
        try:
            left = self.session.spend().left
        except (UsageProblem, OSError):
            return None  # a bad budget value is said by the spend line
        if left is None or cost <= left + 1e-9:
            return None
        return f"more than the ${left:.3f} left of the budget (pictures made before are free)"

    def _extra_problem(self, text: str) -> str | None:
        """A problem with the "More options" text, or None, checked against the CHOSEN models (a
        `--guidance 3` typo is answered for them, not for the default model)."""
        if not text.strip():
            return None
        chosen = ",".join(self.models.value)
        try:
            words = options.split_words(text)
            if self._guidance_names() and any(_is_guidance_word(w) for w in words):
                return "Set guidance with the Guidance slider above (each model gets its own name), not here."
            options.parse_words(["--model", chosen, *words] if chosen else words, self._defaults().model)
            args = options.parse_words(words, self._defaults().model)
        except UsageProblem as exc:
            return str(exc)
        return _controlled_problem(args)


def _is_guidance_word(word: str) -> bool:
    """`--guidance`, `--guidance-scale=3`, or the `guidance=3` of `--param guidance=3`."""
    name = word[2:] if word.startswith("--") else word
    name = name.split("=", 1)[0].replace("-", "_")
    return is_guidance(name) and (word.startswith("--") or "=" in word)


def _controlled_problem(args: Any) -> str | None:
    """An option in "More options" that has a control of its own, or stray prompt words."""
    for dest, label in (
        ("model", "Models"),
        ("seed", "Seeds"),
        ("aspect_ratio", "Aspect ratio"),
        ("steps", "Steps"),
        ("input_image", "Input image"),
    ):
        if getattr(args, dest):
            flag = "--" + dest.replace("_", "-")
            return f"Set {flag} with the {label} control above, not here."
    if args.list_models:
        return "--list-models is for %oxenimage; run it in a cell."
    if args.prompt:
        return f"Unexpected words {' '.join(args.prompt)!r}; the prompt goes in the Prompt box."
    return None
