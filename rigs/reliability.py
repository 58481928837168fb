"""Reliability of recorded responses: mean over repetitions, split-half noise ceilings
(Spearman-Brown corrected for unequal halves) and per-site Pearson correlation."""

from __future__ import annotations

import numpy as np
import xarray as xr

from recordings.format import as_strings


def mean_and_repeats(responses: xr.DataArray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(stimuli, sites) mean response and (stimuli, max_reps, sites) repeats (NaN-padded)."""
    r = responses.mean("time_bin") if "time_bin" in responses.dims else responses
    values = np.asarray(r.values, dtype=np.float64)
    sid = as_strings(r.stimulus_id.values)
    index = {s: k for k, s in enumerate(ids)}
    rows = np.array([index[s] for s in sid])
    counts = np.bincount(rows, minlength=len(ids))
    reps = np.full((len(ids), counts.max(), values.shape[1]), np.nan)
    slot = np.zeros(len(ids), dtype=int)
    for k, row in enumerate(rows):
        reps[row, slot[row]] = values[k]
        slot[row] += 1
    return np.nanmean(reps, axis=1), reps


def _spearman_brown(rho: np.ndarray, factor: float) -> np.ndarray:
    """Reliability of a mean of ``factor`` times as many repetitions."""
    return factor * rho / (1 + (factor - 1) * rho)


def _single_rep_reliability(r: np.ndarray, h1: float, h2: float) -> np.ndarray:
    """Per-repetition reliability rho1 whose half means of h1 and h2 repetitions correlate r:
    r^2 = SB(rho1, h1) * SB(rho1, h2), solved by bisection (r <= 0 -> 0)."""
    r = np.asarray(r, dtype=float)
    lo, hi = np.zeros_like(r), np.ones_like(r)
    target = np.clip(r, 0, 1) ** 2
    for _ in range(60):
        mid = (lo + hi) / 2
        value = _spearman_brown(mid, h1) * _spearman_brown(mid, h2)
        below = value < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    out = np.where(r > 0, (lo + hi) / 2, 0.0)
    return np.where(np.isfinite(r), out, np.nan)


def split_half_ceiling(reps: np.ndarray, n_splits: int = 20, seed: int = 0) -> np.ndarray:
    """Noise ceiling per site from repetitions (stimuli, reps, sites), NaN-padded.

    Every stimulus's repetitions are split at random into halves of floor(n/2) and
    ceil(n/2) (all of them used, also for odd n); the Pearson r between the half means over
    stimuli gives the single-repetition reliability rho1 (solving r^2 = SB(rho1, h1) *
    SB(rho1, h2), Spearman-Brown for the actual half sizes), which is stepped up to the
    reliability of the full mean of n repetitions, averaged over splits; the ceiling is its
    square root (the r a perfect model could reach with the mean responses). For even n this
    is the familiar 2r / (1 + r).
    """
    n_reps = np.sum(~np.isnan(reps[:, :, 0]), axis=1)
    if n_reps.min() < 2:
        raise ValueError(
            "a noise ceiling needs >= 2 repetitions of every stimulus; "
            f"{int((n_reps < 2).sum())} stimuli have fewer"
        )
    rng = np.random.default_rng(seed)
    valid = ~np.isnan(reps[:, :, 0])
    h1 = (n_reps // 2)[:, None]
    h2 = (n_reps - n_reps // 2)[:, None]
    filled = np.nan_to_num(reps)
    rel = []
    for _ in range(n_splits):
        keys = np.where(valid, rng.random(valid.shape), np.inf)
        rank = np.argsort(np.argsort(keys, axis=1), axis=1)  # random order of each row's reps
        in_a = (rank < h1)[:, :, None]
        in_b = ((rank >= h1) & (rank < h1 + h2))[:, :, None]
        a = (filled * in_a).sum(1) / h1
        b = (filled * in_b).sum(1) / h2
        r = pearson(a, b)
        rho1 = _single_rep_reliability(r, float(h1.mean()), float(h2.mean()))
        rel.append(_spearman_brown(rho1, float(n_reps.mean())))
    reliability = np.nanmean(rel, axis=0)
    return np.sqrt(np.clip(reliability, 0, None))


def pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r per column (site) between two (stimuli, sites) arrays."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(0) / np.sqrt((a**2).sum(0) * (b**2).sum(0))


def check_reliable(mean: np.ndarray, ceiling: np.ndarray, ids, required: bool) -> None:
    """One-line errors for sites nothing can be mapped to: a mean response (stimuli, sites)
    that is not finite or the same for every stimulus; and, when a noise ceiling is
    ``required``, a site whose ceiling is NaN or 0 (repetitions that do not agree at all)."""
    ids = np.asarray(ids)
    flat = ~np.isfinite(mean).all(0) | (np.nanstd(mean, axis=0) == 0)
    if flat.any():
        raise ValueError(
            f"{int(flat.sum())} sites have no stimulus-dependent response (constant or not "
            f"finite), e.g. {', '.join(map(str, ids[flat][:3]))}: drop them before mapping"
        )
    bad = ~(ceiling > 0)
    if required and bad.any():
        raise ValueError(
            f"{int(bad.sum())} sites have no reliable response across repetitions (noise "
            f"ceiling 0 or NaN), e.g. {', '.join(map(str, ids[bad][:3]))}: drop them or pass "
            "noise_ceiling='auto'"
        )
