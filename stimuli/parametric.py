"""Parametric stimuli drawn from their parameters: gratings, Gabor patches, uniform fields.

Orientation convention: ``orientation_deg`` is the direction of luminance modulation,
counter-clockwise from the +x axis, so 0° gives vertical bars and 90° horizontal bars.
Luminance is linear in [0, 1]; ``mean`` is the mean luminance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from stimuli.apertures import raised_cosine
from stimuli.stimulus_set import Rendered, Renderer, StimulusSet, check_size_deg
from stimuli.tables import (
    DEFAULT_PPD,
    as_list,
    check_ppd,
    check_unit_interval,
    column,
    factorial,
    positions,
    shape_for,
    stimulus_ids,
)


def _deg_grid(rows: pd.DataFrame, shape_px: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-stimulus x, y coordinates in degrees of each pixel centre: (n, H, W) each."""
    h, w = shape_px
    dpp = torch.as_tensor(rows["size_deg"].to_numpy(dtype=np.float32) / w)[:, None, None]
    cols = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
    rws = (h - 1) / 2 - torch.arange(h, dtype=torch.float32)
    return cols[None, None, :] * dpp, rws[None, :, None] * dpp


def _is(rows: pd.DataFrame, name: str, value: str) -> torch.Tensor:
    return torch.tensor((rows[name] == value).to_numpy(dtype=bool))[:, None, None]


