"""What each table of an experiment file may hold, checked field by field in file order:
the top level, ``[model]``, ``[display]``, ``[rig]``, ``[[implant]]``, ``[[stimuli]]``,
``[[condition]]``, ``[[measure]]``, ``[[prediction]]`` and ``[sweep]``. Each check returns the
table's (normalised) data; the first bad value raises, naming the key and its line."""

from __future__ import annotations

import re
from typing import Any

from insilico.experiments.validation import Validator, expand_range, undefined

TOP_KEYS = {
    "name",
    "description",
    "seed",
    "model",
    "display",
    "rig",
    "implant",
    "stimuli",
    "condition",
    "measure",
    "prediction",
    "sweep",
}
DISPLAY_KEYS = {
    "distance_cm",
    "width_cm",
    "height_cm",
    "resolution",
    "gamma",
    "background",
    "bit_depth",
}
IMPLANT_KEYS = {"name", "region", "n_sites", "at_deg", "at_mm", "pitch_mm", "seed"}
STIMULUS_KINDS = (
    "gratings",
    "gabors",
    "natural",
    "white_noise",
    "pink_noise",
    "blank",
    "blend",
    "concat",
)
#: stimuli kinds built from stimuli defined above them: kind -> the keys naming them
STIMULUS_REFERENCES = {"blend": ("a", "b"), "concat": ("sets",)}
PERTURBATIONS = ("Lesion", "Muscimol", "Optogenetic", "Microstimulation", "Ablation")
#: a perturbation's amounts: numbers >= 0
PERTURBATION_AMOUNTS = (
    "volume_ul",
    "current_ua",
    "power_mw",
    "radius_mm",
    "pulse_hz",
    "duration_ms",
    "spread_scale",
)
#: keys of a perturbation's ``at_mm = {...}`` site chosen by preference
#: (insilico.analysis.preferred_site)
PREFERRED_SITE_KEYS = {"prefer", "stimuli", "labels", "radius_mm"}
MEASURE_KINDS = ("record", "behave", "synthesize", "compare")
MEASURE_KEYS = {
    "name",
    "kind",
    "stimuli",
    "targets",
    "conditions",
    "repeats",
    "noise",
    "task",
    "train",
    "labels",
    "region",
    "objective",
    "steps",
    "size_deg",
    "position_deg",
    "reference",
    "n_per_target",
    "sites",
    "rms_contrast",
    "held_out",
    "perturbation",
    "controls",
    "readout",
    "choice",
    "seed",
}
REGIONS = {"V1", "V2", "V4", "IT"}
PREDICTION_KEYS = {
    "name",
    "measure",
    "metric",
    "condition",
    "versus",
    "expect",
    "claim",
    "beats_controls",
    "null",
}
OPERATORS = ("<=", ">=", "<", ">")
#: the tables a sweep parameter (KIND.NAME.KEY) may change, in the order errors list them
SWEEPABLE = ("condition", "measure", "implant", "stimuli")


def check_settings(v: Validator) -> tuple[dict, dict, dict]:
    """The top-level keys, then ``[model]``, ``[display]`` and ``[rig]``."""
    data = v.data
    v.keys("", 0, data, TOP_KEYS, required=("name", "model"))
    v.typed("", 0, data, "name", str, "a string")
    v.typed("", 0, data, "seed", int, "an integer")
    model = data["model"]
    if not isinstance(model, dict):
        v.fail("must be a table [model]", "", 0, "model")
    v.keys("model", 0, model, {"name", "weights", "device"}, required=("name",))
    v.typed("model", 0, model, "name", str, "a model name string")
    for key in ("display", "rig", "sweep"):
        if key in data and not isinstance(data[key], dict):
            v.fail(f"must be a table [{key}], got {data[key]!r}", "", 0, key)
    display = data.get("display", {})
    v.keys("display", 0, display, DISPLAY_KEYS)
    for key in ("distance_cm", "width_cm", "height_cm", "gamma", "background"):
        v.typed("display", 0, display, key, int | float, "a number")
    v.typed("display", 0, display, "bit_depth", int, "an integer: 8, 10, 12 or 16")
    res = display.get("resolution", [1, 1])
    if not (
        isinstance(res, list)
        and len(res) == 2
        and all(isinstance(r, int) and not isinstance(r, bool) for r in res)
    ):
        v.fail(
            f"must be two integers [width_px, height_px], got {res!r}", "display", 0, "resolution"
        )
    rig = data.get("rig", {})
    v.keys("rig", 0, rig, {"fixation_deg"})
    v.degrees("rig", 0, rig, "fixation_deg")
    return model, display, rig


