"""What to optimise: objectives as small composable values (``a + 0.1 * b``, ``-a``).

An objective maps a :class:`Batch` (the responses and images of one optimisation step) to one
value per image, to be *maximised*. Each has a readable ``description``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """One step's state: ``rates`` (B, N) spikes/s of the recorded population, ``weights``
    (B, N) each image's target weights (rows sum to 1), ``images`` (B, 3, H, W) linear
    luminance deviations from the background as shown (after constraints), ``z`` (B, N) rates
    normalised by the population's natural-image mean and s.d. (for ``one_hot``), and ``goal``
    (B, N) target patterns for ``match`` (NaN where unused)."""

    rates: torch.Tensor
    weights: torch.Tensor
    images: torch.Tensor
    z: torch.Tensor | None = None
    goal: torch.Tensor | None = None


class Objective:
    """A per-image value to maximise, with a description; compose with + - * /."""

    def __init__(self, fn: Callable[[Batch], torch.Tensor], description: str) -> None:
        self.fn = fn
        self.description = description

    def __call__(self, batch: Batch) -> torch.Tensor:
        return self.fn(batch)

    def __repr__(self) -> str:
        return f"Objective({self.description})"

    def __add__(self, other: Objective | float) -> Objective:
        if isinstance(other, int | float):
            return Objective(lambda b: self(b) + other, f"{self.description} + {other:g}")
        return Objective(lambda b: self(b) + other(b), f"{self.description} + {other.description}")

    __radd__ = __add__

    def __neg__(self) -> Objective:
        return Objective(lambda b: -self(b), f"-({self.description})")

    def __sub__(self, other: Objective | float) -> Objective:
        return self + (-other)

    def __mul__(self, k: float) -> Objective:
        if not isinstance(k, int | float):
            raise TypeError(f"an objective can be scaled by a number, not {type(k).__name__}")
        return Objective(lambda b: k * self(b), f"{k:g} * {self.description}")

    __rmul__ = __mul__

    def __truediv__(self, k: float) -> Objective:
        return self * (1.0 / k)


def drive() -> Objective:
    """Raise each image's target rate (spikes/s; mean over a population target)."""
    return Objective(lambda b: (b.rates * b.weights).sum(1), "drive targets (spikes/s)")


def silence() -> Objective:
    """Lower each image's target rate."""
    return Objective(lambda b: -(b.rates * b.weights).sum(1), "silence targets (-spikes/s)")


def one_hot(temperature: float = 1.0) -> Objective:
    """Bashivan et al. 2019's one-hot population control: the log softmax score of the
    target among the recorded population, on rates z-scored by natural-image statistics."""

    def fn(b: Batch) -> torch.Tensor:
        if b.z is None:
            raise ValueError("one_hot needs population statistics (z-scored rates)")
        logp = torch.log_softmax(b.z / temperature, dim=1)
        return torch.logsumexp(logp + torch.log(b.weights.clamp(min=1e-30)), dim=1)

    return Objective(fn, f"one-hot softmax score of targets (T={temperature:g})")


def match() -> Objective:
    """Reach a given population response pattern: minus the mean squared error (spikes/s)²."""

    def fn(b: Batch) -> torch.Tensor:
        if b.goal is None:
            raise ValueError("match needs a target pattern (goal=)")
        used = ~torch.isnan(b.goal)
        err = torch.where(used, b.rates - b.goal.nan_to_num(), torch.zeros_like(b.rates))
        return -(err**2).sum(1) / used.sum(1).clamp(min=1)

    return Objective(fn, "match population pattern (-MSE)")


def total_variation() -> Objective:
    """Minus the mean absolute difference of neighbouring pixels (smoothness regulariser)."""

    def fn(b: Batch) -> torch.Tensor:
        x = b.images
        dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean(dim=(1, 2, 3))
        dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean(dim=(1, 2, 3))
        return -(dx + dy)

    return Objective(fn, "total variation penalty")


def l2() -> Objective:
    """Minus the mean squared deviation from the background (energy regulariser)."""
    return Objective(lambda b: -(b.images**2).mean(dim=(1, 2, 3)), "L2 penalty")


OBJECTIVES = {"drive": drive, "silence": silence, "one_hot": one_hot, "match": match}


def named(name: str | Objective) -> Objective:
    """An objective by name (drive, silence, one_hot, match) or an Objective as is."""
    if isinstance(name, Objective):
        return name
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]()
