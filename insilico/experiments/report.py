"""Experiment reports: Markdown with PNG figures (matplotlib). Every effect is shown with its
control: a condition against the one it is compared with, or a perturbation's effect against
the distribution of its matched random controls."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from insilico.experiments.sweep import SWEEP_METRICS

if TYPE_CHECKING:
    from insilico.experiments.run import Results


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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _tuning_figure(name: str, by_cond: dict, parameter: str, path: Path) -> bool:
    from insilico.analysis import tuning_curve

    plt = _plt()
    first = next(iter(by_cond.values())).data
    if parameter not in first.coords:
        return False
    fig, axes = plt.subplots(2, 4, figsize=(11, 5), sharex=True, constrained_layout=True)
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _rf_figure(name: str, mo: Any, path: Path) -> bool:
    rec = mo.data
    if "position_x_deg" not in rec.coords or len(np.unique(rec.position_x_deg.values)) < 3:
        return False
    plt = _plt()
    r = rec.mean("time_bin")
    x, y = r.position_x_deg.values, r.position_y_deg.values
    xs, ys = np.unique(x), np.unique(y)
    fig, axes = plt.subplots(2, 4, figsize=(11, 5), constrained_layout=True)
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _bars_figure(name: str, by_cond: dict, metric: str, path: Path) -> bool:
    plt = _plt()
    conds = [c for c, mo in by_cond.items() if metric in mo.values and len(mo.values[metric])]
    if not conds:
        return False
    fig, ax = plt.subplots(figsize=(4 + len(conds), 3.5), constrained_layout=True)
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _effect_figure(name: str, mo: Any, path: Path) -> bool:
    eff = mo.data
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5), constrained_layout=True)
    if len(eff.control_effects):
        ax.hist(eff.control_effects, bins=20, color="grey", label="matched random controls")
    ax.axvline(eff.effect, color="red", label="perturbation")
    ax.axvspan(eff.ci[0], eff.ci[1], color="red", alpha=0.2, label="95% CI")
    ax.set_xlabel(f"effect on {eff.readout} ({eff.unit})")
    ax.set_ylabel("matched random controls (count)")
    ax.legend(fontsize=7)
    ax.set_title(f"{name}: {eff.perturbation.get('type')}")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _synthesis_figure(name: str, by_cond: dict, path: Path) -> bool:
    plt = _plt()
    res = next(iter(by_cond.values())).data
    n = min(8, len(res))
    fig, axes = plt.subplots(1, n, figsize=(2 * n, 2.6), constrained_layout=True, squeeze=False)
    gamma = float(res.attrs.get("display", {}).get("gamma", 2.2))
    for k, ax in enumerate(axes[0]):
        img = res.images[k].permute(1, 2, 0).numpy() ** (1 / gamma)
        ax.imshow(img.clip(0, 1))
        row = res.table.iloc[k]
        nat = res.targets.set_index("target").loc[row.target, "best_natural"]
        ax.set_title(f"{row.target}\n{row.response:.0f} vs natural {nat:.0f}", fontsize=7)
        ax.axis("off")
    fig.suptitle(f"{name}: synthesized images (response vs best natural, spikes/s)")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _sweep_figure(table: Any, path: Path) -> bool:
    """The swept metric per task; for perturbation effects, the matched controls' mean ± sd."""
    heads = tuple(f"{metric} (" for metric in SWEEP_METRICS.values())
    metrics = [c for c in table.columns if c.startswith(heads)]
    if not metrics:
        return False
    params = [c for c in table.columns if " (" not in c]
    labels = [", ".join(str(row[p]) for p in params) for _, row in table.iterrows()]
    x = np.arange(len(table))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(table)), 4))
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _sweep_map_figure(table: Any, path: Path) -> bool:
    """A sweep over a site on the sheet (an ``at_mm`` parameter) as a map: one panel per value
    of the other parameters, each swept site coloured by the effect (diverging, 0 = white,
    one shared colour bar) and labelled with its directional p against matched controls."""
    heads = tuple(f"{metric} (" for metric in SWEEP_METRICS.values())
    metrics = [c for c in table.columns if c.startswith(heads)]
    params = [c for c in table.columns if " (" not in c]
    site = next((p for p in params if p.split(".")[-1] == "at_mm"), None)
    if not metrics or site is None:
        return False
    import json

    xy = np.array([json.loads(v) if isinstance(v, str) else v for v in table[site]], float)
    others = [p for p in params if p != site]
    groups = list(table.groupby(others, sort=True)) if others else [((), table)]
    col = metrics[0]
    cond = col[col.index("(") :]
    values = table[col].to_numpy(float)
    lim = float(np.nanmax(np.abs(values))) or 1.0
    plt = _plt()
    fig, axes = plt.subplots(
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
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _control_text(p: dict) -> str:
    """What a prediction's statistic is compared with, in numbers."""
    if "versus" in p:
        return (
            f"{p['condition']} {p['value_condition']:.4g} vs {p['versus']} {p['value_versus']:.4g}"
        )
    if "control_effects_mean" in p:
        text = (
            f"random controls: mean {p['control_effects_mean']:.4g}, "
            f"directional p {p['p_directional']:.3g}"
        )
        if p.get("affected_units") is not None:
            text += (
                f"; tissue match {p['affected_units']} units vs "
                f"{p['control_affected_mean']:.1f} per control"
            )
        return text + (
            f" (needs {p['controls_criterion'].removeprefix('directional p ')})"
            if "controls_criterion" in p
            else ""
        )
    return "—"


def write_report(res: Results, sweep: Any = None) -> list[str]:
    """Write ``report.md`` and figures into the results folder; return the figure paths."""
    out = res.out
    figdir = out / "figures"
    figdir.mkdir(exist_ok=True)
    figures = []
    lines = [
        f"# {res.spec.name}",
        "",
        res.spec.description,
        "",
        f"Model `{res.spec.model['name']}`; run time {res.seconds:.1f} s.",
        "",
    ]
    if len(res.conditions) > 1:
        lines += ["## Conditions", ""]
        for c, ps in res.conditions.items():
            lines.append(f"- **{c}**: " + ("; ".join(f"`{p}`" for p in ps) or "no perturbation"))
        lines.append("")
    lines += [
        "## Predictions",
        "",
        "| prediction | statistic | value | 95% CI | null (computed) | expected | control "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in res.predictions:
        stat = p["metric"] + (
            f" ({p['condition']} − {p['versus']})" if "versus" in p else f" ({p['condition']})"
        )
        null = (
            f"{p['null_value']:.4g} (95th pct {p['null_95']:.4g}; {p['null_computed']})"
            if "null_value" in p
            else "see below"
        )
        lines.append(
            f"| {p['name']} | {stat} | {p['value']:.4g} | [{p['ci'][0]:.4g}, "
            f"{p['ci'][1]:.4g}] | {null} | {p['expect']} | {_control_text(p)} | "
            f"**{p['verdict']}** |"
        )
    lines += ["", "Each prediction's null, and the interval it was judged with:", ""]
    for p in res.predictions:
        lines.append(
            f"- **{p['name']}** — null: {p.get('null') or 'none stated'}"
            + (f"; interval: {p['interval']}" if p.get("interval") else "")
        )
    lines += [""]
    for m in res.spec.measures:
        by_cond = res.measures[m["name"]]
        lines += [f"## Measure `{m['name']}` ({m['kind']})", ""]
        for c, mo in by_cond.items():
            summary = ", ".join(f"{k} = {v:.4g}" for k, v in mo.summary.items())
            lines.append(f"- **{c}**: {summary}")
        lines.append("")
        made = []
        if m["kind"] == "record":
            for parameter in ("orientation_deg", "size_deg", "sf_cpd"):
                path = figdir / f"{m['name']}_{parameter}.png"
                first = next(iter(by_cond.values())).data
                if (
                    parameter in first.coords
                    and len(np.unique(first[parameter].values)) > 2
                    and _tuning_figure(m["name"], by_cond, parameter, path)
                ):
                    made.append(path)
            path = figdir / f"{m['name']}_rf.png"
            if _rf_figure(m["name"], next(iter(by_cond.values())), path):
                made.append(path)
        elif m["kind"] in ("behave",):
            for metric in ("accuracy", "p_choice"):
                path = figdir / f"{m['name']}_{metric}.png"
                if _bars_figure(m["name"], by_cond, metric, path):
                    made.append(path)
        elif m["kind"] == "compare":
            path = figdir / f"{m['name']}_effect.png"
            if _effect_figure(m["name"], next(iter(by_cond.values())), path):
                made.append(path)
        elif m["kind"] == "synthesize":
            path = figdir / f"{m['name']}_images.png"
            if _synthesis_figure(m["name"], by_cond, path):
                made.append(path)
        for path in made:
            lines += [f"![{path.stem}](figures/{path.name})", ""]
        figures += [str(p) for p in made]
    if sweep is not None:
        lines += ["## Sweep", "", "```", sweep.to_string(index=False, float_format="{:.4g}".format)]
        lines += ["```", ""]
        path = figdir / "sweep.png"
        if _sweep_figure(sweep, path):
            figures.append(str(path))
            lines += [f"![sweep](figures/{path.name})", ""]
        path = figdir / "sweep_map.png"
        if _sweep_map_figure(sweep, path):
            figures.append(str(path))
            lines += [f"![sweep map](figures/{path.name})", ""]
    (out / "report.md").write_text("\n".join(lines))
    return figures
