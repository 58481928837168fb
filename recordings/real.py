"""Real recordings in: load a lab's responses (xarray, netCDF, zarr or NWB) for mapping.

The result is an ``xarray.DataArray`` with dims ``(presentation, neuroid)`` or
``(presentation, neuroid, time_bin)``, a ``stimulus_id`` presentation coordinate, and, when
present, ``repetition``. The stimulus images come from presentation coordinates
(``image_path``) or from a StimulusSet given at mapping time; their size in degrees from a
``size_deg`` coordinate or attribute.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from recordings.format import error_line

IMAGE_PATH_COORDS = ("image_path", "path", "filename", "image_file")


def _as_array(obj: Any, where: str) -> xr.DataArray:
    if isinstance(obj, xr.Dataset):
        if "response" in obj:
            return obj["response"]
        if len(obj.data_vars) == 1:
            return next(iter(obj.data_vars.values()))
        raise ValueError(
            f"{where}: dataset has variables {list(obj.data_vars)}; name the responses 'response'"
        )
    if isinstance(obj, xr.DataArray):
        return obj
    raise TypeError(f"{where}: expected an xarray DataArray or Dataset, got {type(obj).__name__}")


def _from_nwb(path: Path, window_ms: tuple[float, float]) -> xr.DataArray:
    """Spike counts per trial and unit from an NWB file's ``trials`` and ``units`` tables.

    Trials need ``start_time`` and a ``stimulus_id`` column (and optionally ``image_path``,
    ``size_deg``); rates are spikes/s in ``window_ms`` after each trial's start.
    """
    try:
        from pynwb import NWBHDF5IO
    except ImportError:
        raise ImportError(
            "reading NWB needs pynwb: pip install 'insilico-lab[nwb]' (or pip install pynwb)"
        ) from None
    with NWBHDF5IO(str(path), "r") as io:
        nwb = io.read()
        if nwb.trials is None or nwb.units is None:
            raise ValueError(f"{str(path)!r}: NWB file needs a trials table and a units table")
        trials = nwb.trials.to_dataframe()
        if "stimulus_id" not in trials:
            raise ValueError(f"{str(path)!r}: the NWB trials table has no 'stimulus_id' column")
        units = nwb.units.to_dataframe()
        lo, hi = (w / 1000.0 for w in window_ms)
        starts = trials["start_time"].to_numpy()
        counts = np.empty((len(trials), len(units)), dtype=np.float32)
        for j, spikes in enumerate(units["spike_times"]):
            spikes = np.sort(np.asarray(spikes))
            counts[:, j] = np.searchsorted(spikes, starts + hi) - np.searchsorted(
                spikes, starts + lo
            )
        rates = counts / (hi - lo)
        coords: dict[str, Any] = {
            "stimulus_id": ("presentation", trials["stimulus_id"].astype(str).to_numpy()),
            "neuroid_id": ("neuroid", np.asarray([str(i) for i in units.index])),
        }
        for name in ("image_path", "size_deg", "position_x_deg", "position_y_deg"):
            if name in trials:
                coords[name] = ("presentation", trials[name].to_numpy())
        ids = coords["stimulus_id"][1]
        rep = np.zeros(len(ids), dtype=int)
        seen: dict[str, int] = {}
        for k, s in enumerate(ids):
            rep[k] = seen.get(s, 0)
            seen[s] = rep[k] + 1
        coords["repetition"] = ("presentation", rep)
        return xr.DataArray(
            rates,
            dims=("presentation", "neuroid"),
            coords=coords,
            name="response",
            attrs={"source": str(path), "units": "spikes/s"},
        )


def load_responses(
    source: str | os.PathLike | xr.DataArray | xr.Dataset,
    window_ms: tuple[float, float] = (70.0, 170.0),
) -> xr.DataArray:
    """Load a lab's responses from an xarray object, a netCDF (.nc), a zarr store or an NWB
    file (``window_ms``: spike-count window after trial start for NWB). Checks the layout
    and returns a DataArray with dims (presentation, neuroid[, time_bin])."""
    if isinstance(source, xr.DataArray | xr.Dataset):
        rec = _as_array(source, "responses")
    elif not isinstance(source, str | os.PathLike):
        raise TypeError(
            f"responses must be a path (.nc, .zarr, .nwb) or an xarray DataArray/Dataset, "
            f"got {type(source).__name__}; wrap an array in xarray.DataArray with a "
            "stimulus_id presentation coordinate"
        )
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"no responses at {str(path)!r}")
        suffix = path.suffix.lower()
        if suffix == ".nwb":
            try:
                rec = _from_nwb(path, window_ms)
            except (OSError, KeyError, RuntimeError) as err:  # h5py: not an HDF5/NWB file
                first = error_line(err)
                raise ValueError(f"{str(path)!r} cannot be read as NWB: {first}") from None
        elif suffix in (".nc", ".netcdf", ".h5", ".hdf5") or path.is_dir():
            try:
                ds = (
                    xr.open_dataset(path, engine="zarr", consolidated=False, chunks=None)
                    if path.is_dir()
                    else xr.open_dataset(path)
                )
                rec = _as_array(ds.load(), str(path))
            except (OSError, ValueError, KeyError, RuntimeError) as err:
                first = error_line(err)
                raise ValueError(f"{str(path)!r} cannot be read as responses: {first}") from None
        else:
            raise ValueError(
                f"{str(path)!r}: unknown format; expected .nc, .zarr (folder), .nwb or an xarray"
            )
    if "repetition" in rec.dims and "presentation" in rec.dims:
        # (presentation, repetition, ...) -> one presentation per (stimulus, repetition)
        rec = _stack_repetitions(rec)
    if "presentation" not in rec.dims or "neuroid" not in rec.dims:
        raise ValueError(
            f"responses have dims {rec.dims}; expected (presentation, neuroid[, time_bin])"
        )
    extra = [d for d in rec.dims if d not in ("presentation", "neuroid", "time_bin")]
    if extra:
        raise ValueError(f"responses have unexpected dims {extra}")
    if "stimulus_id" not in rec.coords:
        raise ValueError("responses have no 'stimulus_id' presentation coordinate")
    order = [d for d in ("presentation", "neuroid", "time_bin") if d in rec.dims]
    rec = rec.transpose(*order)
    if "neuroid_id" not in rec.coords:
        rec = rec.assign_coords(
            neuroid_id=("neuroid", [f"site{k}" for k in range(rec.sizes["neuroid"])])
        )
    values = np.asarray(rec.values, dtype=float)
    if not np.isfinite(values).all():
        bad = ~np.isfinite(values).reshape(values.shape[0], values.shape[1], -1).all(axis=(0, 2))
        names = [str(v) for v in np.asarray(rec.neuroid_id.values)[bad][:5]]
        raise ValueError(
            f"responses contain NaN or inf (neuroids {names}); drop or impute them first"
        )
    return rec


def _stack_repetitions(rec: xr.DataArray) -> xr.DataArray:
    """Responses with a ``repetition`` dim -> presentations ordered stimulus-major, with a
    ``repetition`` presentation coordinate (the lab's layout)."""
    order = [
        "presentation",
        "repetition",
        *[d for d in rec.dims if d not in ("presentation", "repetition")],
    ]
    rec = rec.transpose(*order)
    reps = rec.sizes["repetition"]
    pres_coords = {k: v.values for k, v in rec.coords.items() if v.dims == ("presentation",)}
    other = {
        k: v
        for k, v in rec.coords.items()
        if "presentation" not in v.dims and "repetition" not in v.dims
    }
    values = rec.values.reshape(rec.sizes["presentation"] * reps, *rec.shape[2:])
    coords = {k: ("presentation", np.repeat(v, reps)) for k, v in pres_coords.items()}
    coords["repetition"] = ("presentation", np.tile(np.arange(reps), rec.sizes["presentation"]))
    coords.update({k: (v.dims, v.values) for k, v in other.items()})
    return xr.DataArray(
        values, dims=("presentation", *order[2:]), coords=coords, attrs=rec.attrs, name=rec.name
    )
