"""Perturbations as reversible forward hooks on a brain model's region layers.

A perturbation acts on the output of a region's layer, so the recorded units *and* every
downstream layer see it. Most perturbations are *unit maps*: per unit of the region a
multiplicative ``gain`` and an additive ``drive`` (spikes/s), and a ``silencing`` factor on the
unit's final firing rate. With the region's rate commitment (``BrainModel.rates``: drive
``u = b + g * a`` spikes/s, rate ``R(u)`` saturating onto [0, max_hz]) the hook sets

    a' = gain * a + drive / g,        rate' = silencing * R(b + g * a' / gain_s)

so ``gain`` and ``drive`` act on the layer's activations (every downstream layer sees them),
a microstimulation ``drive`` adds to ``u`` (and so saturates at max_hz), and the silencing
factor multiplies the final rate of the recorded units only: factor 0 -> exactly 0 spikes/s,
factor 1 -> untouched, monotone in between. ``gain_s`` is the gain of silenced units
(silencing < 1; 1 elsewhere): the recorded rate undoes it, so a muscimol factor ``f`` (gain =
silencing = f) gives downstream layers f * a and the recorded unit f * R(u) — one divisive
effect, not f applied twice. (A drive on a silenced unit is divided by its gain too.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from insilico.brain import BrainModel


def check_nonnegative(name: str, value: Any, unit: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number >= 0 ({unit}), got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a number >= 0 ({unit}), got {value!r}")
    return v


def check_at_mm(at_mm: Any) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in at_mm)
    except (TypeError, ValueError):
        raise ValueError(
            f"at_mm must be (x_mm, y_mm) on the cortical sheet, got {at_mm!r}"
        ) from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"at_mm must be finite (x_mm, y_mm), got {at_mm!r}")
    return x, y


@dataclass
class UnitMaps:
    """Per-unit effect of a perturbation on one region (flat unit order), float32 tensors."""

    gain: torch.Tensor
    drive_hz: torch.Tensor
    silencing: torch.Tensor

    @classmethod
    def identity(cls, n: int) -> UnitMaps:
        return cls(torch.ones(n), torch.zeros(n), torch.ones(n))

    def then(self, other: UnitMaps) -> UnitMaps:
        """This perturbation followed by ``other`` on the same units."""
        return UnitMaps(
            self.gain * other.gain,
            self.drive_hz * other.gain + other.drive_hz,
            self.silencing * other.silencing,
        )


@dataclass
class Handle:
    """Removes what ``attach`` added (forward hooks, rate modifiers); idempotent."""

    removers: list[Callable[[], None]] = field(default_factory=list)

    def remove(self) -> None:
        while self.removers:
            self.removers.pop()()


class Perturbation:
    """Base class. Subclasses set ``region`` and implement ``unit_maps`` or ``attach``."""

    region: str
    #: where the constants come from (shown in ``describe()``)
    citation: str = ""

    def describe(self) -> dict[str, Any]:
        """JSON-safe description for provenance."""
        params = {k: v for k, v in vars(self).items() if not k.startswith("_")}
        for k, v in params.items():
            if isinstance(v, np.ndarray | torch.Tensor):
                params[k] = np.asarray(v).tolist()
        return {"type": type(self).__name__, **params, "citation": self.citation}

    def __repr__(self) -> str:
        d = self.describe()
        args = ", ".join(f"{k}={v!r}" for k, v in d.items() if k not in ("type", "citation"))
        return f"{d['type']}({args})"

    def unit_maps(self, model: BrainModel) -> UnitMaps:
        raise NotImplementedError

    def attach(self, model: BrainModel, present: Callable | None = None) -> Handle:
        """Install on ``model``; ``present`` renders stimuli (needed by mean ablation)."""
        maps = self.unit_maps(model)
        return attach_maps(model, self.region, maps)

    # matched controls ------------------------------------------------------------------
    def random_control(self, model: BrainModel, rng: np.random.Generator) -> Perturbation:
        """The same perturbation at a random place (same size), for matched controls."""
        raise NotImplementedError(f"{type(self).__name__} has no matched random control")


def attach_maps(model: BrainModel, region: str, maps: UnitMaps) -> Handle:
    """Register a forward hook applying ``maps`` to ``region``'s layer output."""
    ru = model.region_units(region)
    rc = model.region(region)
    gain_per_hz = (rc.max_hz - rc.baseline_hz) / ru.rate_scale
    c, h, w = ru.shape
    gain = maps.gain.to(model.device).view(1, c, h, w)
    shift = (maps.drive_hz / gain_per_hz).to(model.device).view(1, c, h, w)
    trivial_gain = bool((maps.gain == 1).all())
    trivial_shift = bool((maps.drive_hz == 0).all())

    def hook(module, args, output: torch.Tensor) -> torch.Tensor:
        out = output if trivial_gain else output * gain
        return out if trivial_shift else out + shift

    handle = model.network.get_submodule(ru.layer).register_forward_hook(hook)
    removers = [handle.remove]
    if not bool((maps.silencing == 1).all()):
        # the recorded rate undoes the output gain of silenced units (one effect, not two)
        undo = torch.where(maps.silencing < 1, maps.gain, torch.ones_like(maps.gain))
        removers.append(model.add_rate_silencing(region, maps.silencing, undo))
    return Handle(removers)


def sheet_distance_mm(
    model: BrainModel, region: str, at_mm: tuple[float, float], hemisphere: str = "left"
) -> torch.Tensor:
    """Distance (mm) of every unit of ``region`` from ``at_mm`` on ``hemisphere``'s sheet
    (inf for the other hemisphere's units); clear error off the sheet."""
    ru = model.region_units(region)
    ex, ey = ru.sheet_extent_mm
    x, y = at_mm
    if not (0 <= x <= ex and 0 <= y <= ey):
        raise ValueError(
            f"at_mm={at_mm!r} is off the {region} sheet of {model.name!r}, which spans "
            f"[0, {ex:.2f}] x [0, {ey:.2f}] mm"
        )
    t = ru.table
    d = np.hypot(t["tissue_x_mm"].to_numpy() - x, t["tissue_y_mm"].to_numpy() - y)
    d[t["hemisphere"].to_numpy() != hemisphere] = np.inf
    return torch.as_tensor(d, dtype=torch.float32)


def resolve_units(model: BrainModel, region: str, units: Sequence | np.ndarray) -> np.ndarray:
    """Flat unit indices from neuroid ids (``"IT.3.1.2"``) or integer indices."""
    ru = model.region_units(region)
    arr = np.asarray(units)
    if arr.ndim != 1 or len(arr) == 0:
        raise ValueError(f"units must be a non-empty list of neuroid ids or indices, got {units!r}")
    if arr.dtype.kind in "iu":
        n = len(ru.table)
        if arr.min() < 0 or arr.max() >= n:
            raise ValueError(f"unit indices must lie in [0, {n}) for {region}, got {units!r}")
        return arr.astype(np.int64)
    return ru.units_of([str(u) for u in arr])
