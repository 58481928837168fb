"""Zarr storage of recordings: save, lazy open, and crash-safe streaming with resume.

Conventions (DESIGN.md, Storage): zarr v3 through xarray, ``consolidated=False``,
variable-length strings, MultiIndexes reset before writing, appends along
``presentation`` with ``mode="a-"`` so the fixed neuroid/time-bin coordinates are never
rewritten. A streamed store keeps two bookkeeping attrs on its root group:
``insilico_job`` (a JSON fingerprint of the job that writes it) and
``presentations_done`` (how many presentations are committed). The count is updated only
after a batch is on disk, so a crash leaves every finished batch readable and a rerun of the
same job resumes after the last committed batch.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr
import zarr

from recordings.format import as_string_array, check_recording, json_attrs

JOB_ATTR = "insilico_job"
DONE_ATTR = "presentations_done"
COMPLETE_ATTR = "complete"
VARIABLE = "response"


def _prepare(rec: xr.DataArray) -> xr.Dataset:
    """DataArray -> Dataset ready for zarr: no MultiIndex, vlen strings, JSON-safe attrs."""
    if rec.name is None or rec.name != VARIABLE:
        rec = rec.rename(VARIABLE)
    if any(isinstance(idx, pd.MultiIndex) for idx in rec.indexes.values()):
        rec = rec.reset_index(list(rec.indexes))
    coords = {}
    for name, coord in rec.coords.items():
        if coord.dtype.kind in "UO":
            coords[name] = (coord.dims, as_string_array(coord.values))
    if coords:
        rec = rec.assign_coords(coords)
    rec = rec.copy(deep=False)
    rec.attrs = json_attrs(rec.attrs)
    return rec.to_dataset()


def _check_target(path: Path, overwrite: bool) -> None:
    if path.exists():
        if not overwrite:
            raise FileExistsError(
                f"output path {str(path)!r} exists; pass overwrite=True (CLI: --overwrite) "
                "to replace it"
            )
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def save(rec: xr.DataArray, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a recording to a zarr store at ``path`` (refuses an existing path unless told)."""
    check_recording(rec)
    path = Path(path)
    _check_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = _prepare(rec)
    ds.attrs = {COMPLETE_ATTR: True, DONE_ATTR: int(rec.sizes["presentation"])}
    ds.to_zarr(path, mode="w-", consolidated=False)
    return path


def _root_attrs(path: Path) -> dict[str, Any]:
    try:
        return dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception as err:  # zarr raises several types for "not a group here"
        raise ValueError(
            f"{str(path)!r} is not a zarr store written by insilico-lab ({err})"
        ) from None


def open_recording(path: str | os.PathLike) -> xr.DataArray:
    """Open a stored recording lazily (values load on access).

    A streamed store that is still being written (or was interrupted) opens with the
    presentations committed so far.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no recording at {str(path)!r}")
    attrs = _root_attrs(path)
    try:
        ds = xr.open_dataset(path, engine="zarr", consolidated=False, chunks=None)
    except Exception as err:
        raise ValueError(f"cannot open {str(path)!r} as a zarr store: {err}") from None
    if VARIABLE not in ds:
        raise ValueError(
            f"{str(path)!r} holds no {VARIABLE!r} variable; it is not an insilico-lab recording"
        )
    rec = ds[VARIABLE]
    done = attrs.get(DONE_ATTR)
    if done is not None and int(done) < rec.sizes["presentation"]:
        rec = rec.isel(presentation=slice(0, int(done)))
    return rec


def _presentation_arrays(group: zarr.Group) -> list[zarr.Array]:
    out = []
    for _, array in group.arrays():
        names = getattr(array.metadata, "dimension_names", None) or array.attrs.get(
            "_ARRAY_DIMENSIONS", ()
        )
        if names and names[0] == "presentation":
            out.append(array)
    return out


class StreamWriter:
    """Append a recording to a zarr store batch by batch, resuming an interrupted job.

    ``job`` is a JSON-able fingerprint of everything that determines the recording's values
    (model, stimuli, targets, seed, batch size, ...). If ``path`` holds a store of the same
    job, writing resumes after its last committed batch (and a completed store is left as
    it is); a store of another job, or any other file, is refused unless ``overwrite``.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        job: Mapping[str, Any],
        overwrite: bool = False,
        resume: bool = True,
    ) -> None:
        self.path = Path(path)
        self.job = json.dumps(json_attrs(job), sort_keys=True)
        self.done = 0
        self.complete = False
        self._exists = False
        if self.path.exists() and not overwrite:
            try:
                attrs = _root_attrs(self.path) if self.path.is_dir() else {}
            except ValueError:
                attrs = {}
            if resume and attrs.get(JOB_ATTR) == self.job:
                self.complete = bool(attrs.get(COMPLETE_ATTR, False))
                self.done = int(attrs.get(DONE_ATTR, 0))
                if self.done == 0:
                    shutil.rmtree(self.path)
                else:
                    self._exists = True
                    self._truncate()
            else:
                why = (
                    "it was written by a different job"
                    if JOB_ATTR in attrs
                    else "it is not a resumable insilico-lab recording"
                )
                raise FileExistsError(
                    f"output path {str(self.path)!r} exists and {why}; pass overwrite=True "
                    "(CLI: --overwrite) to replace it"
                )
        elif self.path.exists():
            _check_target(self.path, overwrite=True)

    def _truncate(self) -> None:
        """Drop presentations written after the last commit (a batch cut off by a crash)."""
        group = zarr.open_group(str(self.path), mode="r+")
        for array in _presentation_arrays(group):
            if array.shape[0] != self.done:
                array.resize((self.done, *array.shape[1:]))

    def append(self, rec: xr.DataArray) -> None:
        """Write one batch of presentations and commit it."""
        ds = _prepare(rec)
        # xarray rewrites the group attrs on every write: keep the bookkeeping in them
        ds.attrs = {JOB_ATTR: self.job, DONE_ATTR: self.done, COMPLETE_ATTR: False}
        if not self._exists:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            ds.to_zarr(self.path, mode="w-", consolidated=False)
            self._exists = True
        else:
            ds[VARIABLE].attrs = {}
            ds.to_zarr(self.path, mode="a-", append_dim="presentation", consolidated=False)
        self._commit(self.done + int(rec.sizes["presentation"]))

    def _commit(self, done: int) -> None:
        """Record that the first ``done`` presentations are on disk (after their write)."""
        zarr.open_group(str(self.path), mode="r+").attrs[DONE_ATTR] = done
        self.done = done

    def finish(self, attrs: Mapping[str, Any] | None = None) -> xr.DataArray:
        """Mark the store complete (updating the recording's provenance attrs) and open it."""
        group = zarr.open_group(str(self.path), mode="r+")
        if attrs:
            group[VARIABLE].attrs.update(json_attrs(attrs))
        group.attrs[COMPLETE_ATTR] = True
        self.complete = True
        return open_recording(self.path)
