"""A whole experiment as a Python object, and its run: every measure under every condition,
the results store, the sweep, the verdicts and the report, written into one output folder."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from insilico.experiments.build import build
from insilico.experiments.measures import run_measure
from insilico.experiments.report import write_report
from insilico.experiments.results import MeasureOutput, MeasureOutputs, Results, store_results
from insilico.experiments.run_folder import open_output_folder
from insilico.experiments.spec import Spec, load, parse
from insilico.experiments.sweep import require_distributed, run_sweep
from insilico.experiments.validation import ExperimentError, located
from insilico.experiments.verdicts import evaluate


class Experiment:
    """A whole experiment as a Python object: ``Experiment.from_toml(path).run(out)``."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    @classmethod
    def from_toml(cls, path: str | Path) -> Experiment:
        return cls(load(path))

    @classmethod
    def from_text(cls, text: str, source: str = "<experiment>") -> Experiment:
        return cls(parse(text, source))

    def with_model(self, name: str) -> Experiment:
        """A copy run on another model (e.g. ``"tiny"`` for a quick check)."""
        return Experiment(self.spec.with_model(name))

    def with_parameters(self, params: dict[str, Any]) -> Experiment:
        """A copy with sweep parameters applied (``condition.NAME[.i].key = value``)."""
        return Experiment(self.spec.with_parameters(params))

    def build(self) -> dict[str, Any]:
        """The model, rig, implants, stimuli and conditions (:func:`~.build.build`)."""
        return build(self.spec)

    def run_measure(self, env: dict[str, Any], m: dict[str, Any]) -> dict[str, MeasureOutput]:
        """Measure ``m`` under each of its conditions in a built ``env``."""
        return run_measure(self.spec, env, m)

    def run(
        self,
        out: str | Path | None = None,
        overwrite: bool = False,
        workers: int | None = None,
        scheduler: str | None = None,
        progress: bool = True,
    ) -> Results:
        """Run everything, write ``out/results.zarr``, ``out/predictions.json`` and
        ``out/report.md`` (+ figures) into ``out`` (default ``runs/NAME``); return the Results.
        A ``[sweep]`` runs its tasks on a local Dask cluster of ``workers`` processes, or on
        ``scheduler`` (an address)."""
        t0 = time.perf_counter()
        spec = self.spec
        if workers or scheduler:
            if spec.sweep is None:
                raise ExperimentError(
                    f"{spec.name} has no [sweep]: workers={workers!r}/scheduler="
                    f"{scheduler!r} would have nothing to run"
                )
            require_distributed(workers, scheduler)  # before anything runs
        out = Path("runs") / spec.name if out is None else Path(out)
        open_output_folder(out, spec, overwrite)  # checked before anything is touched
        torch.manual_seed(spec.seed)
        env = self.build()
        results: MeasureOutputs = {}
        for m in tqdm(spec.measures, desc=spec.name, disable=not progress):
            with located(spec.where("measure", m["name"])):
                results[m["name"]] = self.run_measure(env, m)
        store = out / "results.zarr"
        if store.exists():
            shutil.rmtree(store)
        store_results(store, spec, results)
        sweep = None
        if spec.sweep is not None:
            sweep = run_sweep(
                spec, out / "sweep.zarr", workers=workers, scheduler=scheduler, progress=progress
            )
        labels = {m["name"]: m.get("labels") for m in spec.measures}
        predictions = [
            evaluate(p, results, seed=spec.seed, labels=labels.get(p["measure"]))
            for p in spec.predictions
        ]
        (out / "predictions.json").write_text(json.dumps(predictions, indent=2, default=float))
        res = Results(spec, out, results, predictions, time.perf_counter() - t0)
        res.conditions = {c: [repr(p) for p in ps] for c, ps in env["conditions"].items()}
        res.figures = write_report(res, sweep)
        return res
