"""Judging a prediction: supported, falsified or inconclusive, from the 95 % interval of its
statistic, the null computed from the data and, for perturbation effects, the matched
controls."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from insilico.analysis import Effect
from insilico.experiments import stats
from insilico.experiments.metrics import computed_null, record_metric, statistic
from insilico.experiments.results import MeasureOutput, MeasureOutputs
from insilico.experiments.validation import ExperimentError

#: fraction of matched controls a perturbation effect must beat when a prediction does not say
DEFAULT_BEATS_CONTROLS = 0.95


def verdict(op: str, thr: float, lo: float, hi: float) -> str:
    """The verdict of a claim ``<op> thr`` on the interval [lo, hi]."""
    if op in (">", ">="):
        ok = lo > thr if op == ">" else lo >= thr
        bad = hi < thr if op == ">=" else hi <= thr
    else:
        ok = hi < thr if op == "<" else hi <= thr
        bad = lo > thr if op == "<=" else lo >= thr
    return "supported" if ok else "falsified" if bad else "inconclusive"


def _effect_interval(eff: Effect, out: dict) -> tuple[float, float, float]:
    out.update(
        control_effects_mean=float(np.mean(eff.control_effects))
        if len(eff.control_effects)
        else None,
        p_directional=eff.p_directional,
        interval="bootstrap over stimuli",
    )
    return eff.effect, *eff.ci


def _versus_interval(p: dict, by_cond: dict, mo: MeasureOutput, stat, seed: int, out: dict):
    metric, cond = p["metric"], out["condition"]
    other = by_cond.get(p["versus"])
    if other is None:
        raise ExperimentError(
            f"prediction {p['name']!r}: measure {p['measure']!r} did not "
            f"run condition {p['versus']!r}"
        )
    a, b = mo.values[metric], other.values[metric]
    if len(a) != len(b):
        raise ExperimentError(
            f"prediction {p['name']!r}: {metric} has different items in "
            f"{cond!r} and {p['versus']!r}"
        )
    lo, hi = stats.paired_bootstrap(a, b, stat, stats.N_BOOT_ITEMS, seed)
    out.update(
        versus=p["versus"],
        value_condition=float(stat(a)),
        value_versus=float(stat(b)),
        interval="paired bootstrap of the same statistic",
    )
    return float(stat(a) - stat(b)), lo, hi


def _items_interval(vals: np.ndarray, mo: MeasureOutput, fn, stat, seed: int, out: dict):
    if stat is np.mean and stats.is_binary(vals):
        lo, hi = stats.clopper_pearson(int(vals.sum()), len(vals))
        out["interval"] = f"Clopper-Pearson, {int(vals.sum())}/{len(vals)}"
    elif fn is not None and isinstance(mo.data, xr.DataArray):
        lo, hi = stats.bootstrap_record(mo.data, fn, stat, seed)
        out["interval"] = "hierarchical bootstrap: stimuli, repetitions, sites"
    else:
        lo, hi = stats.bootstrap_items(vals, stat, seed)
        out["interval"] = "bootstrap over items"
    return float(stat(vals)), lo, hi


def _against_controls(p: dict, eff: Effect, result: str, out: dict) -> str:
    """A perturbation effect is judged against its matched controls, always (its null);
    ``beats_controls`` sets how many it must beat (default 95 %)."""
    if eff.affected_units is not None and eff.control_affected_units is not None:
        out.update(
            affected_units=int(eff.affected_units),
            control_affected_mean=float(np.mean(eff.control_affected_units)),
        )
    needed = 1 - float(p.get("beats_controls", DEFAULT_BEATS_CONTROLS))
    out["controls_criterion"] = f"directional p <= {needed:.3g}"
    if result == "supported" and eff.p_directional > needed:
        return "inconclusive" if eff.p_directional < 0.5 else "falsified"
    return result


def evaluate(
    p: dict[str, Any],
    results: MeasureOutputs,
    seed: int = 0,
    labels: str | None = None,
) -> dict:
    """Supported / falsified / inconclusive, from the 95 % interval of the statistic and the
    prediction's null.

    Intervals: recordings are bootstrapped hierarchically (stimuli, repetitions within
    stimuli, sites) with the metric recomputed per resample; a ``versus`` difference is
    bootstrapped as the same statistic as its value (paired items); 0/1 values (accuracy
    per stimulus, beats-natural per target) get the exact Clopper–Pearson interval; ``compare``
    measures carry their own (stimuli resampled) plus matched controls. A null computed from
    the data (shuffled labels, chance) must also be cleared: a prediction whose interval does
    not clear the null's 95th percentile is at best inconclusive. ``labels``: the measure's
    label coordinate (category d', decoding)."""
    by_cond = results[p["measure"]]
    cond = p.get("condition", next(iter(by_cond)))
    if cond not in by_cond:
        raise ExperimentError(
            f"prediction {p['name']!r}: measure {p['measure']!r} did not run "
            f"condition {cond!r} (ran: {', '.join(by_cond)})"
        )
    mo = by_cond[cond]
    metric = p["metric"]
    out = {
        "name": p["name"],
        "claim": p.get("claim", ""),
        "measure": p["measure"],
        "metric": metric,
        "condition": cond,
        "expect": p["expect"],
        "null": p.get("null", ""),
    }
    if metric not in mo.values:
        raise ExperimentError(
            f"prediction {p['name']!r}: metric {metric!r} is not available for "
            f"measure {p['measure']!r} (available: {', '.join(mo.values)})"
        )
    stat = statistic(metric)
    null = None
    if isinstance(mo.data, Effect):
        value, lo, hi = _effect_interval(mo.data, out)
    elif "versus" in p:
        value, lo, hi = _versus_interval(p, by_cond, mo, stat, seed, out)
    else:
        vals = np.asarray(mo.values[metric], dtype=float)
        value, lo, hi = _items_interval(vals, mo, record_metric(metric, labels), stat, seed, out)
        null = computed_null(metric, mo.data, labels, stat, seed)
    result = verdict(p["_op"], p["_threshold"], lo, hi)
    if null is not None:
        null_value, null_95, what = null
        out.update(null_value=null_value, null_95=null_95, null_computed=what)
        clears = lo > null_95 if p["_op"] in (">", ">=") else hi < null_value
        if result == "supported" and not clears:
            result = "inconclusive"
    if isinstance(mo.data, Effect) and len(mo.data.control_effects):
        result = _against_controls(p, mo.data, result, out)
    out.update(value=float(value), ci=[float(lo), float(hi)], verdict=result)
    return out
