"""Statistics behind experiment verdicts: hierarchical bootstrap, exact intervals, nulls.

* :func:`bootstrap_record` — the 95 % interval of a recording's statistic, resampling what
  varies between experiments: stimuli, repetitions within each stimulus, and (for claims
  across sites) sites; the metric is recomputed on every resample.
* :func:`clopper_pearson` — the exact binomial interval for a fraction of few targets (a
  bootstrap of 0/1 values over 5 targets is degenerate: [1, 1] for 5/5).
* :func:`bootstrap_items` — the interval of a statistic over independent items (resampled).
* :func:`paired_bootstrap` — the interval of ``stat(a) - stat(b)`` over paired items: the same
  statistic as the reported value, so the value lies inside its own interval.
* :func:`label_shuffle_null` — a metric recomputed with a stimulus label permuted across
  presentations: what chance structure alone gives (e.g. |d'| of random categories, OSI of
  shuffled orientations).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr
from scipy.stats import beta

#: bootstrap resamples of per-item values (cheap: a statistic of an array)
N_BOOT_ITEMS = 2000
#: bootstrap resamples for statistics recomputed from a whole recording (each costs a metric)
N_BOOT_RECORD = 400
#: label permutations for shuffle nulls
N_SHUFFLES = 40


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval of a binomial proportion k/n."""
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def is_binary(values: np.ndarray) -> bool:
    v = np.asarray(values, dtype=float)
    return len(v) > 0 and bool(np.isin(v, (0.0, 1.0)).all())


def bootstrap_items(values: np.ndarray, stat: Callable, seed: int) -> tuple[float, float]:
    """95 % interval of ``stat(values)``, items resampled (:data:`N_BOOT_ITEMS` times)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(N_BOOT_ITEMS, len(values)))
    boot = np.array([stat(values[i]) for i in idx]) if stat is not np.mean else values[idx].mean(1)
    return float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, stat: Callable, n_boot: int, seed: int
) -> tuple[float, float]:
    """95 % interval of ``stat(a) - stat(b)``, items resampled in pairs."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    diffs = np.array([stat(a[i]) - stat(b[i]) for i in idx])
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def resample_presentations(rec: xr.DataArray, rng: np.random.Generator) -> np.ndarray:
    """Presentation indices of a hierarchical resample: stimuli with replacement, then each
    drawn stimulus's repetitions with replacement (one level per source of variance). Stimuli
    are resampled within their ``set`` (e.g. gratings vs. blank) when there is one, so a
    resample keeps every set."""
    stim = np.asarray(rec["stimulus_index"].values)
    strata = (
        np.asarray([str(v) for v in rec["set"].values])
        if "set" in rec.coords
        else np.zeros(len(stim), dtype=int)
    )
    order = np.argsort(stim, kind="stable")
    _, start, count = np.unique(stim[order], return_index=True, return_counts=True)
    stratum = strata[order][start]
    out = []
    for s_ in np.unique(stratum):
        members = np.flatnonzero(stratum == s_)
        for p in members[rng.integers(0, len(members), size=len(members))]:
            reps = order[start[p] : start[p] + count[p]]
            out.append(reps[rng.integers(0, len(reps), size=len(reps))])
    return np.concatenate(out)


def bootstrap_record(
    rec: xr.DataArray,
    metric: Callable[[xr.DataArray], np.ndarray],
    stat: Callable,
    seed: int,
    sites: bool = True,
    n_boot: int | None = None,
) -> tuple[float, float]:
    """95 % interval of ``stat(metric(rec))`` under hierarchical resampling of stimuli,
    repetitions and (``sites``) neuroids; resamples where the metric has no value are
    skipped."""
    n_boot = N_BOOT_RECORD if n_boot is None else n_boot
    rng = np.random.default_rng(seed)
    n_sites = rec.sizes["neuroid"]
    has_reps = "repetition" in rec.coords
    stats = []
    for _ in range(n_boot):
        p = resample_presentations(rec, rng)
        sub = rec.isel(presentation=p)
        if has_reps:  # resampled repeats are numbered afresh: halves stay balanced
            stim = np.asarray(sub["stimulus_index"].values)
            order = np.argsort(stim, kind="stable")
            _, start = np.unique(stim[order], return_index=True)
            rank = np.empty(len(stim), dtype=np.int64)
            rank[order] = np.arange(len(stim)) - np.repeat(start, np.diff(np.r_[start, len(stim)]))
            sub = sub.assign_coords(repetition=("presentation", rank))
        if sites:
            sub = sub.isel(neuroid=rng.integers(0, n_sites, size=n_sites))
        values = np.asarray(metric(sub), dtype=float)
        values = values[np.isfinite(values)]
        if len(values):
            stats.append(float(stat(values)))
    if not stats:
        return float("nan"), float("nan")
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def label_shuffle_null(
    rec: xr.DataArray,
    label: str,
    metric: Callable[[xr.DataArray], np.ndarray],
    stat: Callable,
    seed: int,
    within: tuple[str, ...] = (),
    n: int | None = None,
) -> np.ndarray:
    """``stat(metric(rec))`` with the presentation coordinate ``label`` permuted (within
    groups of the ``within`` coordinates, e.g. spatial frequency), ``n`` times."""
    n = N_SHUFFLES if n is None else n
    rng = np.random.default_rng(seed)
    values = np.asarray(rec[label].values)
    if within:
        keys = np.stack([np.asarray(rec[w].values).astype(str) for w in within], axis=1)
        _, group = np.unique(keys, axis=0, return_inverse=True)
    else:
        group = np.zeros(len(values), dtype=int)
    group = np.asarray(group).ravel()
    out = []
    for _ in range(n):
        shuffled = values.copy()
        for g in np.unique(group):
            idx = np.flatnonzero(group == g)
            shuffled[idx] = values[rng.permutation(idx)]
        v = metric(rec.assign_coords({label: ("presentation", shuffled)}))
        if len(v):
            out.append(float(stat(v)))
    return np.asarray(out)


def repeat_halves(rec: xr.DataArray) -> tuple[np.ndarray, np.ndarray] | None:
    """Masks of presentations of even and odd repetitions (None with a single repetition):
    choose a peak on one half, measure it on the other."""
    if "repetition" not in rec.coords:
        return None
    rep = np.asarray(rec["repetition"].values)
    if len(np.unique(rep)) < 2:
        return None
    odd = rep % 2 == 1
    return ~odd, odd
