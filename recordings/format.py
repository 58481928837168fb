"""The recording format: dims, required coordinates and JSON-safe provenance attrs."""

from __future__ import annotations

import importlib.metadata
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

try:  #: the lab's version (the installed distribution's), written into every provenance
    INSILICO_VERSION = importlib.metadata.version("insilico-lab")
except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
    INSILICO_VERSION = "0+unknown"

DIMS = ("presentation", "neuroid", "time_bin")
#: coordinates every recording carries along ``presentation`` (plus every stimulus parameter)
PRESENTATION_COORDS = ("stimulus_id", "repetition")
#: coordinates every recording carries along ``neuroid``
NEUROID_COORDS = (
    "neuroid_id",
    "region",
    "layer",
    "channel",
    "row",
    "col",
    "rf_x_deg",
    "rf_y_deg",
    "rf_size_deg",
    "tissue_x_mm",
    "tissue_y_mm",
    "hemisphere",
    "site",
)
#: coordinates along ``time_bin`` (ms after stimulus onset)
TIME_BIN_COORDS = ("time_bin_start", "time_bin_end")

STRING_DTYPE = np.dtypes.StringDType()


def as_strings(values: Any) -> np.ndarray:
    """Labels of any dtype (object, ``<U``, numbers, ``StringDType``) as an object array of
    Python ``str``: what comparisons, sets and dict keys of labels want."""
    return np.asarray([str(v) for v in np.asarray(values, dtype=object).ravel()], dtype=object)


def as_string_array(values: Any) -> np.ndarray:
    """Variable-length string array (numpy ``StringDType``), never fixed-width ``<U``."""
    return np.asarray(
        [str(v) for v in np.asarray(values, dtype=object).ravel()], dtype=STRING_DTYPE
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, str | bool | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_safe(v) for v in value]
    return str(value)


def error_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none): what a
    one-line error built on a library's exception shows."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def json_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Provenance attrs as zarr/netCDF-safe values: scalars stay, containers become JSON text."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        safe = _json_safe(value)
        out[str(key)] = json.dumps(safe) if isinstance(safe, dict | list) else safe
    return out


def check_recording(rec: xr.DataArray) -> None:
    """Raise ``ValueError`` naming the first thing that makes ``rec`` not a lab recording."""
    if not isinstance(rec, xr.DataArray):
        raise TypeError(f"expected an xarray.DataArray recording, got {type(rec).__name__}")
    if tuple(rec.dims) != DIMS:
        raise ValueError(f"recording dims are {tuple(rec.dims)}, expected {DIMS}")
    for names, dim in (
        (PRESENTATION_COORDS, "presentation"),
        (NEUROID_COORDS, "neuroid"),
        (TIME_BIN_COORDS, "time_bin"),
    ):
        for name in names:
            if name not in rec.coords:
                raise ValueError(f"recording lacks the {dim} coordinate {name!r}")
            if rec.coords[name].dims != (dim,):
                raise ValueError(
                    f"coordinate {name!r} has dims {rec.coords[name].dims}, expected ({dim!r},)"
                )
