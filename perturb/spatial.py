"""Perturbations placed on the cortical sheet: lesion, muscimol, optogenetics, microstimulation.

Positions are in mm on the region's sheet (``model.units(region)`` columns ``tissue_x_mm``,
``tissue_y_mm``; the sheet's corner is (0, 0)). Effects are computed per unit from its
distance ``d`` (mm) to ``at_mm``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from insilico.brain import BrainModel
from perturb.base import (
    Perturbation,
    UnitMaps,
    check_at_mm,
    check_nonnegative,
    resolve_units,
    sheet_distance_mm,
)

#: muscimol spread: isotropic Gaussian of variance 1.17 mm^2 (Arikan et al. 2002, J Neurosci
#: Methods 118:51, as used by the in-silico muscimol module of Schrimpf et al. 2024)
MUSCIMOL_VARIANCE_MM2 = 1.17
#: optogenetic spread: variance 0.234 mm^2 (light spread in cortex, Chow et al. 2010,
#: Nature 463:98, as used by the same modules); >= 1 mW of fibre output silences the centre
OPTO_VARIANCE_MM2 = 0.234
OPTO_FULL_EFFECT_MW = 1.0
#: current-distance constant K in I = K r^2 (Stoney, Thompson & Asanuma 1968, J Neurophysiol
#: 31:659; Tehovnik 1996 review): radius of direct activation r = sqrt(I / K)
STONEY_K_UA_PER_MM2 = 1292.0
#: pulse rate at which microstimulation reaches its full effect (Afraz et al. 2006 used 200 Hz)
FULL_EFFECT_PULSE_HZ = 200.0


def _random_site(model: BrainModel, region: str, rng: np.random.Generator) -> tuple[float, float]:
    """A uniformly drawn unit's sheet position (controls land where there is tissue)."""
    t = model.region_units(region).table
    k = int(rng.integers(len(t)))
    return float(t["tissue_x_mm"].iat[k]), float(t["tissue_y_mm"].iat[k])


def _gaussian_spread(d: torch.Tensor, variance_mm2: float) -> torch.Tensor:
    return torch.exp(-(d**2) / (2 * variance_mm2))


class Lesion(Perturbation):
    """Remove a whole region, a disc of sheet (``at_mm``, ``radius_mm``) or listed neuroids.

    Lesioned units output zero to every downstream layer and fire no spikes (spontaneous
    rate included) while the lesion is attached.
    """

    citation = "anatomical lesion: outputs removed"

    def __init__(
        self,
        region: str,
        at_mm: tuple[float, float] | None = None,
        radius_mm: float | None = None,
        neuroids: Any = None,
    ) -> None:
        self.region = region
        if (at_mm is None) != (radius_mm is None):
            raise ValueError("a disc lesion needs both at_mm and radius_mm")
        if at_mm is not None and neuroids is not None:
            raise ValueError("give a disc (at_mm, radius_mm) or neuroids, not both")
        self.at_mm = None if at_mm is None else check_at_mm(at_mm)
        self.radius_mm = (
            None if radius_mm is None else check_nonnegative("radius_mm", radius_mm, "mm")
        )
        self.neuroids = (
            None
            if neuroids is None
            else [
                v.item() if isinstance(v, np.generic) else v for v in np.asarray(neuroids).tolist()
            ]
        )

    def mask(self, model: BrainModel) -> torch.Tensor:
        """True for every lesioned unit (flat unit order)."""
        n = len(model.region_units(self.region).table)
        if self.at_mm is not None:
            return sheet_distance_mm(model, self.region, self.at_mm) <= self.radius_mm
        if self.neuroids is not None:
            m = torch.zeros(n, dtype=torch.bool)
            m[torch.as_tensor(resolve_units(model, self.region, self.neuroids))] = True
            return m
        return torch.ones(n, dtype=torch.bool)

    def unit_maps(self, model: BrainModel) -> UnitMaps:
        keep = (~self.mask(model)).float()
        return UnitMaps(keep, torch.zeros_like(keep), keep)

    def random_control(self, model: BrainModel, rng: np.random.Generator) -> Lesion:
        if self.at_mm is not None:
            return Lesion(
                self.region, at_mm=_random_site(model, self.region, rng), radius_mm=self.radius_mm
            )
        if self.neuroids is not None:
            n = len(model.region_units(self.region).table)
            units = rng.choice(n, size=len(self.neuroids), replace=False)
            return Lesion(self.region, neuroids=np.sort(units))
        raise NotImplementedError("a whole-region lesion has no matched random control")


