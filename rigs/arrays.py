"""Implanted electrode arrays: recording sites on a region's cortical sheet."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from insilico.brain import BrainModel
from stimuli.stimulus_set import check_seed

#: Utah-array electrode pitch (Maynard, Nordhausen & Normann 1997)
UTAH_PITCH_MM = 0.4


@dataclass(frozen=True)
class SiteArray:
    """Recording sites of one region; each site records one unit (neuroid).

    ``table`` has one row per site: ``site`` number, electrode position on the sheet
    (``electrode_x_mm``, ``electrode_y_mm``), the recorded unit's ``neuroid_id`` and its unit
    table row (channel, row, col, RF in deg, tissue position in mm). Index sites with
    ``array.sites[[3, 17, 22]]`` (site numbers) to target a subset.
    """

    model_name: str
    region: str
    layer: str
    table: pd.DataFrame
    #: the whole array a sub-array was taken from (the recorded population of one_hot)
    parent: SiteArray | None = None

    @property
    def units(self) -> np.ndarray:
        """Flat unit indices in the region's feature map, one per site."""
        return self.table["unit"].to_numpy(dtype=np.int64)

    @property
    def neuroid_ids(self) -> np.ndarray:
        return self.table["neuroid_id"].to_numpy(dtype=object)

    @property
    def site_numbers(self) -> np.ndarray:
        return self.table["site"].to_numpy(dtype=np.int64)

    @property
    def sites(self) -> _SiteIndexer:
        """``array.sites[k]`` / ``array.sites[[3, 17]]``: a sub-array of those site numbers."""
        return _SiteIndexer(self)

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        x = self.table["rf_x_deg"].mean()
        y = self.table["rf_y_deg"].mean()
        return (
            f"SiteArray({self.region} of {self.model_name!r}, {len(self)} sites, "
            f"mean RF at ({x:.2f}, {y:.2f}) deg)"
        )


def select_sites(numbers: np.ndarray, key: Any) -> np.ndarray:
    """Positions of the sites that ``key`` picks among sites numbered ``numbers``: site
    numbers (an int or a list), a boolean mask over the sites, or a slice of positions (as
    on a list: ``sites[:2]``). The one meaning of ``.sites[...]`` on arrays and mapped sites."""
    numbers = np.asarray(numbers, dtype=np.int64)
    positions = np.arange(len(numbers))
    if isinstance(key, slice):
        picked = positions[key]
        if len(picked) == 0:
            raise ValueError(f"site slice {key} selects no site of {len(numbers)}")
        return picked
    key = np.atleast_1d(np.asarray(key))
    if key.dtype == bool:
        if len(key) != len(numbers):
            raise ValueError(f"boolean site mask has {len(key)} entries for {len(numbers)} sites")
        if not key.any():
            raise ValueError("the boolean site mask selects no site")
        return positions[key]
    if len(key) == 0:
        raise ValueError("no sites selected")
    where = {int(n): k for k, n in enumerate(numbers)}
    missing = [int(k) for k in key if int(k) not in where]
    if missing:
        raise ValueError(
            f"sites {missing} are not in this array; it has sites {numbers.min()}..{numbers.max()}"
        )
    return np.array([where[int(k)] for k in key], dtype=np.int64)


class _SiteIndexer:
    def __init__(self, array: SiteArray) -> None:
        self._array = array

    def __getitem__(self, key: Any) -> SiteArray:
        a = self._array
        rows = a.table.iloc[select_sites(a.site_numbers, key)].reset_index(drop=True)
        return SiteArray(a.model_name, a.region, a.layer, rows, parent=a.parent or a)


def _electrode_grid(n_sites: int, pitch_mm: float) -> np.ndarray:
    g = math.ceil(math.sqrt(n_sites))
    offsets = (np.arange(g) - (g - 1) / 2) * pitch_mm
    yy, xx = np.meshgrid(offsets[::-1], offsets, indexing="ij")
    grid = np.c_[xx.ravel(), yy.ravel()]
    if len(grid) > n_sites:  # the n positions nearest the array centre, in grid order
        keep = np.sort(np.argsort(np.hypot(grid[:, 0], grid[:, 1]), kind="stable")[:n_sites])
        grid = grid[keep]
    return grid


