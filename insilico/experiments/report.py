"""Experiment reports: ``report.md`` in the results folder — the conditions, a table of the
predictions with their intervals, nulls and controls, each measure's summaries and figures,
and the sweep's table. Every effect is shown with its control: a condition against the one
it is compared with, or a perturbation's effect against its matched random controls."""

from __future__ import annotations

from typing import Any

from insilico.experiments.figures import measure_figures, sweep_figures
from insilico.experiments.results import Results


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


def _predictions(res: Results) -> list[str]:
    """The predictions table, then each prediction's null and interval in words."""
    lines = [
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
    return [*lines, ""]


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
    lines += _predictions(res)
    for m in res.spec.measures:
        by_cond = res.measures[m["name"]]
        lines += [f"## Measure `{m['name']}` ({m['kind']})", ""]
        for c, mo in by_cond.items():
            summary = ", ".join(f"{k} = {v:.4g}" for k, v in mo.summary.items())
            lines.append(f"- **{c}**: {summary}")
        lines.append("")
        made = measure_figures(m, by_cond, figdir)
        for path in made:
            lines += [f"![{path.stem}](figures/{path.name})", ""]
        figures += [str(p) for p in made]
    if sweep is not None:
        lines += ["## Sweep", "", "```", sweep.to_string(index=False, float_format="{:.4g}".format)]
        lines += ["```", ""]
        for path, alt in sweep_figures(sweep, figdir):
            figures.append(str(path))
            lines += [f"![{alt}](figures/{path.name})", ""]
    (out / "report.md").write_text("\n".join(lines))
    return figures