class Muscimol(Perturbation):
    """GABA-A agonist injection: rate factor ``max(1 - volume_ul * spread(d), 0)``, spread an
    isotropic Gaussian of variance 1.17 mm^2 normalised to 1 at the centre, so 1 µl silences
    the centre fully (Arikan et al. 2002; the in-silico module of Schrimpf et al. 2024)."""

    citation = "Arikan et al. 2002; Schrimpf et al. 2024 in-silico muscimol module"

    def __init__(self, region: str, at_mm: tuple[float, float], volume_ul: float = 1.0) -> None:
        self.region = region
        self.at_mm = check_at_mm(at_mm)
        self.volume_ul = check_nonnegative("volume_ul", volume_ul, "µl")

    def factor(self, model: BrainModel) -> torch.Tensor:
        """Rate factor of every unit (1 = untouched, 0 = silent)."""
        d = sheet_distance_mm(model, self.region, self.at_mm)
        return (1 - self.volume_ul * _gaussian_spread(d, MUSCIMOL_VARIANCE_MM2)).clamp(min=0)

    def unit_maps(self, model: BrainModel) -> UnitMaps:
        f = self.factor(model)
        return UnitMaps(f, torch.zeros_like(f), f)

    def random_control(self, model: BrainModel, rng: np.random.Generator) -> Muscimol:
        return Muscimol(self.region, _random_site(model, self.region, rng), self.volume_ul)


class Optogenetic(Perturbation):
    """Light-gated opsin: ``mode="suppress"`` (e.g. ArchT) scales rates by
    ``max(1 - depth * spread(d), 0)``; ``mode="activate"`` (e.g. ChR2) adds
    ``depth * spread(d) * max_hz`` spikes/s. Spread: Gaussian of variance 0.234 mm^2; depth =
    ``power_mw / 1 mW`` (>= 1 mW silences the centre; Chow et al. 2010)."""

    citation = "Chow et al. 2010; Schrimpf et al. 2024 in-silico optogenetics module"

    def __init__(
        self, region: str, at_mm: tuple[float, float], power_mw: float = 1.0, mode: str = "suppress"
    ) -> None:
        if mode not in ("suppress", "activate"):
            raise ValueError(f"mode must be 'suppress' or 'activate', got {mode!r}")
        self.region = region
        self.at_mm = check_at_mm(at_mm)
        self.power_mw = check_nonnegative("power_mw", power_mw, "mW")
        self.mode = mode

    def unit_maps(self, model: BrainModel) -> UnitMaps:
        spread = _gaussian_spread(
            sheet_distance_mm(model, self.region, self.at_mm), OPTO_VARIANCE_MM2
        )
        depth = self.power_mw / OPTO_FULL_EFFECT_MW
        if self.mode == "suppress":
            f = (1 - depth * spread).clamp(min=0)
            return UnitMaps(f, torch.zeros_like(f), f)
        drive = min(depth, 1.0) * spread * model.region(self.region).max_hz
        return UnitMaps(torch.ones_like(drive), drive, torch.ones_like(drive))

    def random_control(self, model: BrainModel, rng: np.random.Generator) -> Optogenetic:
        return Optogenetic(
            self.region, _random_site(model, self.region, rng), self.power_mw, self.mode
        )


