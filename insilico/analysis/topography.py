"""How topographic a region's sheet is: selectivity and response similarity against cortical
distance, and the size of category patches in mm.

Measured per hemisphere's sheet (distances only mean something within one), from expected
rates (spikes/s) of a rig's model. Each measure has its null: the same rates with the units'
channel places shuffled (:func:`shuffled_places`), which keeps every unit's selectivity and
the sheet's geometry and removes only the arrangement.

Published macaque IT references, for the README's comparison:

* 6 face patches per hemisphere along the temporal lobe (Tsao, Moeller & Freiwald 2008,
  PNAS 105:19514, abstract).
* The middle face patch measured electrophysiologically is ~6 mm across, with up to 93 % of
  sites at its centre responding at least twice as strongly to faces as to objects (Aparicio,
  Issa & DiCarlo 2016, J Neurosci 36:12729, abstract).
* A ~3 x 4 mm cluster of face-selective sites (face-detection d' > 1) was targeted by Afraz,
  Boyden & DiCarlo 2015 (PNAS 112:6730, methods; as quoted in the Brain-Score perturbation
  branch).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from insilico.analysis.selectivity import preference_mask, unit_dprime
from perturb.sheet import check_hemisphere
from rigs.rig import Rig

#: model face-patch threshold on d' averaged within 1 mm: 0.85 in the model for 0.65 in the
#: monkey (Lee et al. 2020, as used by Brain-Score's Moeller2017 benchmark,
#: DPRIME_THRESHOLD_FACE_PATCH)
FACE_PATCH_DPRIME = 0.85
#: pixel of the map on which patches are found (mm)
MAP_PIXEL_MM = 0.1


def category_dprime(rig: Rig, region: str, stimuli: Any, labels: Any, prefer: str) -> np.ndarray:
    """Per unit of ``region``, d' of its expected rate (spikes/s) for the stimuli labelled
    ``prefer`` against the rest (``unit_dprime``)."""
    is_pref = preference_mask(stimuli, labels, prefer)
    rates = rig.region_rates(stimuli, region).numpy().astype(np.float64)
    return unit_dprime(rates[is_pref], rates[~is_pref])


def shuffled_places(table: pd.DataFrame, seed: int = 0, level: str = "channel") -> pd.DataFrame:
    """The null arrangement: ``table`` with its units' tissue places permuted.

    ``level="channel"``: whole channels moved to each other's places (every unit of channel
    a takes the tissue position of the unit of channel pi(a) at the same feature-map
    position), so only the channel -> place map changes and each channel stays a patch.
    ``level="unit"``: every unit takes the place of a random unit of its own hemisphere, so
    no topography is left at any scale."""
    rng = np.random.default_rng(seed)
    out = table.copy()
    if level == "unit":
        for hemi in table["hemisphere"].unique():
            rows = np.flatnonzero(table["hemisphere"].to_numpy() == hemi)
            src = rows[rng.permutation(len(rows))]
            for col in ("tissue_x_mm", "tissue_y_mm"):
                out.iloc[rows, out.columns.get_loc(col)] = table[col].to_numpy()[src]
        return out
    if level != "channel":
        raise ValueError(f"level must be 'channel' or 'unit', got {level!r}")
    channels = np.sort(table["channel"].unique())
    perm = dict(zip(channels, rng.permutation(channels)))
    key = table.set_index(["channel", "row", "col"])[["tissue_x_mm", "tissue_y_mm"]]
    src = pd.MultiIndex.from_arrays(
        [table["channel"].map(perm), table["row"], table["col"]], names=["channel", "row", "col"]
    )
    moved = key.loc[src].to_numpy()
    out["tissue_x_mm"], out["tissue_y_mm"] = moved[:, 0], moved[:, 1]
    return out


def _pairs(
    xy: np.ndarray, n_pairs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i = rng.integers(0, len(xy), n_pairs)
    j = rng.integers(0, len(xy), n_pairs)
    keep = i != j
    i, j = i[keep], j[keep]
    return i, j, np.hypot(*(xy[i] - xy[j]).T)


def correlogram(
    table: pd.DataFrame,
    values: np.ndarray,
    hemisphere: str = "left",
    bins_mm: Any = (0, 0.5, 1, 2, 3, 4, 6, 8, 12),
    n_pairs: int = 200_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Similarity of units against their distance on ``hemisphere``'s sheet.

    ``values``: one number per unit (e.g. face d') -> per distance bin the Pearson
    correlation of the two units' values over pairs in the bin; or (stimuli, units) rates ->
    the mean over pairs of the two units' response correlation across stimuli. Pairs are
    drawn at random (``n_pairs``, seeded). Columns: ``d_lo_mm``, ``d_hi_mm``, ``d_mid_mm``,
    ``similarity``, ``pairs``."""
    check_hemisphere(hemisphere)
    mine = (table["hemisphere"] == hemisphere).to_numpy()
    xy = table[["tissue_x_mm", "tissue_y_mm"]].to_numpy(dtype=float)[mine]
    v = np.asarray(values, dtype=np.float64)
    per_unit = v.ndim == 1
    v = v[mine] if per_unit else v[:, mine]
    if not per_unit:  # z-score each unit's responses: a dot product is a correlation
        v = v - v.mean(0)
        v = v / np.maximum(np.linalg.norm(v, axis=0), 1e-12)
    rng = np.random.default_rng(seed)
    i, j, d = _pairs(xy, n_pairs, rng)
    edges = np.asarray(bins_mm, dtype=float)
    rows = []
    for lo, hi in pairwise(edges):
        inb = (d >= lo) & (d < hi)
        n = int(inb.sum())
        if n < 3:
            sim = np.nan
        elif per_unit:
            sim = float(np.corrcoef(v[i[inb]], v[j[inb]])[0, 1])
        else:
            sim = float(np.einsum("sk,sk->k", v[:, i[inb]], v[:, j[inb]]).mean())
        rows.append((lo, hi, (lo + hi) / 2, sim, n))
    return pd.DataFrame(rows, columns=["d_lo_mm", "d_hi_mm", "d_mid_mm", "similarity", "pairs"])


