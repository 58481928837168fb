"""Small analyses of recordings: tuning curves and orientation selectivity."""

from __future__ import annotations

import numpy as np
import xarray as xr


def tuning_curve(rec: xr.DataArray, parameter: str) -> xr.Dataset:
    """Mean and standard error (spikes/s) of each neuroid's response per ``parameter`` value.

    Averages over every other presentation (repetitions, other parameters) and time bins.
    Returns a Dataset with ``mean`` and ``sem`` of dims (``parameter``, neuroid) and ``n``.
    """
    if parameter not in rec.coords or rec.coords[parameter].dims != ("presentation",):
        raise ValueError(f"recording has no presentation coordinate {parameter!r}")
    r = rec.mean("time_bin").load()
    keys = r.coords[parameter].values
    values = np.unique(keys)
    data = r.values
    mean = np.stack([data[keys == v].mean(axis=0) for v in values])
    count = np.array([(keys == v).sum() for v in values])
    std = np.stack(
        [
            data[keys == v].std(axis=0, ddof=1) if c > 1 else np.zeros(data.shape[1])
            for v, c in zip(values, count)
        ]
    )
    sem = std / np.sqrt(count)[:, None]
    dims = (parameter, "neuroid")
    coords = {parameter: values, "neuroid_id": ("neuroid", r.coords["neuroid_id"].values)}
    return xr.Dataset(
        {"mean": (dims, mean), "sem": (dims, sem), "n": (parameter, count)}, coords=coords
    )


def orientation_selectivity(
    mean: np.ndarray, orientation_deg: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(OSI, preferred orientation in deg) per column of ``mean`` (orientations x neuroids).

    OSI = |sum r e^{2i theta}| / sum r (1 - circular variance; 0 untuned, 1 one orientation).
    """
    theta = np.deg2rad(np.asarray(orientation_deg, dtype=float))[:, None]
    r = np.clip(np.asarray(mean, dtype=float), 0, None)
    vector = (r * np.exp(2j * theta)).sum(axis=0)
    total = r.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        osi = np.where(total > 0, np.abs(vector) / total, 0.0)
    preferred = np.rad2deg(np.angle(vector) / 2) % 180
    return osi, preferred
