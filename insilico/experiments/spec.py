"""Experiment files: TOML, validated field by field, errors naming the key and its line.

Top-level keys: ``name``, ``description``, ``seed``; tables ``[model]``, ``[display]``,
``[rig]``; arrays of tables ``[[implant]]``, ``[[stimuli]]``, ``[[condition]]``,
``[[measure]]``, ``[[prediction]]``; and ``[sweep]``. See ``docs/experiments.md``.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recordings.format import error_line

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
#: keys of a perturbation's ``at_mm = {...}`` site chosen by preference
#: (insilico.analysis.preferred_site)
PREFERRED_SITE_KEYS = {"prefer", "stimuli", "labels", "radius_mm"}
MEASURE_KINDS = ("record", "behave", "synthesize", "compare")
PERTURBATIONS = ("Lesion", "Muscimol", "Optogenetic", "Microstimulation", "Ablation")
OPERATORS = ("<=", ">=", "<", ">")


class ExperimentError(ValueError):
    """A bad experiment file: the message names the key and, when known, its line."""


@contextmanager
def located(where: str) -> Iterator[None]:
    """Re-raise a bad value met while building or running a table as one line that names
    the experiment file, the table's line and name (``file.toml:12: stimuli.test: ...``)."""
    try:
        yield
    except ExperimentError as err:
        if str(err).startswith(where.split(":")[0]):  # already names the file
            raise
        raise ExperimentError(f"{where}: {err}") from None
    except (ValueError, TypeError) as err:
        message = error_line(err)
        raise ExperimentError(f"{where}: {message}") from None


class _Lines:
    """Line numbers of keys in a TOML text: ``(table path, index, key) -> line``."""

    def __init__(self, text: str) -> None:
        self.lines: dict[tuple[str, int, str], int] = {}
        self.tables: dict[tuple[str, int], int] = {}
        table, counts = "", {}
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            m = re.match(r"^\[\[\s*([A-Za-z0-9_.]+)\s*\]\]$", line)
            if m:
                table = m.group(1)
                counts[table] = counts.get(table, -1) + 1
                self.tables[(table, counts[table])] = n
                continue
            m = re.match(r"^\[\s*([A-Za-z0-9_.]+)\s*\]$", line)
            if m:
                table = m.group(1)
                counts[table] = 0
                self.tables[(table, 0)] = n
                continue
            m = re.match(r'^"?([A-Za-z0-9_.\-]+)"?\s*=', line)
            if m:
                self.lines[(table, counts.get(table, 0), m.group(1))] = n

    def of(self, table: str, index: int, key: str | None = None) -> int | None:
        if key is not None and (table, index, key) in self.lines:
            return self.lines[(table, index, key)]
        return self.tables.get((table, index))


@dataclass
class Spec:
    """A validated experiment: plain data, ready to run."""

    name: str
    description: str
    seed: int
    model: dict[str, Any]
    display: dict[str, Any]
    rig: dict[str, Any]
    implants: list[dict[str, Any]] = field(default_factory=list)
    stimuli: list[dict[str, Any]] = field(default_factory=list)
    conditions: list[dict[str, Any]] = field(default_factory=list)
    measures: list[dict[str, Any]] = field(default_factory=list)
    predictions: list[dict[str, Any]] = field(default_factory=list)
    sweep: dict[str, Any] | None = None
    source: str = ""
    #: line of each table in the file: (table, index) -> line number (for runtime errors)
    table_lines: dict[tuple[str, int], int] = field(default_factory=dict, repr=False, compare=False)

    def names(self, kind: str) -> list[str]:
        return [item["name"] for item in getattr(self, kind)]

    def where(self, table: str, name: str | None = None) -> str:
        """``file:line: table.name`` of a table (by its ``name`` key) for error messages."""
        index = 0
        if name is not None:
            items = getattr(self, table if table == "stimuli" else table + "s", [])
            index = next((k for k, it in enumerate(items) if it.get("name") == name), 0)
        line = self.table_lines.get((table, index))
        place = f"{self.source}:{line}" if line else self.source
        return f"{place}: {table}{'.' + name if name else ''}"


