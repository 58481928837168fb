"""Stimulus tables: the parameter rows every generator builds before it renders anything.

List-valued parameters are crossed (full factorial, the last parameter varying fastest);
every row gets a content-addressed ``stimulus_id``; the image's pixel shape follows from its
size in degrees and the pixels per degree.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch

from stimuli.stimulus_set import check_position_deg, check_size_deg

#: pixels per degree a generator renders at unless told otherwise
DEFAULT_PPD = 32.0


def as_list(value: Any) -> list:
    """A parameter's values: a string or scalar is one value, an iterable its items."""
    if isinstance(value, str) or not isinstance(value, Iterable):
        return [value]
    values = list(value)
    if not values:
        raise ValueError("a parameter list is empty; give at least one value")
    return values


def factorial(**params: Any) -> pd.DataFrame:
    """One row per combination of the parameters' values (the last varying fastest)."""
    keys = list(params)
    combos = list(itertools.product(*(as_list(params[k]) for k in keys)))
    return pd.DataFrame(combos, columns=keys)


def positions(table: pd.DataFrame, position_deg: Any) -> pd.DataFrame:
    """``table`` repeated at each position of ``position_deg``: one (x, y) or a list of them."""
    pos = np.asarray(position_deg, dtype=object)
    places = [position_deg] if pos.ndim == 1 else list(position_deg)
    checked = [check_position_deg(p) for p in places]
    out = []
    for x, y in checked:
        t = table.copy()
        t["position_x_deg"], t["position_y_deg"] = x, y
        out.append(t)
    return pd.concat(out, ignore_index=True)


def stimulus_ids(kind: str, table: pd.DataFrame) -> list[str]:
    """Content-addressed ids: the same parameters give the same id in every set.

    Every numeric parameter must be finite (a NaN orientation or edge used to render NaN
    images silently)."""
    for name in table.columns:
        values = table[name].to_numpy()
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            bad = values[~np.isfinite(values)][0]
            raise ValueError(f"{kind}: {name} must be a finite number, got {bad!r}")
    ids = []
    for row in table.to_dict(orient="records"):
        blob = json.dumps({k: row[k] for k in sorted(row)}, default=str, sort_keys=True)
        ids.append(f"{kind}_{hashlib.sha1(blob.encode()).hexdigest()[:12]}")
    return ids


def column(rows: pd.DataFrame, name: str) -> torch.Tensor:
    """A numeric column of the table as float32 of shape (n, 1, 1), one value per stimulus,
    to broadcast against (n, H, W) images."""
    return torch.tensor(rows[name].to_numpy(dtype=np.float32))[:, None, None]


def shape_for(size_deg: float, ppd: float, aspect: float = 1.0) -> tuple[int, int]:
    """(H, W) pixels of an image ``size_deg`` wide at ``ppd`` (at least 8 each way)."""
    width = max(8, round(size_deg * ppd))
    return max(8, round(width * aspect)), width


def check_ppd(ppd: float) -> float:
    """Pixels per degree: a finite number > 0."""
    return check_size_deg(ppd, "ppd (pixels per degree)")


def check_unit_interval(name: str, values: Any) -> None:
    """Every value of a parameter (one or a list) is a number in [0, 1]."""
    for v in as_list(values):
        if not (isinstance(v, int | float | np.number) and 0.0 <= float(v) <= 1.0):
            raise ValueError(f"{name} must be in [0, 1], got {v!r}")


def check_count(n: Any) -> int:
    """A number of stimuli: a positive integer."""
    if not isinstance(n, int | np.integer) or n <= 0:
        raise ValueError(f"n must be a positive integer number of stimuli, got {n!r}")
    return n
