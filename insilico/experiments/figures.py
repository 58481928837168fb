"""The report's figures (PNG, matplotlib), each showing an effect with its control: tuning
curves per condition, RF maps, accuracy with bootstrap intervals, a perturbation's effect
against its matched random controls, synthesized images, and sweeps (as a map when they
move a site on the sheet)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from insilico.analysis import tuning_curve
from insilico.experiments.metrics import SWEEP_METRICS

#: axis labels with units for stimulus and sweep parameters (raw keys are not labels)
PARAMETER_LABELS = {
    "orientation_deg": "orientation (deg; 0 = vertical bars, counter-clockwise)",
    "sf_cpd": "spatial frequency (cycles/deg)",
    "size_deg": "stimulus diameter (deg)",
    "phase_deg": "phase (deg)",
    "contrast": "Michelson contrast",
    "position_x_deg": "azimuth (deg)",
    "position_y_deg": "elevation (deg)",
    "volume_ul": "muscimol volume (µl)",
    "current_ua": "current (µA)",
    "power_mw": "light power (mW)",
    "pulse_hz": "pulse rate (Hz)",
    "duration_ms": "train duration (ms)",
    "radius_mm": "radius (mm)",
    "at_mm": "site on the sheet (x, y mm)",
}


def parameter_label(key: str) -> str:
    """A readable axis label with units for a parameter key (``inject.0.volume_ul`` ->
    ``inject: muscimol volume (µl)``)."""
    leaf = key.split(".")[-1]
    label = PARAMETER_LABELS.get(leaf, leaf.replace("_", " "))
    head = key.split(".")[0] if "." in key else ""
    return f"{head}: {label}" if head and head not in ("stimuli",) else label


def _plt():
    # matplotlib is imported (and set to Agg) only when a figure is drawn: it is slow to load
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> bool:
    """Write ``fig`` to ``path`` and close it."""
    fig.savefig(path, dpi=100)
    _plt().close(fig)
    return True


def tuning_figure(name: str, by_cond: dict, parameter: str, path: Path) -> bool:
    first = next(iter(by_cond.values())).data
    if parameter not in first.coords:
        return False
    fig, axes = _plt().subplots(2, 4, figsize=(11, 5), sharex=True, constrained_layout=True)
    curves = {c: tuning_curve(mo.data, parameter) for c, mo in by_cond.items()}
    ref = next(iter(curves.values()))
    order = np.argsort(-np.ptp(ref["mean"].values, axis=0))[:8]
    for ax, k in zip(axes.ravel(), order):
        for c, cur in curves.items():
            ax.errorbar(
                cur[parameter].values,
                cur["mean"].values[:, k],
                yerr=cur["sem"].values[:, k],
                marker="o",
                ms=3,
                capsize=2,
                label=c,
            )
        ax.set_title(str(ref.neuroid_id.values[k]), fontsize=8)
    axes[0, 0].legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel(parameter_label(parameter), fontsize=8)
        if parameter == "sf_cpd":  # spatial frequency is read in octaves
            ax.set_xscale("log", base=2)
    for ax in axes[:, 0]:
        ax.set_ylabel("spikes/s (mean ± s.e.m.)")
    fig.suptitle(
        f"{name}: tuning to {parameter_label(parameter)}\npanels: the {len(order)} sites with the "
        f"largest peak-to-peak range in condition {next(iter(curves))!r}",
        fontsize=9,
    )
    return _save(fig, path)


def rf_figure(name: str, mo: Any, path: Path) -> bool:
    rec = mo.data
    if "position_x_deg" not in rec.coords or len(np.unique(rec.position_x_deg.values)) < 3:
        return False
    r = rec.mean("time_bin")
    x, y = r.position_x_deg.values, r.position_y_deg.values
    xs, ys = np.unique(x), np.unique(y)
    fig, axes = _plt().subplots(2, 4, figsize=(11, 5), constrained_layout=True)
    order = np.argsort(-r.values.std(0))[:8]
    for ax, k in zip(axes.ravel(), order):
        grid = np.full((len(ys), len(xs)), np.nan)
        for v, xx, yy in zip(r.values[:, k], x, y):
            cell = grid[np.searchsorted(ys, yy), np.searchsorted(xs, xx)]
            grid[np.searchsorted(ys, yy), np.searchsorted(xs, xx)] = (
                v if np.isnan(cell) else max(cell, v)
            )
        im = ax.imshow(grid, origin="lower", extent=[xs[0], xs[-1], ys[0], ys[-1]], cmap="magma")
        ax.plot(r.rf_x_deg.values[k], r.rf_y_deg.values[k], "c+", ms=10)
        ax.set_title(str(r.neuroid_id.values[k]), fontsize=8)
        ax.set_xlabel("azimuth (deg)", fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.8).set_label("spikes/s", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("elevation (deg)", fontsize=8)
    fig.suptitle(
        f"{name}: receptive fields from sparse noise (max over probe luminances; +: the unit "
        f"table's RF centre)\npanels: the {len(order)} sites whose responses vary most",
        fontsize=9,
    )
    return _save(fig, path)


def bars_figure(name: str, by_cond: dict, metric: str, path: Path) -> bool:
    conds = [c for c, mo in by_cond.items() if metric in mo.values and len(mo.values[metric])]
    if not conds:
        return False
    fig, ax = _plt().subplots(figsize=(4 + len(conds), 3.5), constrained_layout=True)
    rng = np.random.default_rng(0)
    for i, c in enumerate(conds):
        v = by_cond[c].values[metric]
        boot = v[rng.integers(0, len(v), size=(1000, len(v)))].mean(1)
        ax.bar(
            i,
            v.mean(),
            yerr=[[v.mean() - np.percentile(boot, 2.5)], [np.percentile(boot, 97.5) - v.mean()]],
            capsize=4,
        )
    ax.set_xticks(range(len(conds)), conds)
    ax.set_ylabel(f"{metric} (mean, 95% bootstrap CI)")
    ax.set_title(name)
    return _save(fig, path)


def effect_figure(name: str, mo: Any, path: Path) -> bool:
    eff = mo.data
    fig, ax = _plt().subplots(figsize=(5, 3.5), constrained_layout=True)
    if len(eff.control_effects):
        ax.hist(eff.control_effects, bins=20, color="grey", label="matched random controls")
    ax.axvline(eff.effect, color="red", label="perturbation")
    ax.axvspan(eff.ci[0], eff.ci[1], color="red", alpha=0.2, label="95% CI")
    ax.set_xlabel(f"effect on {eff.readout} ({eff.unit})")
    ax.set_ylabel("matched random controls (count)")
    ax.legend(fontsize=7)
    ax.set_title(f"{name}: {eff.perturbation.get('type')}")
    return _save(fig, path)


def synthesis_figure(name: str, by_cond: dict, path: Path) -> bool:
    res = next(iter(by_cond.values())).data
    n = min(8, len(res))
    fig, axes = _plt().subplots(1, n, figsize=(2 * n, 2.6), constrained_layout=True, squeeze=False)
    gamma = float(res.attrs.get("display", {}).get("gamma", 2.2))
    for k, ax in enumerate(axes[0]):
        img = res.images[k].permute(1, 2, 0).numpy() ** (1 / gamma)
        ax.imshow(img.clip(0, 1))
        row = res.table.iloc[k]
        nat = res.targets.set_index("target").loc[row.target, "best_natural"]
        ax.set_title(f"{row.target}\n{row.response:.0f} vs natural {nat:.0f}", fontsize=7)
        ax.axis("off")
    fig.suptitle(f"{name}: synthesized images (response vs best natural, spikes/s)")
    return _save(fig, path)


def _sweep_columns(table: Any) -> tuple[list[str], list[str]]:
    """(the swept metric's columns, one per condition; the parameters' columns)."""
    heads = tuple(f"{metric} (" for metric in SWEEP_METRICS.values())
    metrics = [c for c in table.columns if c.startswith(heads)]
    return metrics, [c for c in table.columns if " (" not in c]


def sweep_figure(table: Any, path: Path) -> bool:
    """The swept metric per task; for perturbation effects, the matched controls' mean ± sd."""
    metrics, params = _sweep_columns(table)
    if not metrics:
        return False
    labels = [", ".join(str(row[p]) for p in params) for _, row in table.iterrows()]
    x = np.arange(len(table))
    fig, ax = _plt().subplots(figsize=(max(6.0, 0.45 * len(table)), 4))
    for col in metrics:
        cond = col[col.index("(") :]
        if f"controls mean {cond}" in table:
            ax.errorbar(
                x,
                table[f"controls mean {cond}"],
                yerr=table[f"controls sd {cond}"],
                fmt="_",
                color="0.6",
                capsize=3,
                label=f"matched random controls {cond} (mean ± sd)",
            )
        ax.plot(x, table[col], "o", label=col)
    ax.axhline(0, color="0.8", lw=0.8)
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel(" / ".join(parameter_label(p) for p in params))
    ax.set_ylabel(metrics[0].split(" (")[0])
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def sweep_map_figure(table: Any, path: Path) -> bool:
    """A sweep over a site on the sheet (an ``at_mm`` parameter) as a map: one panel per value
    of the other parameters, each swept site coloured by the effect (diverging, 0 = white,
    one shared colour bar) and labelled with its directional p against matched controls."""
    metrics, params = _sweep_columns(table)
    site = next((p for p in params if p.split(".")[-1] == "at_mm"), None)
    if not metrics or site is None:
        return False
    xy = np.array([json.loads(v) if isinstance(v, str) else v for v in table[site]], float)
    others = [p for p in params if p != site]
    groups = list(table.groupby(others, sort=True)) if others else [((), table)]
    col = metrics[0]
    cond = col[col.index("(") :]
    values = table[col].to_numpy(float)
    lim = float(np.nanmax(np.abs(values))) or 1.0
    fig, axes = _plt().subplots(
        1,
        len(groups),
        figsize=(3.6 * len(groups) + 1.2, 3.6),
        squeeze=False,
        constrained_layout=True,
    )
    for ax, (key, sub) in zip(axes[0], groups):
        rows = sub.index.to_numpy()
        sc = ax.scatter(
            xy[rows, 0],
            xy[rows, 1],
            c=values[rows],
            cmap="RdBu_r",
            vmin=-lim,
            vmax=lim,
            s=900,
            marker="s",
            edgecolors="0.5",
        )
        pcol = f"directional p {cond}"
        for r in rows:
            text = f"{values[r]:+.3g}"
            if pcol in table:
                text += f"\np={table[pcol].iloc[r]:.2g}"
            dark = abs(values[r]) > 0.6 * lim
            ax.annotate(
                text, xy[r], ha="center", va="center", fontsize=6, color="w" if dark else "k"
            )
        key = key if isinstance(key, tuple) else (key,)
        ax.set_title(
            ", ".join(f"{parameter_label(p)} = {v}" for p, v in zip(others, key)) or col,
            fontsize=8,
        )
        ax.set_xlabel("injection site x (mm on the sheet)", fontsize=8)
        ax.set_aspect("equal")
        pad = 0.15 * (np.ptp(xy[:, 0]) or 1.0) + 0.5
        ax.set_xlim(xy[:, 0].min() - pad, xy[:, 0].max() + pad)
        ax.set_ylim(xy[:, 1].min() - pad, xy[:, 1].max() + pad)
    axes[0, 0].set_ylabel("injection site y (mm on the sheet)", fontsize=8)
    fig.colorbar(sc, ax=axes[0].tolist(), shrink=0.8).set_label(
        f"{col} vs control (p: directional, against matched random sites)", fontsize=7
    )
    fig.suptitle(f"sweep over {parameter_label(site)}", fontsize=9)
    return _save(fig, path)


