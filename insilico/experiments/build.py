"""Building what a spec describes: the model on its rig and display, the implants, the
stimulus sets and the perturbations of each condition (sites chosen by preference
resolved)."""

from __future__ import annotations

from typing import Any

import perturb
import stimuli as stimulus_kinds
from insilico.analysis import preferred_site
from insilico.brain import load_model
from insilico.experiments.spec import Spec
from insilico.experiments.validation import ExperimentError, located
from rigs import Rig
from stimuli import Display


def _tuples(table: dict[str, Any], skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A table's keys as keyword arguments, lists (TOML's pairs) as tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in table.items() if k not in skip}


def stimulus_set(item: dict[str, Any], earlier: dict[str, Any]) -> Any:
    """The stimulus set of one ``[[stimuli]]`` table; ``earlier``: the sets built above it
    (a blend or concat is made of them)."""
    kw = {k: v for k, v in item.items() if k not in ("name", "kind")}
    if "position_deg" in kw:
        pos = kw["position_deg"]
        kw["position_deg"] = (
            [tuple(p) for p in pos] if pos and isinstance(pos[0], list) else tuple(pos)
        )
    if item["kind"] == "blend":
        kw["a"], kw["b"] = earlier[kw["a"]], earlier[kw["b"]]
    elif item["kind"] == "concat":
        kw["sets"] = {name: earlier[name] for name in kw["sets"]}
    return getattr(stimulus_kinds, item["kind"])(**kw)


def _perturbation(spec: Spec, condition: str, p: dict, rig: Rig, stimuli: dict) -> Any:
    kw = _tuples(p, skip=("type",))
    if isinstance(kw.get("at_mm"), dict):  # the site preferring a label
        pref = kw["at_mm"]
        try:
            kw["at_mm"] = preferred_site(
                rig,
                kw["region"],
                stimuli[pref["stimuli"]],
                pref["labels"],
                pref["prefer"],
                radius_mm=float(pref.get("radius_mm", 1.0)),
            )
        except (ValueError, KeyError) as err:
            raise ExperimentError(f"{spec.where('condition', condition)}: at_mm: {err}") from None
    with located(spec.where("condition", condition)):
        return getattr(perturb, p["type"])(**kw)


def build(spec: Spec) -> dict[str, Any]:
    """``{"model", "rig", "implants", "stimuli", "conditions"}``, the last three by name; the
    ``control`` condition has no perturbation."""
    model = load_model(
        spec.model["name"],
        weights=spec.model.get("weights"),
        device=spec.model.get("device", "cpu"),
    )
    with located(spec.where("display")):
        display = Display(**_tuples(spec.display))
    with located(spec.where("rig")):
        fixation = tuple(spec.rig.get("fixation_deg", (0, 0)))
        rig = Rig(model, display=display, fixation_deg=fixation)
    implants = {}
    for item in spec.implants:
        kw = _tuples(item, skip=("name", "region", "n_sites"))
        with located(spec.where("implant", item["name"])):
            implants[item["name"]] = rig.implant(item["region"], item["n_sites"], **kw)
    stimuli: dict[str, Any] = {}
    for item in spec.stimuli:
        with located(spec.where("stimuli", item["name"])):
            stimuli[item["name"]] = stimulus_set(item, stimuli)
    conditions = {"control": []}
    for item in spec.conditions:
        conditions[item["name"]] = [
            _perturbation(spec, item["name"], p, rig, stimuli)
            for p in item.get("perturbations", [])
        ]
    return {
        "model": model,
        "rig": rig,
        "implants": implants,
        "stimuli": stimuli,
        "conditions": conditions,
    }
