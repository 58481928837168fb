"""Sweeps: expand ``[sweep]`` parameters into tasks and run them on Dask distributed.

The store is written in two phases (xarray's recipe for parallel writes): a template with
every variable at full size along ``task`` (chunks of one task), then one region write per
task. A task marks itself done in a ``done`` array only after its data is on disk, so a killed
sweep re-run completes only the missing tasks. Each task runs with one torch thread, so the
result does not depend on how tasks are spread over workers: a 2-worker sweep equals the
serial run bit for bit. Sweeps take the experiment's :class:`Spec` (a task is the spec with
its parameters applied), so they need no Experiment.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
import zarr
from tqdm.auto import tqdm

from insilico.brain.allocator import enabled as allocator_enabled
from insilico.experiments.build import build, stimulus_set
from insilico.experiments.measures import run_measure
from insilico.experiments.metrics import SWEEP_METRICS
from insilico.experiments.spec import Spec
from insilico.experiments.validation import ExperimentError, located
from recordings.format import as_string_array


def tasks(spec: Spec) -> list[dict[str, Any]]:
    """The parameter combinations of a sweep, in a fixed order (last parameter fastest)."""
    params = spec.sweep["parameters"]
    keys = list(params)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(params[k] for k in keys))]


def _measure(spec: Spec) -> dict[str, Any]:
    name = spec.sweep.get("measure") or spec.measures[0]["name"]
    try:
        return next(m for m in spec.measures if m["name"] == name)
    except StopIteration:
        raise ExperimentError(f"sweep measure {name!r} is not defined") from None


def run_task(spec: Spec, index: int, params: dict[str, Any], store: str) -> int:
    """Run one task and write its region of the store (then mark it done)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        task = spec.with_parameters(params)
        m = _measure(task)
        env = build(task)
        with located(task.where("measure", m["name"])):
            out = run_measure(task, env, m)
        metric = SWEEP_METRICS[m["kind"]]
        values = np.stack([np.asarray(out[c].values[metric], dtype=np.float64) for c in out])
        controls = np.full((len(out), 3), np.nan)  # compare: controls' mean, sd, directional p
        for k, c in enumerate(out):
            eff = out[c].data
            if m["kind"] == "compare" and len(eff.control_effects):
                ce = np.asarray(eff.control_effects, dtype=np.float64)
                controls[k] = ce.mean(), ce.std(), eff.p_directional
    finally:
        torch.set_num_threads(threads)
    ds = xr.Dataset(
        {
            "value": (("task", "condition", "item"), values[None]),
            "controls": (("task", "condition", "statistic"), controls[None]),
        }
    )
    ds.to_zarr(store, region={"task": slice(index, index + 1)}, consolidated=False)
    zarr.open_group(store, mode="r+")["done"][index] = True
    return index


def _template(
    spec: Spec,
    store: Path,
    all_tasks: list[dict],
    shape: tuple[int, int],
    conditions: list[str],
) -> None:
    n = len(all_tasks)
    ds = xr.Dataset(
        {
            "value": (("task", "condition", "item"), np.full((n, *shape), np.nan)),
            "controls": (("task", "condition", "statistic"), np.full((n, shape[0], 3), np.nan)),
            "done": (("task",), np.zeros(n, dtype=bool)),
        },
        coords={
            "condition": as_string_array(conditions),
            "statistic": as_string_array(["control_mean", "control_sd", "p_directional"]),
            "parameters": ("task", as_string_array([json.dumps(t) for t in all_tasks])),
        },
        attrs={
            "sweep": json.dumps(spec.sweep["parameters"]),
            "experiment": spec.name,
            "model": spec.model["name"],
        },
    )
    # one chunk per task, so each task's region write touches its own chunks only (written
    # eagerly: the template is small, and this needs no dask)
    encoding = {
        "value": {"chunks": (1, *shape)},
        "controls": {"chunks": (1, shape[0], 3)},
        "done": {"chunks": (1,)},
    }
    ds.to_zarr(store, mode="w-", consolidated=False, encoding=encoding)