def check_implants(v: Validator) -> list[dict]:
    implants = v.named_items("implant")
    for i, item in enumerate(implants):
        v.keys("implant", i, item, IMPLANT_KEYS, required=("region", "n_sites"))
        v.typed("implant", i, item, "n_sites", int, "an integer number of sites")
        v.degrees("implant", i, item, "at_deg")
        if "at_mm" in item and isinstance(item["at_mm"], str):
            v.fail(f"must be [x_mm, y_mm], got {item['at_mm']!r}", "implant", i, "at_mm")
    return implants


def check_stimuli(v: Validator) -> list[dict]:
    """Stimulus sets; ranges expand to lists, and a blend or concat names sets above it."""
    stimuli = v.named_items("stimuli")
    for i, item in enumerate(stimuli):
        if "kind" not in item:
            v.fail("missing required key 'kind'", "stimuli", i)
        if item["kind"] not in STIMULUS_KINDS:
            v.fail(
                f"unknown kind {item['kind']!r}; one of {', '.join(STIMULUS_KINDS)}",
                "stimuli",
                i,
                "kind",
            )
        for key in list(item):
            if key.endswith("_px"):
                v.fail("sizes are in degrees: use the *_deg key, not pixels", "stimuli", i, key)
            try:
                item[key] = expand_range(item[key])
            except ValueError as err:
                v.fail(str(err), "stimuli", i, key)
        for key in ("size_deg", "position_deg", "sigma_deg", "grain_deg", "edge_deg"):
            v.degrees("stimuli", i, item, key)
        earlier = {s["name"] for s in stimuli[:i]}
        refs = STIMULUS_REFERENCES.get(item["kind"], ())
        if refs:
            v.keys("stimuli", i, item, {"name", "kind", "weight", *refs}, required=refs)
        for key in refs:
            names = item[key] if key == "sets" else [item[key]]
            if not isinstance(names, list) or not names:
                v.fail("must be a non-empty list of stimuli names", "stimuli", i, key)
            for ref in names:
                if ref not in earlier:
                    v.fail(undefined("stimuli", ref, earlier, above=True), "stimuli", i, key)
    return stimuli


def _check_perturbation(v: Validator, i: int, p: Any, stim_names: set[str]) -> None:
    where = ("condition", i, "perturbations")
    if not isinstance(p, dict) or p.get("type") not in PERTURBATIONS:
        v.fail(
            f"each perturbation needs type = one of {', '.join(PERTURBATIONS)}, got {p!r}", *where
        )
    site = p.get("at_mm")
    if isinstance(site, dict):
        unknown = set(site) - PREFERRED_SITE_KEYS
        missing = {"prefer", "stimuli", "labels"} - set(site)
        if unknown or missing:
            v.fail(
                f"at_mm as a table chooses the site preferring a label: keys "
                f"{', '.join(sorted(PREFERRED_SITE_KEYS))} (prefer, stimuli, labels "
                f"required); got {', '.join(sorted(site))}",
                *where,
            )
        if site["stimuli"] not in stim_names:
            v.fail("at_mm.stimuli " + undefined("stimuli", site["stimuli"]), *where)
    for key in PERTURBATION_AMOUNTS:
        value = p.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            v.fail(f"{key} must be a number >= 0, got {p[key]!r}", *where)


def check_conditions(v: Validator, stimuli: list[dict]) -> list[dict]:
    stim_names = {s["name"] for s in stimuli}
    conditions = v.named_items("condition")
    for i, item in enumerate(conditions):
        v.keys("condition", i, item, {"name", "perturbations", "description"})
        for p in item.get("perturbations", []):
            _check_perturbation(v, i, p, stim_names)
    return conditions


