"""Circular apertures with a raised-cosine edge, in degrees of visual angle.

One window for every stimulus that has an aperture: grating apertures, :func:`stimuli.equate`
and the synthesis constraints (:class:`stimuli.synthesis.DisplayConstraints`).
"""

from __future__ import annotations

import math

import torch


def raised_cosine(r: torch.Tensor, radius: torch.Tensor | float, edge: torch.Tensor | float):
    """Window value at distance ``r`` from the centre: 1 inside ``radius - edge``, 0 beyond
    ``radius``, a raised-cosine ramp ``edge`` wide between (all in the same unit, edge > 0)."""
    ramp = ((radius - r) / edge).clamp(0.0, 1.0)
    return 0.5 - 0.5 * torch.cos(math.pi * ramp)


def circular_window(shape: tuple[int, int], size_deg: float, edge_deg: float) -> torch.Tensor:
    """(H, W) window in [0, 1] over an image ``size_deg`` wide: 1 inside a circle of diameter
    ``size_deg``, with a raised-cosine edge ``edge_deg`` wide."""
    h, w = shape
    dpp = size_deg / w
    y = ((h - 1) / 2 - torch.arange(h, dtype=torch.float32))[:, None] * dpp
    x = (torch.arange(w, dtype=torch.float32) - (w - 1) / 2)[None, :] * dpp
    return raised_cosine(torch.sqrt(x**2 + y**2), size_deg / 2, max(edge_deg, 1e-6))
