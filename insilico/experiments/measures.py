"""Running one ``[[measure]]`` under each of its conditions — record, behave, synthesize, or
compare a perturbation with matched controls — into per-item metric values and summaries."""

from __future__ import annotations

from typing import Any

import numpy as np

from insilico.analysis import compare
from insilico.brain import load_model
from insilico.experiments.metrics import record_values, statistic
from insilico.experiments.results import MeasureOutput
from insilico.experiments.spec import Spec
from insilico.experiments.validation import ExperimentError
from recordings.format import as_strings
from rigs import Rig
from stimuli.synthesis.result import SynthesisResult

Outputs = dict[str, MeasureOutput]


def _record(env: dict, m: dict, targets: Any, seed: int) -> Outputs:
    rig, st = env["rig"], env["stimuli"][m["stimuli"]]
    out = {}
    for c in m.get("conditions", ["control"]):
        with rig.perturb(*env["conditions"][c]):
            rec = rig.record(
                st,
                targets,
                repeats=int(m.get("repeats", 1)),
                noise=m.get("noise"),
                seed=seed,
                progress=False,
            )
        out[c] = MeasureOutput(data=rec, values=record_values(rec, m.get("labels")))
    return out


def _behave(env: dict, m: dict, seed: int) -> Outputs:
    rig, st = env["rig"], env["stimuli"][m["stimuli"]]
    task = m["task"]
    if task != "imagenet":
        train = env["stimuli"][m["train"]]
        task = rig.fit_task(train, m["labels"], region=m.get("region", "IT"), seed=seed)
    truth = as_strings(st.meta[m["labels"]]) if "labels" in m else None
    out = {}
    for c in m.get("conditions", ["control"]):
        with rig.perturb(*env["conditions"][c]):
            beh = rig.behave(st, task=task)
        mo = MeasureOutput(data=beh)
        if truth is not None:
            mo.values["accuracy"] = (as_strings(beh.label.values) == truth).astype(float)
        if "choice" in m:
            mo.values["p_choice"] = beh.sel(choice=str(m["choice"])).values
        out[c] = mo
    return out


def _held_out_rigs(rig: Rig, m: dict[str, Any]) -> list[Rig]:
    """The rig of a synthesize measure's ``held_out`` network (same display), if any."""
    name = m.get("held_out")
    if name is None:
        return []
    if not isinstance(name, str) or not name:
        raise ExperimentError(f"measure {m['name']}: held_out must be a model name, got {name!r}")
    return [Rig(load_model(name), display=rig.display)]


def _synthesis_output(res: SynthesisResult, m: dict[str, Any]) -> MeasureOutput:
    """Per-target metrics of a synthesize measure. With ``held_out`` (another network), the
    images are scored there: ``beats_natural``/``ratio`` are the held-out network's (against
    the equated natural crops), ``*_optimised`` the optimised model's own; ``*_unconstrained``
    compare with the plain full-gamut crops."""
    t = res.targets
    mo = MeasureOutput(data=res)
    held = m.get("held_out")
    pre = "" if held is None else f"transfer_{held}_"
    for col in ("beats_natural", "ratio", "beats_natural_unconstrained", "ratio_unconstrained"):
        mo.values[col] = t[pre + col].to_numpy(dtype=float)
        if held is not None:
            mo.values[f"{col}_optimised"] = t[col].to_numpy(dtype=float)
    if held is not None:
        match = res.attrs.get("transfer_match", {}).get(held)
        if match:
            mo.values["transfer_match_r"] = np.array([r["r"] for r in match], dtype=float)
            mo.values["transfer_rf_offset_deg"] = np.array(
                [r["rf_offset_deg"] for r in match], dtype=float
            )
    return mo


def _synthesize(env: dict, m: dict, targets: Any, seed: int) -> Outputs:
    rig, st = env["rig"], env["stimuli"][m["reference"]]
    sel = targets.sites[list(m["sites"])] if "sites" in m else targets
    out = {}
    for c in m.get("conditions", ["control"]):
        with rig.perturb(*env["conditions"][c]):
            res = rig.synthesize(
                sel,
                objective=m.get("objective", "drive"),
                steps=int(m.get("steps", 128)),
                size_deg=m.get("size_deg"),
                position_deg=tuple(m.get("position_deg", (0, 0))),
                reference=st,
                seed=seed,
                n_per_target=int(m.get("n_per_target", 1)),
                rms_contrast=float(m.get("rms_contrast", 0.25)),
                transfer=_held_out_rigs(rig, m),
                progress=False,
            )
        out[c] = _synthesis_output(res, m)
    return out


def _compare(env: dict, m: dict, targets: Any, seed: int) -> Outputs:
    """The perturbation of condition ``m["perturbation"]`` against matched random controls;
    keyed by that condition."""
    rig, st = env["rig"], env["stimuli"][m["stimuli"]]
    (p,) = env["conditions"][m["perturbation"]] or [None]
    if p is None:
        raise ExperimentError(
            f"measure {m['name']}: condition {m['perturbation']!r} has no perturbation to compare"
        )
    task = m.get("task")
    if task not in (None, "imagenet"):
        task = rig.fit_task(
            env["stimuli"][m["train"]], m["labels"], region=m.get("region", "IT"), seed=seed
        )
    readout = m.get("readout", "behaviour")
    labels = as_strings(st.meta[m["labels"]]) if readout == "behaviour" else None
    eff = compare(
        rig,
        st,
        p,
        readout=readout,
        task=task,
        labels=labels,
        choice=m.get("choice"),
        targets=targets,
        controls=int(m.get("controls", 20)),
        seed=seed,
        progress=False,
    )
    mo = MeasureOutput(data=eff)
    mo.values["effect"] = np.array([eff.effect])
    mo.summary.update(
        effect=eff.effect,
        ci_low=eff.ci[0],
        ci_high=eff.ci[1],
        p_directional=eff.p_directional,
        p_value=eff.p_value,
    )
    return {m["perturbation"]: mo}


def run_measure(spec: Spec, env: dict[str, Any], m: dict[str, Any]) -> Outputs:
    """Run measure ``m`` in the built ``env`` (:func:`insilico.experiments.build.build`):
    condition -> output, each metric summarised by the statistic its predictions use."""
    seed = int(m.get("seed", spec.seed))
    targets = m.get("targets")
    if isinstance(targets, str) and targets in env["implants"]:
        targets = env["implants"][targets]
    if m["kind"] == "record":
        out = _record(env, m, targets, seed)
    elif m["kind"] == "behave":
        out = _behave(env, m, seed)
    elif m["kind"] == "synthesize":
        out = _synthesize(env, m, targets, seed)
    elif m["kind"] == "compare":
        out = _compare(env, m, targets, seed)
    else:
        out = {}
    for mo in out.values():
        for name, vals in mo.values.items():
            # the statistic the predictions use (median |d'|, median OSI, ...)
            if len(vals):
                mo.summary.setdefault(name, float(statistic(name)(vals)))
    return out