def require_distributed(workers: int | None, scheduler: str | None) -> None:
    """Raise a one-line error when Dask distributed, needed for workers/scheduler, is absent."""
    try:  # optional (insilico-lab[scale]): imported only when a sweep asks for workers
        import distributed  # noqa: F401
    except ImportError:
        raise ExperimentError(
            f"workers={workers!r}/scheduler={scheduler!r} need Dask distributed; "
            "install it with: pip install 'insilico-lab[scale]'"
        ) from None


def run_sweep(
    spec: Spec,
    store: str | Path,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run the sweep's missing tasks (serially, on ``workers`` local processes, or on the
    Dask ``scheduler`` at that address) and return a table: parameters, metric per condition."""
    store = Path(store)
    all_tasks = tasks(spec)
    m = _measure(spec)
    if m["kind"] not in SWEEP_METRICS:
        raise ExperimentError(f"sweeps support measures of kind {', '.join(SWEEP_METRICS)}")
    conditions = (
        list(m.get("conditions", ["control"])) if m["kind"] != "compare" else [m["perturbation"]]
    )
    if not store.exists():
        first = _items_per_condition(spec, m)
        _template(spec, store, all_tasks, (len(conditions), first), conditions)
    group = zarr.open_group(str(store), mode="r")
    made_for = tuple(group.attrs.get(k) for k in ("experiment", "model", "sweep"))
    if made_for != (
        spec.name,
        spec.model["name"],
        json.dumps(spec.sweep["parameters"]),
    ):
        raise ExperimentError(
            f"sweep store {str(store)!r} was written for another sweep (experiment "
            f"{made_for[0]!r}, model {made_for[1]!r}); delete it or run with overwrite=True "
            "(CLI: --overwrite)"
        )
    done = group["done"][:]
    todo = [i for i in range(len(all_tasks)) if not done[i]]
    t0 = time.perf_counter()
    if todo and (workers or scheduler):
        require_distributed(workers, scheduler)
        # optional (insilico-lab[scale]), present once require_distributed passed
        import dask
        from distributed import Client, LocalCluster, as_completed

        cluster = None
        if not scheduler:
            # tasks run in worker threads: one glibc arena keeps their big activation
            # buffers off mmap (see insilico/brain/allocator.py); set before workers spawn
            environ = {"distributed.nanny.pre-spawn-environ.MALLOC_ARENA_MAX": "1"}
            with dask.config.set(environ if allocator_enabled() else {}):
                cluster = LocalCluster(
                    n_workers=int(workers),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
        with Client(scheduler or cluster) as client:
            futures = [
                client.submit(run_task, spec, i, all_tasks[i], str(store), pure=False) for i in todo
            ]
            for _ in tqdm(
                as_completed(futures), total=len(futures), desc="sweep", disable=not progress
            ):
                pass
            client.gather(futures)  # raises a failed task's error
        if cluster is not None:
            cluster.close()
    else:
        for i in tqdm(todo, desc="sweep", disable=not progress):
            run_task(spec, i, all_tasks[i], str(store))
    ds = xr.open_dataset(store, engine="zarr", consolidated=False, chunks=None).load()
    rows = []
    for i, t in enumerate(all_tasks):
        row = {
            k.split(".", 1)[1]: json.dumps(v) if isinstance(v, list) else v for k, v in t.items()
        }
        for j, c in enumerate(conditions):
            row[f"{SWEEP_METRICS[m['kind']]} ({c})"] = float(np.nanmean(ds["value"].values[i, j]))
            if m["kind"] == "compare":  # an effect is never shown without its controls
                mean, sd, p = ds["controls"].values[i, j]
                row[f"controls mean ({c})"] = float(mean)
                row[f"controls sd ({c})"] = float(sd)
                row[f"directional p ({c})"] = float(p)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["seconds"] = time.perf_counter() - t0
    table.attrs["tasks_run"] = len(todo)
    return table


def _items_per_condition(spec: Spec, m: dict[str, Any]) -> int:
    """Items per condition of the sweep measure's metric (stimuli, or 1 for compare)."""
    if m["kind"] == "compare":
        return 1
    item = next(s for s in spec.stimuli if s["name"] == m["stimuli"])
    return len(stimulus_set(item, {}))
