"""Form fields of the dock widgets and the parsing of their text (``ValueError`` naming the
field)."""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import QSpinBox

from insilico.brain import models


def spin_box(lo: int, hi: int, value: int) -> QSpinBox:
    """An integer field from ``lo`` to ``hi`` holding ``value``, right-aligned."""
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    box.setAlignment(Qt.AlignmentFlag.AlignRight)
    return box


def parse_pair(text: str, name: str) -> tuple[float, float]:
    """'1, -2' (or '1; -2') -> (1.0, -2.0): a position in degrees."""
    try:
        x, y = (float(v) for v in text.replace(";", ",").split(","))
    except ValueError:
        raise ValueError(f"{name} must be two numbers 'x, y' in degrees, got {text!r}") from None
    return x, y


def parse_site_numbers(text: str, name: str) -> list[int]:
    """'3, 17, 22' -> [3, 17, 22]: site numbers of the implanted array (at least one)."""
    try:
        values = [int(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be site numbers like '3, 17, 22', got {text!r}") from None
    if not values:
        raise ValueError(f"{name}: give at least one site number")
    return values


def model_names() -> list[str]:
    """The zoo's model names (a short default list when the zoo table cannot be read)."""
    try:
        return [str(n) for n in models()["name"]]
    except Exception:  # the zoo table is optional here: the field is editable
        return ["efficientnet_lite0", "tiny"]
