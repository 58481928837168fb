"""Selectivity of units and of places on the sheet: d' per unit and the preferred site."""

from __future__ import annotations

from typing import Any

import numpy as np

from perturb.sheet import check_hemisphere
from rigs.rig import Rig


def unit_dprime(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed d' per unit (column) between two sets of rates (rows = stimuli, spikes/s):
    (mean_a - mean_b) / pooled sd, with 1e-6 (spikes/s)^2 added to the pooled variance so a
    unit silent in both sets gives 0, not NaN. The one d' of the lab (category selectivity,
    preferred sites)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pooled_sd = np.sqrt(0.5 * (a.var(0) + b.var(0)) + 1e-6)
    return (a.mean(0) - b.mean(0)) / pooled_sd


def preferred_site(
    rig: Rig,
    region: str,
    stimuli: Any,
    labels: Any,
    prefer: str,
    radius_mm: float = 1.0,
    hemisphere: str = "left",
) -> tuple[float, float]:
    """The cortical-sheet site (x, y) in mm of ``region`` whose units prefer the stimuli
    labelled ``prefer`` most: each unit's d' (``prefer`` against the rest, expected rates) is
    averaged within ``radius_mm`` of candidate sites on the units' own positions — how a
    category patch is found before microstimulating it (Afraz et al. 2006).

    ``labels`` is a column of ``stimuli.meta`` or one label per stimulus. The search runs on
    ``hemisphere``'s sheet (the site is for a perturbation on that hemisphere).
    """
    hemisphere = check_hemisphere(hemisphere)
    is_pref = preference_mask(stimuli, labels, prefer)
    if not radius_mm > 0:
        raise ValueError(f"radius_mm must be > 0 mm, got {radius_mm!r}")
    rates = rig.region_rates(stimuli, region).numpy().astype(np.float64)
    dprime = unit_dprime(rates[is_pref], rates[~is_pref])
    site, _ = best_site(rig.model.units(region), dprime, hemisphere, radius_mm)
    return site


def preference_mask(stimuli: Any, labels: Any, prefer: str) -> np.ndarray:
    """Which stimuli are labelled ``prefer``; ``labels`` is a column of ``stimuli.meta`` or one
    label per stimulus. One-line errors for a wrong count or a label that splits nothing."""
    labels = np.asarray(stimuli.meta[labels] if isinstance(labels, str) else labels).astype(str)
    if len(labels) != len(stimuli):
        raise ValueError(f"got {len(labels)} labels for {len(stimuli)} stimuli")
    is_pref = labels == str(prefer)
    if not is_pref.any() or is_pref.all():
        raise ValueError(
            f"prefer={prefer!r} must label some but not all stimuli; labels are "
            f"{', '.join(sorted(set(labels)))}"
        )
    return is_pref


def best_site(
    table: Any, dprime: np.ndarray, hemisphere: str, radius_mm: float
) -> tuple[tuple[float, float], float]:
    """The searchlight: among (up to ~400 of) ``hemisphere``'s unit positions, the one where
    the units' ``dprime`` averaged within ``radius_mm`` is highest; ((x, y) mm, that mean)."""
    mine = (table["hemisphere"] == hemisphere).to_numpy()
    xy = table[["tissue_x_mm", "tissue_y_mm"]].to_numpy(dtype=float)[mine]
    dprime = np.asarray(dprime)[mine]
    grid = xy[:: max(1, len(xy) // 400)]
    score = [dprime[np.hypot(*(xy - g).T) < radius_mm].mean() for g in grid]
    k = int(np.nanargmax(score))
    return (float(grid[k][0]), float(grid[k][1])), float(score[k])
