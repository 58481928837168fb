"""The output folder of a run: what a run writes there, the marker naming the experiment (and
spec) it belongs to, and the checks that refuse a user's folder or another experiment's run
before anything is written."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from insilico.experiments.spec import Spec

#: written into every run folder: which experiment (and spec) the folder's results belong to
RUN_MARKER = ".insilico-run.json"
#: what a run writes into its folder (anything else there is a user's and is never touched)
RUN_OUTPUTS = {"results.zarr", "sweep.zarr", "report.md", "predictions.json", "figures", RUN_MARKER}


def run_identity(spec: Spec) -> dict[str, Any]:
    """The experiment's name and a hash of its spec (what a run folder is marked with)."""
    body = {k: v for k, v in spec.__dict__.items() if k not in ("source", "table_lines")}
    blob = json.dumps(body, sort_keys=True, default=str)
    return {"experiment": spec.name, "spec": hashlib.sha256(blob.encode()).hexdigest()[:16]}


def check_output_folder(out: Path, spec: Spec, overwrite: bool) -> None:
    """Refuse, before writing anything, a folder holding files a run did not write (never
    deleted, even with overwrite) or another experiment's run (replaced only with overwrite);
    a sweep resumes only its own run's folder."""
    if not out.exists():
        return
    if not out.is_dir():
        raise FileExistsError(f"output {str(out)!r} exists and is not a folder")
    entries = {p.name for p in out.iterdir()}
    if not entries:
        return
    foreign = sorted(entries - RUN_OUTPUTS)
    if foreign:
        raise FileExistsError(
            f"output folder {str(out)!r} holds files a run did not write ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); choose an empty or new folder"
        )
    try:
        mine = json.loads((out / RUN_MARKER).read_text())
    except (OSError, ValueError):
        mine = None
    same = mine == run_identity(spec)
    if overwrite:
        return
    if spec.sweep is not None and same:
        return  # the same sweep resumes its store
    what = f"a run of {mine.get('experiment')!r}" if isinstance(mine, dict) else "an earlier run"
    raise FileExistsError(
        f"output folder {str(out)!r} holds {what}; pass overwrite=True (CLI: --overwrite) to "
        "replace it"
    )


def open_output_folder(out: Path, spec: Spec, overwrite: bool) -> None:
    """Check ``out`` (:func:`check_output_folder`), create it and mark it as this spec's run;
    with ``overwrite`` an earlier sweep store is removed (else the sweep resumes it)."""
    check_output_folder(out, spec, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    (out / RUN_MARKER).write_text(json.dumps(run_identity(spec)))
    if overwrite and (out / "sweep.zarr").exists():
        shutil.rmtree(out / "sweep.zarr")
