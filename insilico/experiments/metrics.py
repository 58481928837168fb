"""Metrics of a recording: per-item values (stimuli or neuroids), the statistic that
summarises each (mean, median), and the nulls computable from the data (shuffled labels,
chance)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from insilico.analysis import orientation_selectivity, tuning_curve, unit_dprime
from insilico.experiments import stats
from insilico.experiments.validation import ExperimentError
from recordings.format import as_strings


def _per_stimulus_rate(rec: xr.DataArray) -> np.ndarray:
    """Mean rate (spikes/s) per stimulus: over neuroids, repetitions and time bins."""
    r = rec.mean(("neuroid", "time_bin"))
    return r.groupby(r["stimulus_index"]).mean().values


def _osi(rec: xr.DataArray) -> np.ndarray:
    if "orientation_deg" not in rec.coords:
        raise ExperimentError("metric median_osi needs stimuli with an orientation_deg parameter")
    curves = tuning_curve(rec, "orientation_deg")
    osi, _ = orientation_selectivity(curves["mean"].values, curves["orientation_deg"].values)
    responsive = curves["mean"].values.max(axis=0) > 0
    return osi[responsive]


def _curves(rec: xr.DataArray, param: str, mask: np.ndarray | None = None):
    """(levels, mean response per level and neuroid) over the presentations in ``mask``."""
    r = rec.mean("time_bin").values if "time_bin" in rec.dims else rec.values
    levels_all = np.asarray(rec[param].values, dtype=float)
    if mask is None:
        mask = np.ones(len(levels_all), dtype=bool)
    levels = np.unique(levels_all)
    return levels, np.stack([r[(levels_all == lv) & mask].mean(axis=0) for lv in levels])


def _cross_validated(rec: xr.DataArray, param: str) -> tuple[np.ndarray, np.ndarray]:
    """(curves to choose a level on, curves to measure it on) per ``param`` level: even and
    odd repetitions, or the same curves with a single repetition."""
    halves = stats.repeat_halves(rec)
    if halves is None:
        _, v = _curves(rec, param)
        return v, v
    return _curves(rec, param, halves[0])[1], _curves(rec, param, halves[1])[1]


def _sf_curves(rec: xr.DataArray, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if "sf_cpd" not in rec.coords or len(np.unique(rec.sf_cpd.values)) < 3:
        raise ExperimentError(f"metric {metric} needs stimuli of >= 3 spatial frequencies (sf_cpd)")
    sf, v = _curves(rec, "sf_cpd")
    return sf, v, v.max(axis=0) > 0


def _sf_selectivity(rec: xr.DataArray) -> np.ndarray:
    """Spatial-frequency selectivity per responsive neuroid: 1 - response at the worst / at
    the best tested frequency (0 = flat, 1 = silent at some frequency). Cross-validated:
    best and worst are chosen on even repetitions and measured on odd ones (a single
    repetition falls back to one set), so noise alone gives ~0, not a positive index."""
    _sf_curves(rec, "sf_selectivity")
    choose, measured = _cross_validated(rec, "sf_cpd")
    best, worst = choose.argmax(axis=0), choose.argmin(axis=0)
    cols = np.arange(measured.shape[1])
    hi, lo = measured[best, cols], measured[worst, cols]
    live = hi > 0
    return 1 - lo[live] / hi[live]


def _preferred_sf(rec: xr.DataArray) -> np.ndarray:
    """Preferred spatial frequency (cycles/deg) per responsive neuroid, among those tested."""
    sf, v, live = _sf_curves(rec, "preferred_sf_cpd")
    return sf[v.argmax(axis=0)][live].astype(float)


def _suppression(rec: xr.DataArray) -> np.ndarray:
    """Surround suppression per neuroid: 1 - response at the largest size / response at the
    preferred size. Cross-validated: the preferred size is chosen on even repetitions and
    both responses are measured on odd ones, so Poisson noise on a flat size-tuning curve
    gives ~0 (choosing and measuring the peak on the same trials made it positive)."""
    if "size_deg" not in rec.coords or len(np.unique(rec.size_deg.values)) < 3:
        raise ExperimentError("metric suppression_index needs stimuli of >= 3 sizes (size_deg)")
    choose, measured = _cross_validated(rec, "size_deg")
    peak = choose.argmax(axis=0)
    cols = np.arange(measured.shape[1])
    at_peak = measured[peak, cols]
    live = at_peak > 0
    return 1 - measured[-1, live] / at_peak[live]


def _rf_centres(rec: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = rec.mean(("time_bin",))
    x = r.position_x_deg.values
    y = r.position_y_deg.values
    v = r.values  # presentations x neuroids
    w = np.abs(v - np.median(v, axis=0))
    total = w.sum(axis=0)
    live = total > 0
    cx = (w * x[:, None]).sum(0) / np.where(live, total, 1)
    cy = (w * y[:, None]).sum(0) / np.where(live, total, 1)
    return cx, cy, live


def _rf_error(rec: xr.DataArray) -> np.ndarray:
    """Distance (deg) between each neuroid's RF centre mapped by sparse noise (response-
    weighted centroid of probe positions, relative to blank) and its unit-table RF centre."""
    cx, cy, live = _rf_centres(rec)
    err = np.hypot(cx - rec.rf_x_deg.values, cy - rec.rf_y_deg.values)
    return err[live]


def _rf_gain_over_guess(rec: xr.DataArray) -> np.ndarray:
    """Per neuroid, how much closer (deg) the sparse-noise RF centre is to the true one than
    the null guess — the centre of the probe grid, for every site: guess error - mapped error.
    (The array sits at the grid centre, so the guess alone was within 0.165 deg.)"""
    cx, cy, live = _rf_centres(rec)
    gx = float(np.mean(rec.position_x_deg.values))
    gy = float(np.mean(rec.position_y_deg.values))
    tx, ty = rec.rf_x_deg.values, rec.rf_y_deg.values
    gain = np.hypot(gx - tx, gy - ty) - np.hypot(cx - tx, cy - ty)
    return gain[live]


def _rate_above_blank(rec: xr.DataArray) -> np.ndarray:
    """Per non-blank stimulus: mean rate (spikes/s, over neuroids and repetitions) minus the
    mean rate to the blank presentations (``set`` == "blank", e.g. ``concat`` of the stimuli
    and a blank): what the stimuli add to the spontaneous rate."""
    if "set" not in rec.coords or "blank" not in set(as_strings(rec["set"].values)):
        raise ExperimentError("metric rate_above_blank needs a 'blank' set (concat with a blank)")
    r = rec.mean(("neuroid", "time_bin")).values
    is_blank = as_strings(rec["set"].values) == "blank"
    stim = np.asarray(rec["stimulus_index"].values)
    base = r[is_blank].mean()
    per = [r[(stim == s) & ~is_blank].mean() for s in np.unique(stim[~is_blank])]
    return np.asarray(per) - base


def _category_dprime(rec: xr.DataArray, labels: str) -> np.ndarray:
    """|d'| per neuroid between the stimuli of the first label and all others."""
    if labels not in rec.coords:
        raise ExperimentError(f"metric category_dprime needs the stimulus parameter {labels!r}")
    r = rec.mean("time_bin").values
    lab_values = as_strings(rec[labels].values)
    first = sorted(set(lab_values))[0]
    return np.abs(unit_dprime(r[lab_values == first], r[lab_values != first]))