def check_measures(
    v: Validator, stimuli: list[dict], conditions: list[dict], implants: list[dict]
) -> list[dict]:
    stim_names = {s["name"] for s in stimuli}
    cond_names = {c["name"] for c in conditions} | {"control"}
    implant_names = {s["name"] for s in implants}
    measures = v.named_items("measure")
    for i, item in enumerate(measures):
        v.keys("measure", i, item, MEASURE_KEYS, required=("kind",))
        if item["kind"] not in MEASURE_KINDS:
            v.fail(
                f"unknown kind {item['kind']!r}; one of {', '.join(MEASURE_KINDS)}",
                "measure",
                i,
                "kind",
            )
        for key in ("stimuli", "train", "reference"):
            if key in item and item[key] not in stim_names:
                v.fail(undefined("stimuli", item[key], stim_names), "measure", i, key)
        for cond in item.get("conditions", []):
            if cond not in cond_names:
                v.fail(undefined("condition", cond, cond_names), "measure", i, "conditions")
        if "perturbation" in item and item["perturbation"] not in cond_names:
            v.fail(undefined("condition", item["perturbation"]), "measure", i, "perturbation")
        targets = item.get("targets")
        if isinstance(targets, str) and targets not in implant_names | REGIONS:
            v.fail(
                f"targets {targets!r} is neither an implant nor a region", "measure", i, "targets"
            )
        v.degrees("measure", i, item, "size_deg")
        v.degrees("measure", i, item, "position_deg")
        v.typed("measure", i, item, "repeats", int, "an integer")
        v.typed("measure", i, item, "steps", int, "an integer")
        if item["kind"] == "record" and ("stimuli" not in item or "targets" not in item):
            v.fail("a record measure needs stimuli and targets", "measure", i)
        if item["kind"] == "behave" and ("stimuli" not in item or "task" not in item):
            v.fail("a behave measure needs stimuli and task", "measure", i)
    return measures


def check_predictions(v: Validator, measures: list[dict], conditions: list[dict]) -> list[dict]:
    """Predictions; ``expect`` is parsed into ``_op`` and ``_threshold``."""
    measure_names = {m["name"] for m in measures}
    cond_names = {c["name"] for c in conditions} | {"control"}
    predictions = v.named_items("prediction")
    for i, item in enumerate(predictions):
        v.keys("prediction", i, item, PREDICTION_KEYS, required=("measure", "metric", "expect"))
        if item["measure"] not in measure_names:
            v.fail(undefined("measure", item["measure"], measure_names), "prediction", i, "measure")
        for key in ("condition", "versus"):
            if key in item and item[key] not in cond_names:
                v.fail(undefined("condition", item[key], cond_names), "prediction", i, key)
        m = re.match(r"^\s*(<=|>=|<|>)\s*(-?[0-9.eE+-]+)\s*$", str(item["expect"]))
        if not m:
            v.fail(
                f"must be '<op> <number>' with op in {OPERATORS}, got {item['expect']!r}",
                "prediction",
                i,
                "expect",
            )
        item["_op"], item["_threshold"] = m.group(1), float(m.group(2))
    return predictions


def check_sweep(v: Validator, tables: dict[str, list[dict]]) -> dict | None:
    """``[sweep]``: parameters ``KIND.NAME.KEY = [values]`` (or a range) of defined tables;
    ``tables``: the checked tables by kind (:data:`SWEEPABLE`)."""
    sweep = v.data.get("sweep")
    if sweep is None:
        return None
    where = ("sweep", 0, "parameters")
    v.keys("sweep", 0, sweep, {"parameters", "measure"}, required=("parameters",))
    params = sweep["parameters"]
    if not isinstance(params, dict) or not params:
        v.fail("must be a table of 'path' = [values]", *where)
    for path, values in list(params.items()):
        try:  # a {start, stop, step} range sweeps its values
            values = params[path] = expand_range(values)
        except ValueError as err:
            v.fail(f"parameter {path!r}: {err}", *where)
        parts = path.split(".")
        if len(parts) < 3 or parts[0] not in SWEEPABLE:
            v.fail(
                f"parameter {path!r} must look like condition.NAME.key or "
                "condition.NAME.perturbation_index.key",
                *where,
            )
        if parts[1] not in {t["name"] for t in tables[parts[0]]}:
            v.fail(f"parameter {path!r} {undefined(parts[0], parts[1])}", *where)
        if not isinstance(values, list) or not values:
            v.fail(f"parameter {path!r} needs a non-empty list of values", *where)
    return sweep
