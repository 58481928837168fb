"""Cortical sheets: where each unit of a region lies, in mm, on its hemisphere's sheet.

Retinotopic regions place feature-map positions by the conformal complex-log map of their RF
centres (cortical magnification) with channels arranged in a hypercolumn by response
similarity; see :func:`sheet_layout`. Which channel sits in which cell of that grid is the
region's *arrangement* (:func:`arrange`): by response similarity, by the post-hoc swap
optimisation of the spatial-correlation objective, or fixed by a topographic training.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from insilico.brain.commitments import ARRANGEMENTS, RegionCommitment
from insilico.brain.topography import (
    cell_distances,
    channel_correlations,
    grid_size,
    spatial_correlation,
    swap_arrangement,
    swap_units,
)

#: random starting arrangements tried by the swap optimisation besides the similarity grid
SWAP_STARTS = 8
#: natural images whose responses place IT's units one by one (arrangement "unit-swap") and
#: the most batches of local swap proposals (one per unit below that; Lite0's IT: ~2.5 min
#: per hemisphere on one core)
UNIT_SWAP_IMAGES, UNIT_SWAP_BATCHES = 256, 4000
#: how far (mm) a unit may move in one swap of the unit arrangement
UNIT_SWAP_RADIUS_MM = 1.0


def similarity_grid(profiles: np.ndarray) -> np.ndarray:
    """Grid cell (gy, gx) per channel on a ceil(sqrt(C))^2 grid, neighbours respond alike.

    Channels are sorted into grid rows by their first principal component of responses to
    natural images, and within a row by the second: a deterministic, topographic order.
    """
    c = profiles.shape[0]
    g = math.ceil(math.sqrt(c))
    z = profiles - profiles.mean(axis=1, keepdims=True)
    z = z / (z.std(axis=1, keepdims=True) + 1e-8)
    u, s, _ = np.linalg.svd(z - z.mean(axis=0, keepdims=True), full_matrices=False)
    pcs = u[:, :2] * s[:2] if u.shape[1] >= 2 else np.c_[u[:, :1], np.zeros(c)]
    for k in range(pcs.shape[1]):  # fix the SVD sign so the layout is deterministic
        if pcs[np.argmax(np.abs(pcs[:, k])), k] < 0:
            pcs[:, k] = -pcs[:, k]
    order = np.lexsort((np.arange(c), pcs[:, 0]))
    cells = np.zeros((c, 2), dtype=np.int64)
    for row in range(g):
        members = order[row * g : (row + 1) * g]
        members = members[np.lexsort((members, pcs[members, 1]))]
        cells[members, 0] = row
        cells[members, 1] = np.arange(len(members))
    return cells


def complex_log_map(
    x_deg: np.ndarray, y_deg: np.ndarray, k_mm: float, a_deg: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Schwartz's (1980) conformal map of one hemifield onto its hemisphere's sheet.

    ``w = k [log(z + a) - log(a)]`` with ``z = |x| + i y`` in deg (the left visual field is
    mirrored onto the right hemisphere's sheet, so both sheets share one frame): returns
    (u, v) in mm — ``u = Re w`` from the foveal representation (u = 0) along the horizontal
    meridian, ``v = Im w`` along iso-eccentricity lines (upper field v > 0, the vertical
    meridians at v = ±k·π/2 in the limit of large eccentricity) — and the local linear
    magnification ``|dw/dz| = k / |z + a|`` in mm/deg, the same in every direction
    (conformal). On the horizontal meridian it is ``k / (E + a)``.
    """
    z = np.abs(np.asarray(x_deg, dtype=float)) + 1j * np.asarray(y_deg, dtype=float)
    w = k_mm * (np.log(z + a_deg) - np.log(a_deg))
    return w.real, w.imag, k_mm / np.abs(z + a_deg)