def implant(
    model: BrainModel,
    region: str,
    n_sites: int,
    at_deg: tuple[float, float] | None = None,
    at_mm: tuple[float, float] | None = None,
    pitch_mm: float = UTAH_PITCH_MM,
    seed: int = 0,
    hemisphere: str | None = None,
) -> SiteArray:
    """A square electrode array (``pitch_mm`` apart) centred on one hemisphere's sheet at
    ``at_mm`` or at the representation of visual position ``at_deg`` (deg); each site records
    the unit nearest its (seed-jittered, ±pitch/4) electrode tip, no unit twice, all on one
    hemisphere. ``hemisphere`` ("left" / "right") picks the sheet for ``at_mm`` (default
    "left"); with ``at_deg`` it follows from the position (x >= 0 -> "left") and, if given,
    must agree with it.
    """
    units = model.region_units(region)
    if hemisphere not in (None, "left", "right"):
        raise ValueError(f"hemisphere must be 'left' or 'right', got {hemisphere!r}")
    table = units.table
    if not isinstance(n_sites, int | np.integer) or n_sites <= 0:
        raise ValueError(f"n_sites must be a positive integer, got {n_sites!r}")
    if n_sites > len(table):
        raise ValueError(f"n_sites={n_sites} exceeds the {len(table)} units of {region}")
    if not isinstance(pitch_mm, int | float) or not pitch_mm > 0:
        raise ValueError(f"pitch_mm must be a positive number of mm, got {pitch_mm!r}")
    check_seed(seed)
    if at_deg is not None and at_mm is not None:
        raise ValueError("give at_deg or at_mm, not both")
    if at_mm is not None:
        centre = np.asarray(at_mm, dtype=float)
        ex, ey = units.sheet_extent_mm
        if centre.shape != (2,) or not (0 <= centre[0] <= ex and 0 <= centre[1] <= ey):
            raise ValueError(
                f"at_mm={at_mm!r} is off the {region} sheet, which spans "
                f"[0, {ex:.2f}] x [0, {ey:.2f}] mm"
            )
    else:
        target = np.asarray((0.0, 0.0) if at_deg is None else at_deg, dtype=float)
        half = model.visual_degrees / 2
        if target.shape != (2,) or not np.isfinite(target).all() or np.abs(target).max() > half:
            raise ValueError(
                f"at_deg={at_deg!r} is outside the model's field of view "
                f"(x and y within ±{half:g} deg of fixation)"
            )
    hemi = table["hemisphere"].to_numpy()
    if at_mm is None:
        rf = table[["rf_x_deg", "rf_y_deg"]].to_numpy()
        nearest = int(np.argmin(np.hypot(*(rf - target).T)))
        if hemisphere is not None and hemi[nearest] != hemisphere:
            raise ValueError(
                f"at_deg={at_deg!r} is represented in the {hemi[nearest]} hemisphere, "
                f"not the {hemisphere} one (the right visual field x >= 0 is on the left)"
            )
        hemisphere = str(hemi[nearest])
    hemisphere = hemisphere or "left"
    mine = np.flatnonzero(hemi == hemisphere)
    if n_sites > len(mine):
        raise ValueError(
            f"n_sites={n_sites} exceeds the {len(mine)} units of {region}'s {hemisphere} hemisphere"
        )
    table = table.iloc[mine]
    tissue = table[["tissue_x_mm", "tissue_y_mm"]].to_numpy()
    if at_mm is None:
        centre = tissue[int(np.flatnonzero(mine == nearest)[0])]
    rng = np.random.default_rng(seed)
    grid = _electrode_grid(int(n_sites), float(pitch_mm))
    tips = centre + grid + rng.uniform(-pitch_mm / 4, pitch_mm / 4, size=grid.shape)
    taken: set[int] = set()
    chosen = np.empty(len(tips), dtype=np.int64)
    k = min(len(table), 4 * n_sites + 16)
    for i, tip in enumerate(tips):
        d = np.hypot(*(tissue - tip).T)
        near = np.argpartition(d, k - 1)[:k]
        for u in near[np.argsort(d[near], kind="stable")]:
            if int(u) not in taken:
                taken.add(int(u))
                chosen[i] = u
                break
    rows = table.iloc[chosen].reset_index(drop=True)
    rows.insert(0, "neuroid_id", units.neuroid_ids(mine[chosen]))
    rows.insert(0, "electrode_y_mm", tips[:, 1])
    rows.insert(0, "electrode_x_mm", tips[:, 0])
    rows.insert(0, "site", np.arange(len(tips)))
    return SiteArray(model.name, region, units.layer, rows)
