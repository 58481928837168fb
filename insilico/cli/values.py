"""Text of command-line flags -> values: ``X,Y`` pairs, ``--set`` values and ranges, ``--sites``
numbers, and the ``--stimuli`` set they describe. Bad text raises :class:`CLIError`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

STIMULUS_KINDS = ("gratings", "gabors", "natural", "white_noise", "pink_noise", "blank", "folder")


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def parse_pair(text: str, name: str) -> tuple[float, float]:
    """'1.5,-1' -> (1.5, -1.0); ``name`` is the flag named in the error."""
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"{name} must be two numbers 'X,Y', got {text!r}") from None
    return x, y


def parse_value(text: str) -> Any:
    """'3' -> 3, '0.5' -> 0.5, '0:180:15' -> range list, '1,2,4' -> list, else the string."""
    if "," in text:
        return [parse_value(t) for t in text.split(",") if t != ""]
    if text.count(":") == 2 and "/" not in text:
        try:
            start, stop, step = (float(t) for t in text.split(":"))
        except ValueError:
            return text
        if step <= 0:
            raise CLIError(f"range {text!r} needs a positive step")
        values = list(_frange(start, stop, step))
        return [int(v) if float(v).is_integer() else v for v in values]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _frange(start: float, stop: float, step: float):
    k = 0
    while start + k * step < stop - 1e-12:
        yield round(start + k * step, 10)
        k += 1


def site_numbers(text: str) -> list[int]:
    """``--sites 3,17,22``: site numbers of the implanted array (same meaning everywhere)."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CLIError(f"--sites must be site numbers like 3,17,22, got {text!r}") from None


def stimulus_set(kind: str, settings: Sequence[str]):
    """The ``--stimuli KIND`` set with its ``--set KEY=VALUE`` parameters."""
    import stimuli  # lazily, like the commands: `insilico --help` must start fast

    params: dict[str, Any] = {}
    for item in settings:
        if "=" not in item:
            raise CLIError(f"--set expects KEY=VALUE, got {item!r}")
        key, text = item.split("=", 1)
        params[key.strip()] = parse_value(text.strip())
    for key in ("position_deg", "size_px"):
        if key in params and isinstance(params[key], list):
            params[key] = tuple(params[key])
    if kind == "folder":
        if "path" not in params:
            raise CLIError("--stimuli folder needs --set path=DIR")
        fn, args = stimuli.from_folder, {"path": str(params.pop("path"))}
    else:
        fn, args = getattr(stimuli, kind), {}
    try:
        return fn(**args, **params)
    except TypeError as err:
        raise CLIError(f"--stimuli {kind}: {err}") from None
