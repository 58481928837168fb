"""Experiment files: TOML, validated field by field, errors naming the key and its line.

Top-level keys: ``name``, ``description``, ``seed``; tables ``[model]``, ``[display]``,
``[rig]``; arrays of tables ``[[implant]]``, ``[[stimuli]]``, ``[[condition]]``,
``[[measure]]``, ``[[prediction]]``; and ``[sweep]``. See ``docs/experiments.md``. A
:class:`Spec` is the validated data; :meth:`Spec.with_model` and
:meth:`Spec.with_parameters` give changed copies (a quick model, one sweep task).
"""

from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from insilico.experiments import schema
from insilico.experiments.validation import ExperimentError, KeyLines, Validator, undefined


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

    def items(self, table: str) -> list[dict[str, Any]]:
        """The tables of an array-of-tables key (``"condition"`` -> ``conditions``)."""
        return getattr(self, table if table == "stimuli" else table + "s", [])

    def names(self, kind: str) -> list[str]:
        return [item["name"] for item in getattr(self, kind)]

    def where(self, table: str, name: str | None = None) -> str:
        """``file:line: table.name`` of a table (by its ``name`` key) for error messages."""
        index = 0
        if name is not None:
            items = self.items(table)
            index = next((k for k, it in enumerate(items) if it.get("name") == name), 0)
        line = self.table_lines.get((table, index))
        place = f"{self.source}:{line}" if line else self.source
        return f"{place}: {table}{'.' + name if name else ''}"

    def with_model(self, name: str) -> Spec:
        """A copy run on another model (its own weights)."""
        spec = copy.deepcopy(self)
        spec.model = {**spec.model, "name": name}
        spec.model.pop("weights", None)
        return spec

    def with_parameters(self, params: dict[str, Any]) -> Spec:
        """A copy with sweep parameters applied (``condition.NAME[.i].key = value``)."""
        spec = copy.deepcopy(self)
        for path, value in params.items():
            kind, _, tail = path.partition(".")
            name, _, key = tail.partition(".")
            rest = key.split(".") if key else []
            if kind not in schema.SWEEPABLE or not rest:
                raise ExperimentError(
                    f"parameter {path!r}: expected KIND.NAME.KEY with KIND one of "
                    f"{', '.join(schema.SWEEPABLE)} (conditions: condition.NAME.INDEX.KEY)"
                )
            tables = spec.items(kind)
            item = next((t for t in tables if t["name"] == name), None)
            if item is None:
                defined = ", ".join(t["name"] for t in tables) or "none"
                raise ExperimentError(
                    f"parameter {path!r} {undefined(kind, name)} (defined: {defined})"
                )
            if kind == "condition" and len(rest) == 2:
                n = len(item["perturbations"])
                if not rest[0].isdigit() or int(rest[0]) >= n:
                    raise ExperimentError(
                        f"parameter {path!r}: perturbation index {rest[0]!r} is not in 0..{n - 1}"
                    )
                item["perturbations"][int(rest[0])][rest[1]] = value
            else:
                item[rest[-1]] = value
        return spec


def parse(text: str, source: str = "<experiment>") -> Spec:
    """Validate an experiment's TOML text; raise ExperimentError naming key and line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ExperimentError(f"{source}: not valid TOML: {err}") from None
    lines = KeyLines(text)
    v = Validator(data, lines, source)
    model, display, rig = schema.check_settings(v)
    implants = schema.check_implants(v)
    stimuli = schema.check_stimuli(v)
    conditions = schema.check_conditions(v, stimuli)
    measures = schema.check_measures(v, stimuli, conditions, implants)
    predictions = schema.check_predictions(v, measures, conditions)
    tables = {
        "condition": conditions,
        "measure": measures,
        "implant": implants,
        "stimuli": stimuli,
    }
    sweep = schema.check_sweep(v, tables)
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