class _Validator:
    def __init__(self, data: dict, lines: _Lines, source: str) -> None:
        self.data = data
        self.lines = lines
        self.source = source

    def fail(self, message: str, table: str = "", index: int = 0, key: str | None = None):
        line = self.lines.of(table, index, key)
        where = f"{self.source}:{line}" if line else self.source
        path = ".".join(p for p in (table, key) if p)
        raise ExperimentError(f"{where}: {path + ': ' if path else ''}{message}")

    def keys(self, table: str, index: int, item: dict, allowed: set[str], required=()):
        for key in item:
            if key not in allowed:
                self.fail(
                    f"unknown key {key!r}; allowed: {', '.join(sorted(allowed))}", table, index, key
                )
        for key in required:
            if key not in item:
                self.fail(f"missing required key {key!r}", table, index)

    def typed(self, table: str, index: int, item: dict, key: str, types, what: str):
        if key not in item:
            return
        value = item[key]
        allowed = types if isinstance(types, tuple) else (types,)
        bad_bool = isinstance(value, bool) and bool not in allowed
        if bad_bool or not isinstance(value, types):
            self.fail(f"must be {what}, got {value!r}", table, index, key)

    def degrees(self, table: str, index: int, item: dict, key: str):
        """A size or position in degrees: numbers only, no pixel units, positive sizes."""
        if key not in item:
            return
        value = item[key]
        if isinstance(value, list) and value and isinstance(value[0], list):
            value = [v for pair in value for v in pair]  # a list of (x, y) positions
        if isinstance(value, str):
            self.fail(
                f"must be a number of degrees, got {value!r} (pixels are not accepted: "
                "sizes and positions are in degrees of visual angle)",
                table,
                index,
                key,
            )
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int | float):
                self.fail(f"must be numbers of degrees, got {value!r}", table, index, key)
        if key.startswith("size") and any(v <= 0 for v in values):
            self.fail(f"must be positive, got {value!r}", table, index, key)


#: the most values a {start, stop, step} range may expand to
MAX_RANGE = 100_000


def _range(value: Any) -> Any:
    """``{start, stop, step}`` tables become lists, ``{x = range, y = range}`` a grid of
    (x, y) positions (y outer); everything else is unchanged."""
    if isinstance(value, dict) and set(value) == {"x", "y"}:
        xs, ys = _range(value["x"]), _range(value["y"])
        return [[x, y] for y in ys for x in xs]
    if isinstance(value, dict) and set(value) == {"start", "stop", "step"}:
        start, stop, step = value["start"], value["stop"], value["step"]
        for name, v in (("start", start), ("stop", stop), ("step", step)):
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                raise ValueError(f"range {name} must be a finite number, got {v!r}")
        if step <= 0:
            raise ValueError(f"range step must be > 0, got {step!r}")
        n = math.ceil((stop - start) / step - 1e-9)
        if n > MAX_RANGE:
            raise ValueError(f"range {value!r} has {n} values; at most {MAX_RANGE}")
        return [start + k * step for k in range(max(n, 0))]
    return value


