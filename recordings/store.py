"""Zarr storage of recordings: save, lazy open, verify (streaming: ``recordings.stream``).

Conventions (DESIGN.md, Storage): zarr v3 through xarray, ``consolidated=False``,
variable-length strings, MultiIndexes reset before writing, appends along
``presentation`` with ``mode="a-"`` so the fixed neuroid/time-bin coordinates are never
rewritten. A streamed store keeps two bookkeeping attrs on its root group:
``insilico_job`` (a JSON fingerprint of the job that writes it) and
``presentations_done`` (how many presentations are committed). The count is updated only
after a batch is on disk, so a crash leaves every finished batch readable and a rerun of the
same job resumes after the last committed batch.

Safety: a writer holds an exclusive lock file ``<store>.lock`` (pid, host, start time) while
it writes, so a second writer of the same store is refused (a lock left by a dead process on
this host is taken over); ``overwrite=True`` only ever removes a store this library wrote,
never another folder or file (nor the working directory or its parents).
"""

from __future__ import annotations

import os
import shutil
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


def as_zarr_dataset(rec: xr.DataArray) -> xr.Dataset:
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


def is_store(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a zarr store written by this library (its bookkeeping attrs)."""
    path = Path(path)
    if not path.is_dir() or not (path / "zarr.json").is_file():
        return False
    try:
        attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # zarr raises several types for "not a group here"
        return False
    kind = attrs.get("kind")
    return bool({COMPLETE_ATTR, DONE_ATTR, JOB_ATTR} & set(attrs)) or (
        isinstance(kind, str) and kind.startswith("insilico-")
    )


def remove_store(path: str | os.PathLike) -> None:
    """Delete a store this library wrote; refuse anything else with a one-line error.

    Never removes the working directory, one of its parents, the home folder or a file or
    non-empty folder that is not an insilico-lab store (a user's data).
    """
    path = Path(path)
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents or resolved == Path.home().resolve():
        raise ValueError(
            f"refusing to overwrite {str(path) or '.'!r}: it is the working directory, one of "
            "its parents or the home folder; give a store path such as 'out.zarr'"
        )
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()  # an empty folder holds nothing to lose
        return
    if not is_store(path):
        raise FileExistsError(
            f"refusing to overwrite {str(path)!r}: it exists and is not a store written by "
            "insilico-lab; choose another output path or remove it yourself"
        )
    shutil.rmtree(path)


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse to write a store at ``path`` unless it is new, or ``overwrite`` and a lab store."""
    if str(path) in ("", "."):
        raise ValueError(
            f"output path {str(path)!r} names the working directory; give a store path"
        )
    if path.exists():
        if not overwrite:
            raise FileExistsError(
                f"output path {str(path)!r} exists; pass overwrite=True (CLI: --overwrite) "
                "to replace it"
            )
        remove_store(path)


def save(rec: xr.DataArray, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write a recording to a zarr store at ``path`` (refuses an existing path unless told)."""
    check_recording(rec)
    path = Path(path)
    check_target(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = as_zarr_dataset(rec)
    ds.attrs = {COMPLETE_ATTR: True, DONE_ATTR: int(rec.sizes["presentation"])}
    ds.to_zarr(path, mode="w-", consolidated=False)
    return path


def root_attrs(path: Path) -> dict[str, Any]:
    try:
        return dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception as err:  # zarr raises several types for "not a group here"
        raise ValueError(
            f"{str(path)!r} is not a zarr store written by insilico-lab ({err})"
        ) from None


#: stores up to this size are decoded chunk by chunk on open (``verify="auto"``)
VERIFY_AUTO_BYTES = 256 * 2**20


def _chunk_problems(path: Path, group: zarr.Group, done: int | None, decode: bool) -> list[str]:
    """Chunks of the committed presentations that are missing on disk (they would read back
    as NaN) or, with ``decode``, fail to decode; named ``array/c/i/j/...``."""
    import itertools
    import math

    problems = []
    for name, array in group.arrays():
        # zarr leaves chunks equal to the fill value unwritten: an absent chunk is damage only
        # where the fill could never be data — responses (fill NaN) and ids (fill "")
        can_be_absent = name not in (VARIABLE, "stimulus_id", "neuroid_id")
        shape = list(array.shape)
        dims = getattr(array.metadata, "dimension_names", None) or ()
        if dims and dims[0] == "presentation" and done is not None:
            shape[0] = min(shape[0], int(done))
        grid = [range(math.ceil(n / c)) for n, c in zip(shape, array.chunks, strict=True)]
        if not grid:  # a scalar array: one chunk, "c"
            keys = [()]
        else:
            keys = list(itertools.product(*grid))
        for key in keys:
            rel = "/".join(["c", *(str(i) for i in key)])
            if not (path / name / rel).is_file():
                if not can_be_absent:
                    problems.append(f"{name}/{rel} is missing")
            elif decode:
                sl = tuple(
                    slice(i * c, min((i + 1) * c, n))
                    for i, c, n in zip(key, array.chunks, shape, strict=True)
                )
                try:
                    array[sl]
                except Exception as err:  # the codec's own error types vary
                    problems.append(f"{name}/{rel} cannot be decoded ({type(err).__name__})")
    return problems


def verify(path: str | os.PathLike) -> None:
    """Decode every chunk of a stored recording; raise a ValueError naming the missing or
    corrupt ones (a deleted chunk would otherwise read back as NaN)."""
    path = Path(path)
    attrs = root_attrs(path)
    group = zarr.open_group(str(path), mode="r")
    problems = _chunk_problems(path, group, attrs.get(DONE_ATTR), decode=True)
    if problems:
        raise ValueError(
            f"{str(path)!r} is damaged: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        )


def _size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def open_recording(path: str | os.PathLike, verify: bool | str = "auto") -> xr.DataArray:
    """Open a stored recording lazily (values load on access).

    A streamed store that is still being written (or was interrupted) opens with the
    presentations committed so far. A chunk of the committed data that is missing on disk is
    always an error naming it (it would read back as NaN); ``verify=True`` also decodes every
    chunk (``"auto"``: when the store is under 256 MB), naming any corrupt one.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no recording at {str(path)!r}")
    attrs = root_attrs(path)
    done = attrs.get(DONE_ATTR)
    group = zarr.open_group(str(path), mode="r")
    if VARIABLE not in group:
        raise ValueError(
            f"{str(path)!r} holds no {VARIABLE!r} variable; it is not an insilico-lab recording"
        )
    if verify not in (True, False, "auto"):
        raise ValueError(f"verify must be True, False or 'auto', got {verify!r}")
    decode = verify is True or (verify == "auto" and _size_bytes(path) <= VERIFY_AUTO_BYTES)
    problems = _chunk_problems(path, group, done, decode)
    if problems:
        raise ValueError(
            f"{str(path)!r} is damaged: {problems[0]}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
            + "; rerun the job that wrote it with overwrite=True"
        )
    lengths = {a.basename: a.shape[0] for a in presentation_arrays(group)}
    if done is not None:
        short = sorted(name for name, n in lengths.items() if n < int(done))
        if short:
            raise ValueError(
                f"{str(path)!r} is damaged: {', '.join(short)} hold fewer than the "
                f"{int(done)} committed presentations"
            )
    # a batch cut off mid-write leaves presentation arrays of unequal lengths: open the
    # response lazily and read the (small) presentation coordinates up to the commit
    ragged = [n for n, k in lengths.items() if n != VARIABLE and k != lengths[VARIABLE]]
    try:
        ds = xr.open_dataset(
            path, engine="zarr", consolidated=False, chunks=None, drop_variables=ragged
        )
    except Exception as err:
        raise ValueError(f"cannot open {str(path)!r} as a zarr store: {err}") from None
    rec = ds[VARIABLE]
    n = rec.sizes["presentation"] if done is None else min(int(done), rec.sizes["presentation"])
    rec = rec.isel(presentation=slice(0, n))
    if ragged:
        rec = rec.assign_coords({name: ("presentation", group[name][:n]) for name in ragged})
    return rec


def presentation_arrays(group: zarr.Group) -> list[zarr.Array]:
    out = []
    for _, array in group.arrays():
        names = getattr(array.metadata, "dimension_names", None) or array.attrs.get(
            "_ARRAY_DIMENSIONS", ()
        )
        if names and names[0] == "presentation":
            out.append(array)
    return out