def measure_figures(m: dict, by_cond: dict, figdir: Path) -> list[Path]:
    """The figures of one measure's outputs (by condition) that its data allows."""
    made = []
    first = next(iter(by_cond.values()))
    if m["kind"] == "record":
        for parameter in ("orientation_deg", "size_deg", "sf_cpd"):
            path = figdir / f"{m['name']}_{parameter}.png"
            if (
                parameter in first.data.coords
                and len(np.unique(first.data[parameter].values)) > 2
                and tuning_figure(m["name"], by_cond, parameter, path)
            ):
                made.append(path)
        path = figdir / f"{m['name']}_rf.png"
        if rf_figure(m["name"], first, path):
            made.append(path)
    elif m["kind"] == "behave":
        for metric in ("accuracy", "p_choice"):
            path = figdir / f"{m['name']}_{metric}.png"
            if bars_figure(m["name"], by_cond, metric, path):
                made.append(path)
    elif m["kind"] == "compare":
        path = figdir / f"{m['name']}_effect.png"
        if effect_figure(m["name"], first, path):
            made.append(path)
    elif m["kind"] == "synthesize":
        path = figdir / f"{m['name']}_images.png"
        if synthesis_figure(m["name"], by_cond, path):
            made.append(path)
    return made


def sweep_figures(table: Any, figdir: Path) -> list[tuple[Path, str]]:
    """The sweep's figures that its table allows, each with its alt text."""
    made = []
    for path, alt, draw in (
        (figdir / "sweep.png", "sweep", sweep_figure),
        (figdir / "sweep_map.png", "sweep map", sweep_map_figure),
    ):
        if draw(table, path):
            made.append((path, alt))
    return made