def _aperture(rows: pd.DataFrame, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Circular aperture (diameter = size_deg) with a raised-cosine edge ``edge_deg`` wide."""
    if "aperture" not in rows or (rows["aperture"] == "none").all():
        return None
    r = torch.sqrt(x**2 + y**2)
    radius = column(rows, "size_deg") / 2
    alpha = raised_cosine(r, radius, column(rows, "edge_deg").clamp(min=1e-6))
    circle = _is(rows, "aperture", "circle")
    return torch.where(circle, alpha, torch.ones_like(alpha))[:, None]


def _rgb(luminance: torch.Tensor) -> torch.Tensor:
    return luminance[:, None].expand(-1, 3, -1, -1).contiguous()


def grating_renderer(shape: tuple[int, int]) -> Renderer:
    """Renders rows of a grating or Gabor table (``gratings``/``gabors``) at ``shape`` px."""

    def render(rows: pd.DataFrame) -> Rendered:
        x, y = _deg_grid(rows, shape)
        theta = torch.deg2rad(column(rows, "orientation_deg"))
        phase = torch.deg2rad(column(rows, "phase_deg"))
        arg = 2 * math.pi * column(rows, "sf_cpd") * (x * torch.cos(theta) + y * torch.sin(theta))
        wave = torch.sin(arg + phase)
        square = _is(rows, "waveform", "square")
        wave = torch.where(square, torch.sign(wave), wave)
        if "sigma_deg" in rows:
            wave = wave * torch.exp(-(x**2 + y**2) / (2 * column(rows, "sigma_deg") ** 2))
        lum = column(rows, "mean") * (1 + column(rows, "contrast") * wave)
        return Rendered(_rgb(lum), _aperture(rows, x, y))

    return render


def _grating_set(kind: str, position_deg: Any, ppd: float, **params: Any) -> StimulusSet:
    """The crossed ``params`` at every position, checked, as a set of ``kind`` + "s"."""
    table = positions(factorial(**params), position_deg)
    for size in table["size_deg"].unique():
        check_size_deg(size)
    for sf in table["sf_cpd"].unique():
        check_size_deg(sf, "sf_cpd (cycles per degree)")
    for name in ("contrast", "mean"):
        check_unit_interval(name, table[name].unique())
    if ((table["mean"] * (1 + table["contrast"])) > 1.0 + 1e-9).any():
        raise ValueError(
            "mean * (1 + contrast) exceeds 1: the grating would leave the display gamut"
        )
    for w in table["waveform"].unique():
        if w not in ("sine", "square"):
            raise ValueError(f"waveform must be 'sine' or 'square', got {w!r}")
    for a in table.get("aperture", pd.Series(["none"])).unique():
        if a not in ("circle", "none"):
            raise ValueError(f"aperture must be 'circle' or 'none', got {a!r}")
    shape = shape_for(float(table["size_deg"].max()), ppd)
    nyquist = shape[1] / float(table["size_deg"].max()) / 2
    if float(table["sf_cpd"].max()) > nyquist:
        raise ValueError(
            f"sf_cpd={table['sf_cpd'].max()} exceeds the Nyquist limit {nyquist:.1f} cycles/deg "
            f"at ppd={ppd}; raise ppd"
        )
    table.insert(0, "stimulus_id", stimulus_ids(kind, table))
    return StimulusSet(table, shape, grating_renderer(shape), f"{kind}s", f"{kind}s-v1")


def gratings(
    size_deg: float | Sequence[float],
    position_deg: tuple[float, float] | Sequence[tuple[float, float]] = (0.0, 0.0),
    orientation_deg: float | Iterable[float] = 0.0,
    sf_cpd: float | Iterable[float] = 2.0,
    phase_deg: float | Iterable[float] = 0.0,
    contrast: float | Iterable[float] = 1.0,
    mean: float = 0.5,
    waveform: str = "sine",
    aperture: str = "circle",
    edge_deg: float = 0.1,
    ppd: float = DEFAULT_PPD,
) -> StimulusSet:
    """Sine or square-wave gratings in a circular aperture (diameter ``size_deg``).

    sf in cycles/deg, orientation and phase in deg, Michelson ``contrast``, ``mean`` linear
    luminance; the aperture edge is a raised cosine ``edge_deg`` wide. Every combination of
    list-valued parameters is one stimulus (and every position in a list of positions).
    """
    return _grating_set(
        "grating",
        position_deg,
        check_ppd(ppd),
        size_deg=size_deg,
        orientation_deg=orientation_deg,
        sf_cpd=sf_cpd,
        phase_deg=phase_deg,
        contrast=contrast,
        mean=mean,
        waveform=waveform,
        aperture=aperture,
        edge_deg=edge_deg,
    )


def gabors(
    sigma_deg: float | Sequence[float],
    position_deg: tuple[float, float] | Sequence[tuple[float, float]] = (0.0, 0.0),
    orientation_deg: float | Iterable[float] = 0.0,
    sf_cpd: float | Iterable[float] = 2.0,
    phase_deg: float | Iterable[float] = 0.0,
    contrast: float | Iterable[float] = 1.0,
    mean: float = 0.5,
    size_deg: float | None = None,
    ppd: float = DEFAULT_PPD,
) -> StimulusSet:
    """Gabor patches: a sine grating under a Gaussian envelope of s.d. ``sigma_deg``.

    The image is ``size_deg`` wide (default 6 sigma, where the envelope is < 1.2 %).
    """
    ppd = check_ppd(ppd)
    sigmas = [check_size_deg(s, "sigma_deg") for s in as_list(sigma_deg)]
    size = 6 * max(sigmas) if size_deg is None else check_size_deg(size_deg)
    return _grating_set(
        "gabor",
        position_deg,
        ppd,
        size_deg=size,
        sigma_deg=sigmas,
        orientation_deg=orientation_deg,
        sf_cpd=sf_cpd,
        phase_deg=phase_deg,
        contrast=contrast,
        mean=mean,
        waveform="sine",
        aperture="none",
        edge_deg=0.0,
    )


def blank(
    size_deg: float,
    luminance: float | Iterable[float] = 0.5,
    position_deg: tuple[float, float] = (0.0, 0.0),
    ppd: float = 8.0,
) -> StimulusSet:
    """Uniform fields of the given linear ``luminance`` (one stimulus per value)."""
    size_deg = check_size_deg(size_deg)
    check_unit_interval("luminance", luminance)
    table = positions(factorial(size_deg=size_deg, luminance=luminance), position_deg)
    table.insert(0, "stimulus_id", stimulus_ids("blank", table))
    shape = shape_for(size_deg, check_ppd(ppd))

    def render(rows: pd.DataFrame) -> Rendered:
        lum = column(rows, "luminance").expand(-1, *shape)
        return Rendered(_rgb(lum))

    return StimulusSet(table, shape, render, "blank", "blank-v1")
