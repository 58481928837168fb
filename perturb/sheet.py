"""The cortical sheet on which spatial perturbations act: hemispheres, unit footprints,
area-uniform random sites and tissue-matched controls.

Positions are in mm on one hemisphere's sheet (``model.units(region)`` columns ``tissue_x_mm``,
``tissue_y_mm``, ``hemisphere``; the frame's corner is (0, 0)); a perturbation acts on the
units of its ``hemisphere`` only (default "left", the right visual field), so it never
crosses the vertical meridian. Effects are computed per unit from its distance ``d`` (mm) to
``at_mm``. Matched controls are tissue-matched (same number of affected units, sites drawn
area-uniformly; ``SheetPerturbation.random_control``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from insilico.brain import BrainModel
from perturb.base import (
    Perturbation,
    UnitMaps,
    check_at_mm,
    check_nonnegative,
    sheet_distance_mm,
)

#: the number of affected units of a control matches the real perturbation's within this
#: fraction (or one unit), by scaling the control's spread (see ``Perturbation.matched``)
MATCH_TOLERANCE = 0.05


def check_hemisphere(value: str) -> str:
    if value not in ("left", "right"):
        raise ValueError(f"hemisphere must be 'left' or 'right', got {value!r}")
    return value


#: neighbours used to estimate each unit's share of the sheet
FOOTPRINT_NEIGHBOURS = 8
_FOOTPRINTS: dict[int, tuple[Any, np.ndarray]] = {}


def unit_footprint_mm(model: BrainModel, region: str) -> np.ndarray:
    """Per unit, the radius sigma (mm) of the 2-D Gaussian standing for its neurons: its local
    share of the sheet, area = pi r_k^2 / k from the distance r_k to its k-th nearest unit of
    the same hemisphere, equals 2 pi sigma^2. Local, because unit density varies over a
    retinotopic sheet (hypercolumn area ∝ magnification^2)."""
    from scipy.spatial import cKDTree

    ru = model.region_units(region)
    cached = _FOOTPRINTS.get(id(ru))
    if cached is not None and cached[0] is ru:
        return cached[1]
    t = ru.table
    xy = t[["tissue_x_mm", "tissue_y_mm"]].to_numpy(dtype=np.float64)
    sigma = np.empty(len(t))
    k = FOOTPRINT_NEIGHBOURS
    for hemi in ("left", "right"):
        mine = np.flatnonzero(t["hemisphere"].to_numpy() == hemi)
        if len(mine) == 0:
            continue
        kk = min(k, len(mine) - 1)
        if kk < 1:
            sigma[mine] = 0.1
            continue
        dist, _ = cKDTree(xy[mine]).query(xy[mine], k=kk + 1)
        r_k = np.maximum(dist[:, -1], 1e-6)
        sigma[mine] = np.sqrt(np.pi * r_k**2 / kk / (2 * np.pi))
    _FOOTPRINTS[id(ru)] = (ru, sigma)
    return sigma


def random_site(
    model: BrainModel, region: str, rng: np.random.Generator
) -> tuple[tuple[float, float], str]:
    """A site drawn uniformly over the AREA of tissue (not over units, which crowd where
    magnification is low): a uniform point of the sheet frame on a random hemisphere,
    redrawn until it lies within 2.5 footprints of its nearest unit (on tissue)."""
    ru = model.region_units(region)
    t = ru.table
    sigma = unit_footprint_mm(model, region)
    ex, ey = ru.sheet_extent_mm
    xy = t[["tissue_x_mm", "tissue_y_mm"]].to_numpy()
    hemis = t["hemisphere"].to_numpy()
    for _ in range(10_000):
        hemi = "left" if rng.random() < 0.5 else "right"
        x, y = float(rng.uniform(0, ex)), float(rng.uniform(0, ey))
        mine = np.flatnonzero(hemis == hemi)
        d = np.hypot(xy[mine, 0] - x, xy[mine, 1] - y)
        k = int(np.argmin(d))
        if d[k] <= 2.5 * sigma[mine[k]]:
            return (x, y), hemi
    raise RuntimeError(f"could not draw a site on the {region} sheet")


class SheetPerturbation(Perturbation):
    """A perturbation centred at ``at_mm`` on one hemisphere's sheet; ``spread_scale``
    stretches its spatial profile (distances divided by it) — used to match controls."""

    at_mm: tuple[float, float]
    hemisphere: str
    spread_scale: float

    def _place_on_sheet(
        self, region: str, at_mm: Any, hemisphere: str, spread_scale: float
    ) -> None:
        """Set and check the fields every sheet perturbation has."""
        self.region = region
        self.at_mm = check_at_mm(at_mm)
        self.hemisphere = check_hemisphere(hemisphere)
        self.spread_scale = check_nonnegative("spread_scale", spread_scale, "")

    def _distance(self, model: BrainModel) -> torch.Tensor:
        d = sheet_distance_mm(model, self.region, self.at_mm, self.hemisphere)
        return d / self.spread_scale

    def _at(self, site: tuple[float, float], hemisphere: str, scale: float) -> SheetPerturbation:
        raise NotImplementedError

    def affected(self, model: BrainModel, threshold: float | None = None) -> int:
        """Units whose effect is at least ``threshold`` (default half this perturbation's own
        peak effect): silencing 1 - factor, activation drive / max_hz."""
        e = effect_size(self.unit_maps(model), model.region(self.region).max_hz)
        if threshold is None:
            threshold = 0.5 * float(e.max())
        return int((e >= threshold).sum()) if threshold > 0 else 0

    def random_control(self, model: BrainModel, rng: np.random.Generator) -> SheetPerturbation:
        """The same dose at an area-uniformly drawn site, its spread scaled so that it affects
        the same number of units (within MATCH_TOLERANCE) as this one: tissue-matched, not
        dose-matched. Near an edge the spread grows until the count matches; a site that
        cannot match (sheet too small there) is redrawn."""
        e = effect_size(self.unit_maps(model), model.region(self.region).max_hz)
        threshold = 0.5 * float(e.max())
        target = int((e >= threshold).sum()) if threshold > 0 else 0
        for _ in range(50):
            site, hemi = random_site(model, self.region, rng)
            control = self._at(site, hemi, self.spread_scale)
            if target == 0:
                return control
            lo, hi = 0.0, None
            scale = self.spread_scale
            for _ in range(40):
                n = control.affected(model, threshold)
                if abs(n - target) <= max(1, MATCH_TOLERANCE * target):
                    return control
                if n < target:
                    lo = scale
                    scale = scale * 2 if hi is None else (scale + hi) / 2
                else:
                    hi = scale
                    scale = (lo + scale) / 2
                if scale > 1e3 * self.spread_scale:
                    break
                control = self._at(site, hemi, scale)
        raise RuntimeError(
            f"could not place a control affecting {target} units of {self.region}; the "
            "perturbation covers more tissue than a hemisphere offers elsewhere"
        )


def effect_size(maps: UnitMaps, max_hz: float) -> torch.Tensor:
    """Per-unit size of an effect in [0, 1]: silencing 1 - factor, activation drive/max_hz."""
    return torch.maximum(1 - maps.silencing, (maps.drive_hz / max_hz).clamp(0, 1))
