"""What a run produces — each measure's output under each condition, the verdicts — and how
the measures' outputs are stored: one zarr store, a group per measure and condition."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from insilico.experiments.spec import Spec
from recordings.format import INSILICO_VERSION, json_attrs
from recordings.store import as_zarr_dataset
from stimuli.synthesis.result import SynthesisResult


@dataclass
class MeasureOutput:
    """What one measure produced under one condition: per-item values of each metric."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    data: Any = None  # recording / behaviour / SynthesisResult / Effect


#: measure -> condition -> its output
MeasureOutputs = dict[str, dict[str, MeasureOutput]]


@dataclass
class Results:
    """Everything a run produced; ``predictions`` holds the verdicts."""

    spec: Spec
    out: Path
    measures: MeasureOutputs
    predictions: list[dict[str, Any]]
    seconds: float
    figures: list[str] = field(default_factory=list)
    #: condition -> its perturbations as applied (sites chosen by preference resolved)
    conditions: dict[str, list[str]] = field(default_factory=dict)

    def verdicts(self) -> dict[str, str]:
        return {p["name"]: p["verdict"] for p in self.predictions}


def store_results(store: Path, spec: Spec, results: MeasureOutputs) -> None:
    """One zarr store: a group per measure and condition with its metrics (per item), the
    recording (record measures), choice probabilities (behave measures) or images
    (synthesize measures)."""
    root = xr.Dataset(
        attrs=json_attrs(
            {"experiment": spec.name, "source": spec.source, "insilico_version": INSILICO_VERSION}
        )
    )
    root.to_zarr(store, mode="w-", consolidated=False)
    for mname, by_cond in results.items():
        for cname, mo in by_cond.items():
            ds = xr.Dataset(
                {
                    f"metric__{k}": (f"item_{k}", np.asarray(v, dtype=float))
                    for k, v in mo.values.items()
                },
                attrs=json_attrs({"summary": mo.summary}),
            )
            if isinstance(mo.data, xr.DataArray):
                data = as_zarr_dataset(mo.data)
                data[next(iter(data.data_vars))].attrs = {}
                ds = xr.merge([ds, data], combine_attrs="override")
            elif isinstance(mo.data, SynthesisResult):
                # the images themselves, as a synthesis store: the group opens with
                # SynthesisResult.open / insilico view, and exports to a real rig
                syn = mo.data.to_dataset()
                syn.attrs.update(ds.attrs)
                ds = xr.merge([syn, ds], combine_attrs="override")
            ds.to_zarr(store, group=f"{mname}/{cname}", mode="w-", consolidated=False)
