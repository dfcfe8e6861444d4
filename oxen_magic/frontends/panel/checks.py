"""Live checks of the panel's controls: pure (the grammar plus the schemas read when the panel
opened, checked with `plan.make_plan`), so no request is sent while someone types."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from oxen_magic.core.errors import UsageProblem
from oxen_magic.core.money import EPSILON, dollars
from oxen_magic.frontends.panel.base import PREFIX
from oxen_magic.frontends.panel.display import _error, _note
from oxen_magic.frontends.panel.input_control import roles_note
from oxen_magic.frontends.panel.model_groups import about, guidance_param, known
from oxen_magic.frontends.panel.simple import is_guidance
from oxen_magic.planning import options, prompts, ranges
from oxen_magic.planning.plan import make_plan, suggest
from oxen_magic.session.input_images import locate

if TYPE_CHECKING:
    from oxen_magic.frontends.panel.controls import Controls
    from oxen_magic.frontends.panel.simple import SimpleControls
    from oxen_magic.session.session import Session

#: The controls in the order a person fills them in: the first problem is the one the status names.
_ORDER = ("prompt", "models", "seeds", "steps", "aspect_ratio", "input_image", "extra_options", "general")
#: Which control a planning problem belongs to, by the request field it names.
_FIELDS = {
    "aspect_ratio": "aspect_ratio",
    "num_inference_steps": "steps",
    "seed": "seeds",
    "input_image": "input_image",
    "prompt": "prompt",
}


class Checks:
    """Finds the problems of the controls (by control name), writes the message beside each and
    the plain words on the chosen models (`about_models`), and the summary a ready line shows.

    Handed the session (defaults, budget), the option controls it reads, the messages, the
    guidance part (its names and words), where variables live and why no model can be picked."""

    def __init__(
        self,
        session: Session,
        controls: Controls,
        messages: Mapping[str, widgets.HTML],
        *,
        guidance: SimpleControls,
        user_ns: Callable[[], Mapping[str, Any]],
        no_models_reason: Callable[[], str],
        models_note: str | None,
    ) -> None:
        self.session, self.controls, self.messages, self.guidance = session, controls, messages, guidance
        self.user_ns, self.no_models_reason, self.models_note = user_ns, no_models_reason, models_note
        self.schemas = controls.schemas
        self.summary = ""
        self.about_models = widgets.HTML(
            value="", layout=widgets.Layout(margin="0 0 0 114px", max_width="760px")
        )

    def validate(self, line: str) -> dict[str, str]:
        """The problems of the controls and `line` (by control name), each also shown beside its
        control; pure (no request is sent)."""
        c = self.controls
        variables = self.user_ns()
        errors: dict[str, str] = {}
        problem = _prompt_problem(c.prompt.value, c.input_image.value, variables)
        if problem:
            errors["prompt"] = problem
        if not c.models.value:
            errors["models"] = self.no_models_reason() or "Pick at least one model."
        for name, text, check in (
            ("seeds", c.seeds.value, ranges.parse_seeds),
            ("steps", c.steps.value, lambda t: ranges.parse_ints(t, "steps", lo=1, hi=1000)),
        ):
            try:
                if text.strip():
                    check(text)
            except UsageProblem as exc:
                errors[name] = str(exc)
        problem = self._extra_problem(c.extra_options.value)
        if problem:
            errors["extra_options"] = problem
        if not errors:
            self._check_line(errors, variables, line)
        self._show(errors)
        return errors

    def _show(self, errors: Mapping[str, str]) -> None:
        notice = self._models_notice() or roles_note(self.controls.models.value, self.schemas)
        for name, message in self.messages.items():
            if name in errors:
                message.value = _error(errors[name])
            elif name == "models" and notice:
                message.value = _note(notice)
            else:
                message.value = ""
        self._show_about()

    def _show_about(self) -> None:
        """Plain words on each chosen model (what it is for, steps, price), from its description."""
        lines = [about(known(m, self.schemas), m) for m in self.controls.models.value]
        items = "".join(f'<li style="margin:0">{_note(line)}</li>' for line in lines)
        self.about_models.value = (
            f'<ul style="margin:0;padding-left:18px;line-height:1.4">{items}</ul>' if lines else ""
        )

    def _models_notice(self) -> str:
        """Why the list could not be read, or the chosen ids it does not hold (checked at Generate:
        a private or fine-tuned model may exist without being listed)."""
        if self.schemas is None:
            return self.models_note or ""
        unlisted = [m for m in self.controls.models.value if m not in self.schemas]
        return " ".join(
            f"{suggest(m, list(self.schemas))} (not in the list; checked when you press Generate)"
            for m in unlisted
        )

    def _check_line(self, errors: dict[str, str], variables: Mapping[str, Any], line: str) -> None:
        """The whole line through the grammar, then against the schemas read at open."""
        self.summary = ""
        try:
            spec = options.build_spec(
                line[len(PREFIX) :], self.controls.prompt.value, variables, self.session.defaults()
            )
            spec = locate(spec)  # the files named exist (nothing is read while someone types)
        except UsageProblem as exc:
            errors["input_image" if exc.field == "input_image" else "general"] = str(exc)
            return
        schemas = self.schemas or {}
        try:
            plan = make_plan(spec, {m: schemas.get(m) for m in spec.models})
        except UsageProblem as exc:
            where = _FIELDS.get(exc.field or "", "general")
            if where == "general" and spec.params:
                where = "extra_options"
            errors[where] = str(exc)
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
        ours = self.guidance.guidance_names() if self.guidance.guidance_words() else set()
        own = [m for m in self.controls.models.value if guidance_param(known(m, self.schemas))]
        expected = {f"{m} takes no {g}; sent without it." for m in own for g in ours}
        notes = [n for n in plan.notes if n not in expected]
        self.summary = "\n".join([" · ".join(bits), *notes])

    def _over_budget(self, cost: float | None) -> str | None:
        """Said beside the estimate when it passes what the budget has left, so the status never
        says "Ready" over a run the click will refuse (cached pictures are free: only a warning)."""
        if not cost:
            return None
        try:
            left = self.session.spend().left
        except (UsageProblem, OSError):
            return None  # a bad budget value is said by the spend line
        if left is None or cost <= left + EPSILON:
            return None
        return f"more than the {dollars(left)} left of the budget (pictures made before are free)"

    def _extra_problem(self, text: str) -> str | None:
        """A problem with the "More options" text, or None, checked against the CHOSEN models (a
        `--guidance 3` typo is answered for them, not for the default model)."""
        if not text.strip():
            return None
        chosen = ",".join(self.controls.models.value)
        model = self.session.defaults().model
        try:
            words = options.split_words(text)
            if self.guidance.guidance_names() and any(_is_guidance_word(w) for w in words):
                return "Set guidance with the Guidance slider above (each model gets its own name), not here."
            options.parse_words(["--model", chosen, *words] if chosen else words, model)
            args = options.parse_words(words, model)
        except UsageProblem as exc:
            return str(exc)
        return _controlled_problem(args)


def waiting(errors: Mapping[str, str]) -> str:
    """Why Generate is disabled (the first problem, in the order of the controls), or ""."""
    for name in sorted(errors, key=lambda n: _ORDER.index(n) if n in _ORDER else len(_ORDER)):
        return f"Generate is off until this is fixed: {errors[name]}"
    return ""


def _prompt_problem(prompt: str, input_image: str, variables: Mapping[str, Any]) -> str | None:
    """What is wrong with the prompt box (empty, an empty part between ---, an unknown {name})."""
    if not prompt.strip() and not input_image.strip():  # an upscaler needs none
        return "Write a prompt first."
    if not prompt.strip():
        return None
    try:
        texts = prompts.split_prompts(prompt)
        if any(not t for t in texts):
            raise UsageProblem("A prompt between --- lines is empty; write one or remove the ---.")
        for text in texts:
            prompts.fill_template(text, variables)
    except UsageProblem as exc:
        return str(exc)
    return None


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