def parse(text: str, source: str = "<experiment>") -> Spec:
    """Validate an experiment's TOML text; raise ExperimentError naming key and line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ExperimentError(f"{source}: not valid TOML: {err}") from None
    lines = _Lines(text)
    v = _Validator(data, lines, source)
    top = {
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
    v.keys("", 0, data, top, required=("name", "model"))
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
    v.keys(
        "display",
        0,
        display,
        {"distance_cm", "width_cm", "height_cm", "resolution", "gamma", "background", "bit_depth"},
    )
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

    def named_items(key: str) -> list[dict]:
        items = data.get(key, [])
        if not isinstance(items, list):
            v.fail(f"must be an array of tables [[{key}]]", "", 0, key)
        seen = set()
        for i, item in enumerate(items):
            if "name" not in item:
                v.fail("missing required key 'name'", key, i)
            v.typed(key, i, item, "name", str, "a string")
            if item["name"] in seen:
                v.fail(f"duplicate name {item['name']!r}", key, i, "name")
            seen.add(item["name"])
        return items

    implants = named_items("implant")
    for i, item in enumerate(implants):
        v.keys(
            "implant",
            i,
            item,
            {"name", "region", "n_sites", "at_deg", "at_mm", "pitch_mm", "seed"},
            required=("region", "n_sites"),
        )
        v.typed("implant", i, item, "n_sites", int, "an integer number of sites")
        v.degrees("implant", i, item, "at_deg")
        if "at_mm" in item and isinstance(item["at_mm"], str):
            v.fail(f"must be [x_mm, y_mm], got {item['at_mm']!r}", "implant", i, "at_mm")

    stimuli = named_items("stimuli")
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
                item[key] = _range(item[key])
            except ValueError as err:
                v.fail(str(err), "stimuli", i, key)
        for key in ("size_deg", "position_deg", "sigma_deg", "grain_deg", "edge_deg"):
            v.degrees("stimuli", i, item, key)
        earlier = {s["name"] for s in stimuli[:i]}
        refs = {"blend": ("a", "b"), "concat": ("sets",)}.get(item["kind"], ())
        if refs:
            v.keys("stimuli", i, item, {"name", "kind", "weight", *refs}, required=refs)
        for key in refs:
            names = item[key] if key == "sets" else [item[key]]
            if not isinstance(names, list) or not names:
                v.fail("must be a non-empty list of stimuli names", "stimuli", i, key)
            for ref in names:
                if ref not in earlier:
                    v.fail(
                        f"refers to stimuli {ref!r}, which is not defined above it "
                        f"(defined: {', '.join(sorted(earlier)) or 'none'})",
                        "stimuli",
                        i,
                        key,
                    )

    stim_names = {s["name"] for s in stimuli}
    conditions = named_items("condition")
    for i, item in enumerate(conditions):
        v.keys("condition", i, item, {"name", "perturbations", "description"})
        for p in item.get("perturbations", []):
            if not isinstance(p, dict) or p.get("type") not in PERTURBATIONS:
                v.fail(
                    f"each perturbation needs type = one of {', '.join(PERTURBATIONS)}, got {p!r}",
                    "condition",
                    i,
                    "perturbations",
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
                        "condition",
                        i,
                        "perturbations",
                    )
                if site["stimuli"] not in stim_names:
                    v.fail(
                        f"at_mm.stimuli refers to stimuli {site['stimuli']!r}, "
                        "which is not defined",
                        "condition",
                        i,
                        "perturbations",
                    )
            for key in (
                "volume_ul",
                "current_ua",
                "power_mw",
                "radius_mm",
                "pulse_hz",
                "duration_ms",
                "spread_scale",
            ):
                value = p.get(key, 0)
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    v.fail(
                        f"{key} must be a number >= 0, got {p[key]!r}",
                        "condition",
                        i,
                        "perturbations",
                    )
    cond_names = {c["name"] for c in conditions} | {"control"}
    implant_names = {s["name"] for s in implants}

    measures = named_items("measure")
    for i, item in enumerate(measures):
        allowed = {
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
        v.keys("measure", i, item, allowed, required=("kind",))
        if item["kind"] not in MEASURE_KINDS:
            v.fail(
                f"unknown kind {item['kind']!r}; one of {', '.join(MEASURE_KINDS)}",
                "measure",
                i,
                "kind",
            )
        for key in ("stimuli", "train", "reference"):
            if key in item and item[key] not in stim_names:
                v.fail(
                    f"refers to stimuli {item[key]!r}, which is not defined "
                    f"(defined: {', '.join(sorted(stim_names)) or 'none'})",
                    "measure",
                    i,
                    key,
                )
        for cond in item.get("conditions", []):
            if cond not in cond_names:
                v.fail(
                    f"refers to condition {cond!r}, which is not defined "
                    f"(defined: {', '.join(sorted(cond_names))})",
                    "measure",
                    i,
                    "conditions",
                )
        if "perturbation" in item and item["perturbation"] not in cond_names:
            v.fail(
                f"refers to condition {item['perturbation']!r}, which is not defined",
                "measure",
                i,
                "perturbation",
            )
        targets = item.get("targets")
        if isinstance(targets, str) and targets not in implant_names | {"V1", "V2", "V4", "IT"}:
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

    measure_names = {m["name"] for m in measures}
    predictions = named_items("prediction")
    for i, item in enumerate(predictions):
        v.keys(
            "prediction",
            i,
            item,
            {
                "name",
                "measure",
                "metric",
                "condition",
                "versus",
                "expect",
                "claim",
                "beats_controls",
                "null",
            },
            required=("measure", "metric", "expect"),
        )
        if item["measure"] not in measure_names:
            v.fail(
                f"refers to measure {item['measure']!r}, which is not defined "
                f"(defined: {', '.join(sorted(measure_names))})",
                "prediction",
                i,
                "measure",
            )
        for key in ("condition", "versus"):
            if key in item and item[key] not in cond_names:
                v.fail(
                    f"refers to condition {item[key]!r}, which is not defined "
                    f"(defined: {', '.join(sorted(cond_names))})",
                    "prediction",
                    i,
                    key,
                )
        m = re.match(r"^\s*(<=|>=|<|>)\s*(-?[0-9.eE+-]+)\s*$", str(item["expect"]))
        if not m:
            v.fail(
                f"must be '<op> <number>' with op in {OPERATORS}, got {item['expect']!r}",
                "prediction",
                i,
                "expect",
            )
        item["_op"], item["_threshold"] = m.group(1), float(m.group(2))

    sweep = data.get("sweep")
    if sweep is not None:
        v.keys("sweep", 0, sweep, {"parameters", "measure"}, required=("parameters",))
        params = sweep["parameters"]
        if not isinstance(params, dict) or not params:
            v.fail("must be a table of 'path' = [values]", "sweep", 0, "parameters")
        for path, values in list(params.items()):
            try:  # a {start, stop, step} range sweeps its values
                values = params[path] = _range(values)
            except ValueError as err:
                v.fail(f"parameter {path!r}: {err}", "sweep", 0, "parameters")
            parts = path.split(".")
            if len(parts) < 3 or parts[0] not in ("condition", "measure", "implant", "stimuli"):
                v.fail(
                    f"parameter {path!r} must look like condition.NAME.key or "
                    "condition.NAME.perturbation_index.key",
                    "sweep",
                    0,
                    "parameters",
                )
            table = {
                "condition": conditions,
                "measure": measures,
                "implant": implants,
                "stimuli": stimuli,
            }[parts[0]]
            if parts[1] not in {t["name"] for t in table}:
                v.fail(
                    f"parameter {path!r} refers to {parts[0]} {parts[1]!r}, which is not defined",
                    "sweep",
                    0,
                    "parameters",
                )
            if not isinstance(values, list) or not values:
                v.fail(
                    f"parameter {path!r} needs a non-empty list of values", "sweep", 0, "parameters"
                )
    return Spec(
        name=data["name"],
        description=data.get("description", ""),
        seed=int(data.get("seed", 0)),
        model=model,
        display=display,
        rig=rig,
        implants=implants,
        stimuli=stimuli,
        conditions=conditions,
        measures=measures,
        predictions=predictions,
        sweep=sweep,
        source=source,
        table_lines=dict(lines.tables),
    )


def load(path: str | Path) -> Spec:
    """Read and validate an experiment file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no experiment file at {str(path)!r}")
    return parse(path.read_text(), str(path))