def sheet_layout(
    rc: RegionCommitment,
    shape: tuple[int, int, int],
    pos_x_deg: np.ndarray,
    pos_y_deg: np.ndarray,
    cells: np.ndarray,
    stride_deg: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tissue (x, y) in mm and hemisphere of every unit, flat order.

    Two hemispheres, two sheets: feature-map columns whose RF centres lie in the right visual
    field (mean x >= 0) are on the ``"left"`` hemisphere's sheet, the others on the
    ``"right"`` one; the sheets share one frame (the right hemisphere's is the mirror image),
    so a perturbation placed on one sheet never reaches the other visual hemifield.

    Retinotopic regions: a feature-map position lies at the conformal complex-log position
    of its RF centre (:func:`complex_log_map`, constants ``magnification_mm`` = k and
    ``magnification_e2_deg`` = a of the region commitment). Its channels fill a hypercolumn one
    local position spacing (``M * stride``) wide, on the similarity grid. Non-retinotopic
    regions (IT): on each hemisphere's sheet every channel owns a square patch of a
    ``sheet_size_mm`` sheet, patches on the similarity grid; inside a patch that hemifield's
    feature-map positions keep their retinotopic order (mirrored for the right hemisphere,
    so the vertical meridian is on the same side of every patch). Both sheets are shifted
    together so the frame's corner is (0, 0). ``pos_*_deg`` are the (rows, cols) RF centres
    of feature-map positions.
    """
    c, h, w = shape
    g = math.ceil(math.sqrt(c))
    hemi = unit_hemispheres(pos_x_deg, shape).reshape(c, h, w)
    left_col = hemi[0, 0] == "left"  # feature-map columns in the right visual field
    if rc.arrangement == "unit-swap":  # every unit its own cell (non-retinotopic only)
        tx, ty = np.zeros(c * h * w), np.zeros(c * h * w)
        for side in ("left", "right"):
            mine = hemi.ravel() == side
            gs = grid_size(int(mine.sum()))
            tx[mine] = (cells[mine, 1] + 0.5) * rc.sheet_size_mm / gs
            ty[mine] = (gs - 1 - cells[mine, 0] + 0.5) * rc.sheet_size_mm / gs
        return tx - tx.min(), ty - ty.min(), hemi.ravel()
    cell_frac_y = (cells[:, 0] + 0.5) / g - 0.5  # channel offset inside its cell, in cells
    cell_frac_x = (cells[:, 1] + 0.5) / g - 0.5
    if rc.retinotopic:
        k, a = rc.magnification_mm, rc.magnification_e2_deg
        px, py, mag = complex_log_map(pos_x_deg, pos_y_deg, k, a)
        spacing = mag * stride_deg
        tx = px[None] + spacing[None] * cell_frac_x[:, None, None]
        ty = py[None] - spacing[None] * cell_frac_y[:, None, None]
    else:
        cell = rc.sheet_size_mm / g
        # columns of each hemifield ranked from the vertical meridian outwards
        order = np.empty(w)
        for side in (left_col, ~left_col):
            cols = np.flatnonzero(side)
            away = np.argsort(np.abs(pos_x_deg.mean(axis=0)[cols]), kind="stable")
            order[cols[away]] = (np.arange(len(cols)) + 0.5) / max(len(cols), 1)
        sub_y = (h - np.arange(h) - 0.5) / h
        tx = (cells[:, 1, None, None] + order[None, None, :]) * cell + np.zeros((1, h, 1))
        ty = (g - 1 - cells[:, 0, None, None] + sub_y[None, :, None]) * cell + np.zeros((1, 1, w))
    tx, ty = tx.ravel(), ty.ravel()
    return tx - tx.min(), ty - ty.min(), hemi.ravel()


def unit_hemispheres(pos_x_deg: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """Hemisphere ("left" / "right") of every unit, flat order: the one representing its
    feature-map column's visual hemifield (mean RF x >= 0 deg -> "left")."""
    c, h, w = shape
    left_col = pos_x_deg.mean(axis=0) >= 0
    return np.where(np.broadcast_to(left_col[None, None, :], (c, h, w)), "left", "right").ravel()


def arrange_units(
    acts: torch.Tensor, hemispheres: np.ndarray, sheet_mm: float, progress: bool = True
) -> tuple[np.ndarray, dict[str, float]]:
    """Cells (units, 2) — (row, col) on each hemisphere's ceil(sqrt(n))^2 grid over
    ``sheet_mm`` — that place a non-retinotopic region's units one by one (``"unit-swap"``):
    the :func:`similarity_grid` of the units' responses (``acts``: images x C x H x W),
    improved by :func:`insilico.brain.topography.swap_units`. The summary's
    ``spatial_correlation`` is the objective's Pearson r over 10^6 random unit pairs per
    hemisphere, averaged."""
    flat = acts.reshape(len(acts), -1).double().numpy()
    cells = np.zeros((flat.shape[1], 2), dtype=np.int64)
    rng = np.random.default_rng(0)
    scores = []
    total = sum(min(UNIT_SWAP_BATCHES, int((hemispheres == h).sum())) for h in ("left", "right"))
    with tqdm(total=total, desc="placing IT units", disable=not progress) as bar:
        for side in ("left", "right"):
            units = np.flatnonzero(hemispheres == side)
            z = flat[:, units] - flat[:, units].mean(axis=0)
            z /= np.linalg.norm(z, axis=0) + 1e-8
            r = (z.T @ z).astype(np.float32)
            g = grid_size(len(units))
            start = similarity_grid(flat[:, units].T)
            slot, _ = swap_units(
                r,
                start[:, 0] * g + start[:, 1],
                g,
                sheet_mm / g,
                UNIT_SWAP_RADIUS_MM,
                min(UNIT_SWAP_BATCHES, len(units)),
                progress=bar.update,
            )
            cells[units] = np.c_[slot // g, slot % g]
            i, j = rng.integers(0, len(units), (2, 1_000_000))
            d = np.hypot(*((cells[units][i] - cells[units][j]) * sheet_mm / g).T)
            keep = i != j
            scores.append(np.corrcoef(r[i[keep], j[keep]], 1 / (d[keep] + 1))[0, 1])
    return cells, {"spatial_correlation": float(np.mean(scores))}


def arrangement_cell_mm(rc: RegionCommitment, channels: int) -> float:
    """Side of one channel cell for the spatial objective: mm on IT's sheet
    (``sheet_size_mm / grid``); for retinotopic regions, whose cells fill a hypercolumn of
    varying width, in hypercolumn widths (``1 / grid``)."""
    g = grid_size(channels)
    return rc.sheet_size_mm / g if not rc.retinotopic else 1.0 / g


def arrange(
    method: str, acts: torch.Tensor, cell_mm: float, trained: np.ndarray | None = None
) -> tuple[np.ndarray, dict[str, float]]:
    """Cells (C, 2) of the channel grid and a summary (spatial correlation of the result).

    ``acts``: (N, C, H, W) activations to natural images. ``"similarity"``: the
    :func:`similarity_grid` of the channels' mean responses. ``"swap"``: the best of
    :func:`insilico.brain.topography.swap_arrangement` started from the similarity grid and
    from ``SWAP_STARTS`` seeded random arrangements. ``"trained"``: the ``trained`` cells that
    a topographic network was trained with (shipped with its weights). ``"random"``: the
    similarity grid's cells dealt to the channels in a seeded random order — the null of
    the others (no topography beyond chance)."""
    if method not in ARRANGEMENTS:
        raise ValueError(f"arrangement must be one of {', '.join(ARRANGEMENTS)}, got {method!r}")
    r = channel_correlations(acts).double()
    c = r.shape[0]

    def score(cells: np.ndarray) -> float:
        return float(spatial_correlation(r, torch.as_tensor(cell_distances(cells, cell_mm))))

    if method == "trained":
        if trained is None or np.asarray(trained).shape != (c, 2):
            raise ValueError(
                f"arrangement 'trained' needs the {c} channels' cells shipped with the weights; "
                "this model has none for the layer"
            )
        cells = np.asarray(trained, dtype=np.int64)
        return cells, {"spatial_correlation": score(cells)}
    cells = similarity_grid(acts.double().mean(dim=(2, 3)).T.numpy())
    rng = np.random.default_rng(0)
    if method in ("similarity", "random"):
        cells = cells if method == "similarity" else cells[rng.permutation(c)]
        return cells, {"spatial_correlation": score(cells)}
    starts = [cells] + [cells[rng.permutation(c)] for _ in range(SWAP_STARTS)]
    best, best_info = None, {"objective_after": -np.inf}
    for start in starts:
        found, info = swap_arrangement(r.numpy(), start, cell_mm)
        if info["objective_after"] > best_info["objective_after"]:
            best, best_info = found, info
    assert best is not None
    return best, {"spatial_correlation": score(best), "swaps": best_info["swaps"]}