class Microstimulation(Perturbation):
    """An electrode at ``at_mm`` passing ``current_ua`` µA at ``pulse_hz`` for ``duration_ms``.

    Adds ``max_hz * min(pulse_hz / 200, 1) * exp(-d / r)`` spikes/s around the tip, where
    ``r = sqrt(current_ua / K)`` mm is the radius of direct activation (Stoney et al. 1968,
    K = 1292 µA/mm^2): the effect grows with current and falls exponentially with distance,
    the form of the in-silico microstimulation modules (Schrimpf et al. 2024, after
    Kumaravelu et al.). Zero current changes nothing. The model has no dynamics:
    ``duration_ms`` is kept for provenance and must cover the response window.
    """

    citation = "Stoney et al. 1968 (K); exponential falloff as in Schrimpf et al. 2024"

    def __init__(
        self,
        region: str,
        at_mm: tuple[float, float],
        current_ua: float,
        pulse_hz: float = 200.0,
        duration_ms: float = 100.0,
    ) -> None:
        self.region = region
        self.at_mm = check_at_mm(at_mm)
        self.current_ua = check_nonnegative("current_ua", current_ua, "µA")
        self.pulse_hz = check_nonnegative("pulse_hz", pulse_hz, "Hz")
        self.duration_ms = check_nonnegative("duration_ms", duration_ms, "ms")

    @property
    def radius_mm(self) -> float:
        """Radius of direct activation r = sqrt(I / K) in mm."""
        return math.sqrt(self.current_ua / STONEY_K_UA_PER_MM2)

    def drive_hz(self, model: BrainModel) -> torch.Tensor:
        """Added rate (spikes/s) of every unit (flat unit order)."""
        d = sheet_distance_mm(model, self.region, self.at_mm)
        if self.radius_mm == 0 or self.pulse_hz == 0 or self.duration_ms == 0:
            return torch.zeros_like(d)
        scale = model.region(self.region).max_hz * min(self.pulse_hz / FULL_EFFECT_PULSE_HZ, 1.0)
        return scale * torch.exp(-d / self.radius_mm)

    def unit_maps(self, model: BrainModel) -> UnitMaps:
        drive = self.drive_hz(model)
        return UnitMaps(torch.ones_like(drive), drive, torch.ones_like(drive))

    def random_control(self, model: BrainModel, rng: np.random.Generator) -> Microstimulation:
        return Microstimulation(
            self.region,
            _random_site(model, self.region, rng),
            self.current_ua,
            self.pulse_hz,
            self.duration_ms,
        )


def preferred_site(
    rig: Any,
    region: str,
    stimuli: Any,
    labels: Any,
    prefer: str,
    radius_mm: float = 1.0,
) -> tuple[float, float]:
    """The cortical-sheet site (x, y) in mm of ``region`` whose units prefer the stimuli
    labelled ``prefer`` most: each unit's d' (``prefer`` against the rest, expected rates) is
    averaged within ``radius_mm`` of candidate sites on the units' own positions — how a
    category patch is found before microstimulating it (Afraz et al. 2006).

    ``labels`` is a column of ``stimuli.meta`` or one label per stimulus.
    """
    labels = np.asarray(stimuli.meta[labels] if isinstance(labels, str) else labels).astype(str)
    if len(labels) != len(stimuli):
        raise ValueError(f"got {len(labels)} labels for {len(stimuli)} stimuli")
    is_pref = labels == str(prefer)
    if not is_pref.any() or is_pref.all():
        raise ValueError(
            f"prefer={prefer!r} must label some but not all stimuli; labels are "
            f"{', '.join(sorted(set(labels)))}"
        )
    if not radius_mm > 0:
        raise ValueError(f"radius_mm must be > 0 mm, got {radius_mm!r}")
    rates = rig.region_rates(stimuli, region).numpy().astype(np.float64)
    a, b = rates[is_pref], rates[~is_pref]
    pooled_sd = np.sqrt(0.5 * (a.var(0) + b.var(0)) + 1e-6)
    dprime = (a.mean(0) - b.mean(0)) / pooled_sd
    xy = rig.model.units(region)[["tissue_x_mm", "tissue_y_mm"]].to_numpy(dtype=float)
    grid = xy[:: max(1, len(xy) // 400)]
    score = [dprime[np.hypot(*(xy - g).T) < radius_mm].mean() for g in grid]
    best = grid[int(np.nanargmax(score))]
    return float(best[0]), float(best[1])
