"""Sweep speed-up: a shipped experiment's [sweep] run serially, then on a local Dask cluster.

Both runs happen in this process, one after the other, into fresh stores; the script checks
that the stores are identical (they must be: each task runs on one torch thread).

    python tests/benchmarks/bench_sweep.py                      # muscimol_deficit, 2 workers
    python tests/benchmarks/bench_sweep.py --quick              # tiny model (CI smoke)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import xarray as xr
from _common import write_result

from insilico import experiments
from insilico.experiments import sweep as sw


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="muscimol_deficit")
    p.add_argument("--model", default=None, help="run on another model (default: the file's)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny model, 2 controls, 2 tasks")
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args(argv)
    exp = experiments.Experiment.from_toml(experiments.resolve(args.experiment))
    if args.quick:
        exp = exp.with_model("tiny").with_parameters({"measure.deficit.controls": 2})
        exp.spec.sweep["parameters"] = {
            k: v[:2] for k, v in list(exp.spec.sweep["parameters"].items())[:1]
        }
    elif args.model:
        exp = exp.with_model(args.model)
    tmp = Path(tempfile.mkdtemp(prefix="bench_sweep_"))
    seconds, stores = {}, {}
    try:
        for label, workers in (("serial", None), (f"{args.workers}_workers", args.workers)):
            stores[label] = tmp / f"{label}.zarr"
            t = time.perf_counter()
            table = sw.run_sweep(exp.spec, stores[label], workers=workers, progress=False)
            seconds[label] = round(time.perf_counter() - t, 1)
        a, b = (
            xr.open_dataset(s, engine="zarr", consolidated=False).load() for s in stores.values()
        )
        identical = bool(a["value"].equals(b["value"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    serial, parallel = seconds.values()
    result = {
        "experiment": exp.spec.name,
        "model": exp.spec.model["name"],
        "tasks": len(table),
        "workers": args.workers,
        "seconds": seconds,
        "speedup": round(serial / parallel, 2),
        "identical": identical,
    }
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    main()