#: metrics of every record measure: name -> (per-item values, statistic, unit)
RECORD_METRICS = {
    "mean_rate": (_per_stimulus_rate, np.mean, "spikes/s"),
    "rate_above_blank": (_rate_above_blank, np.mean, "spikes/s"),
    "median_osi": (_osi, np.median, "OSI"),
    "sf_selectivity": (_sf_selectivity, np.median, "index"),
    "preferred_sf_cpd": (_preferred_sf, np.median, "cycles/deg"),
    "suppression_index": (_suppression, np.median, "fraction"),
    "rf_error_deg": (_rf_error, np.median, "deg"),
    "rf_gain_over_guess_deg": (_rf_gain_over_guess, np.median, "deg"),
}
#: statistic of metrics computed outside RECORD_METRICS (the claim names it: "median |d'|")
OTHER_STATS = {"category_dprime": np.median}
#: computed nulls: metric -> (presentation label to shuffle, labels to shuffle within)
SHUFFLE_NULLS = {"median_osi": ("orientation_deg", ("sf_cpd", "phase_deg"))}
#: the metric a sweep stores per measure kind
SWEEP_METRICS = {"record": "mean_rate", "behave": "accuracy", "compare": "effect"}


def statistic(metric: str) -> Callable:
    """The statistic a metric's per-item values are summarised and judged by."""
    if metric in RECORD_METRICS:
        return RECORD_METRICS[metric][1]
    return OTHER_STATS.get(metric, np.mean)


def record_values(rec: xr.DataArray, labels: str | None = None) -> dict[str, np.ndarray]:
    """Every record metric the recording allows (and category d' with ``labels``)."""
    values = {}
    for name, (fn, _, _) in RECORD_METRICS.items():
        try:
            values[name] = fn(rec)
        except ExperimentError:
            pass
    if labels is not None:
        values["category_dprime"] = _category_dprime(rec, labels)
    return values


def record_metric(metric: str, labels: str | None) -> Callable | None:
    """The per-item function of a recording behind ``metric`` (None if not a record metric);
    ``labels``: the measure's label coordinate (category d')."""
    if metric in RECORD_METRICS:
        return RECORD_METRICS[metric][0]
    if metric == "category_dprime" and labels:
        return lambda rec: _category_dprime(rec, labels)
    return None


def computed_null(metric: str, data: Any, labels: str | None, stat: Callable, seed: int):
    """(null value, its 95th percentile, description) computed from the recording ``data``,
    or None."""
    rec = data
    if not isinstance(rec, xr.DataArray):
        return None
    if metric in SHUFFLE_NULLS:
        label, within = SHUFFLE_NULLS[metric]
        if label not in rec.coords:
            return None
        within = tuple(w for w in within if w in rec.coords)
        fn = RECORD_METRICS[metric][0]
        null = stats.label_shuffle_null(rec, label, fn, stat, seed, within)
        what = f"{label} shuffled within {', '.join(within) or 'all'}"
    elif metric == "category_dprime" and labels:
        null = stats.label_shuffle_null(
            rec, labels, lambda r: _category_dprime(r, labels), stat, seed
        )
        what = f"{labels} labels shuffled"
    elif metric == "accuracy" and labels and "choice" in rec.dims:
        chance = 1.0 / rec.sizes["choice"]
        return chance, chance, f"chance, 1/{rec.sizes['choice']} classes"
    else:
        return None
    if not len(null):
        return None
    return float(np.median(null)), float(np.percentile(null, 95)), what