def patches(
    table: pd.DataFrame,
    dprime: np.ndarray,
    hemisphere: str = "left",
    threshold: float = FACE_PATCH_DPRIME,
    radius_mm: float = 1.0,
) -> pd.DataFrame:
    """Category patches on ``hemisphere``'s sheet: connected regions where the units' d',
    averaged within ``radius_mm`` (the searchlight of ``preferred_site``), exceeds
    ``threshold``. One row per patch, largest first: ``area_mm2``, ``diameter_mm`` (of the
    disc of that area), ``peak_dprime``, centre ``x_mm``, ``y_mm``."""
    from scipy import ndimage
    from scipy.spatial import cKDTree

    check_hemisphere(hemisphere)
    mine = (table["hemisphere"] == hemisphere).to_numpy()
    xy = table[["tissue_x_mm", "tissue_y_mm"]].to_numpy(dtype=float)[mine]
    dp = np.asarray(dprime, dtype=np.float64)[mine]
    lo, hi = xy.min(0), xy.max(0)
    gx = np.arange(lo[0], hi[0] + MAP_PIXEL_MM, MAP_PIXEL_MM)
    gy = np.arange(lo[1], hi[1] + MAP_PIXEL_MM, MAP_PIXEL_MM)
    px = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    tree = cKDTree(xy)
    near = tree.query_ball_point(px, radius_mm)
    mean = np.array([dp[k].mean() if len(k) else np.nan for k in near]).reshape(len(gy), len(gx))
    # tissue only: map pixels within one unit spacing of a unit
    spacing = float(np.median(tree.query(xy, k=2)[0][:, 1]))
    on_tissue = (tree.query(px)[0] <= max(spacing, MAP_PIXEL_MM)).reshape(mean.shape)
    above = np.nan_to_num(mean, nan=-np.inf) > threshold
    labels, n = ndimage.label(above & on_tissue)
    rows = []
    for k in range(1, n + 1):
        cells = labels == k
        area = float(cells.sum()) * MAP_PIXEL_MM**2
        yy, xx = np.nonzero(cells)
        rows.append(
            {
                "area_mm2": area,
                "diameter_mm": 2 * np.sqrt(area / np.pi),
                "peak_dprime": float(mean[cells].max()),
                "x_mm": float(gx[xx].mean()),
                "y_mm": float(gy[yy].mean()),
            }
        )
    cols = ["area_mm2", "diameter_mm", "peak_dprime", "x_mm", "y_mm"]
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("area_mm2", ascending=False, ignore_index=True)
