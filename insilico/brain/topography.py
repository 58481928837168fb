"""The spatial-correlation objective of topographic networks and the post-hoc swap arrangement.

Topographic deep networks (Lee et al. 2020, bioRxiv 2020.05.08.084186; Margalit et al. 2024,
Neuron 112:2435) give every unit a fixed place on a cortical sheet and add a *spatial loss*
that asks nearby units to respond alike: over pairs of units (i, j) of a neighbourhood, the
Pearson correlation between their response correlation ``r_ij`` (over images) and their
inverse distance ``1 / (d_ij + 1)`` (d in mm) is pushed towards 1. Here a unit of the
arrangement is a *channel*: a region's channels sit on a square grid of cells (the IT patch
grid or the hypercolumn grid of a retinotopic region, see
:func:`insilico.brain.layout.sheet_layout`), so an arrangement is a channel -> cell map.

* :func:`channel_correlations` — channels' response correlations over images x positions.
* :func:`spatial_correlation` — the objective (differentiable, used by the fine-tuning script
  ``scripts/finetune_topographic.py``) on whole grids or on neighbourhoods.
* :func:`swap_arrangement` — the post-hoc arrangement: starting from a given channel -> cell
  map, repeatedly swap the pair of cells (channels or empty cells) that most raises the
  objective over the whole grid, until no swap helps (steepest-ascent 2-opt on the quadratic
  assignment ``sum_ij r_ij w_cell(i)cell(j)``).
* :func:`swap_units` — the same objective for thousands of *units* (arrangement
  ``"unit-swap"``): local pair swaps proposed in batches, as topographic networks place units
  one by one (Margalit et al. 2024 pre-optimise positions by local swaps).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch


def grid_size(channels: int) -> int:
    """Cells per side of the square channel grid: ceil(sqrt(C))."""
    return math.ceil(math.sqrt(channels))


def cell_distances(cells: np.ndarray | torch.Tensor, cell_mm: float) -> np.ndarray:
    """(C, C) distances in mm between the centres of channels' grid cells ``(row, col)``."""
    xy = np.asarray(cells, dtype=np.float64) * float(cell_mm)
    return np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])


def channel_correlations(acts: torch.Tensor) -> torch.Tensor:
    """(C, C) Pearson correlations of channels over images x feature-map positions.

    ``acts``: (N, C, H, W) activations. A constant channel correlates 0 with every other."""
    c = acts.shape[1]
    z = acts.transpose(0, 1).reshape(c, -1).float()
    z = z - z.mean(dim=1, keepdim=True)
    norm = z.norm(dim=1, keepdim=True)
    z = z / norm.clamp(min=1e-8)
    r = z @ z.T
    return r.clamp(-1.0, 1.0)


def _pair_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean()
    b = b - b.mean()
    return (a * b).sum() / (a.norm() * b.norm()).clamp(min=1e-12)


def spatial_correlation(
    r: torch.Tensor,
    d_mm: torch.Tensor,
    members: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pearson correlation, over pairs i < j, of ``r_ij`` with ``1 / (d_ij + 1)`` (d in mm).

    ``r``: (C, C) response correlations; ``d_mm``: (C, C) distances. ``members`` (indices)
    restricts the pairs to one neighbourhood. 1 - this is the spatial loss."""
    if members is not None:
        r = r[members][:, members]
        d_mm = d_mm[members][:, members]
    iu = torch.triu_indices(r.shape[0], r.shape[0], offset=1, device=r.device)
    return _pair_correlation(r[iu[0], iu[1]], 1.0 / (d_mm[iu[0], iu[1]] + 1.0))


def neighbourhoods(
    cells: np.ndarray, cell_mm: float, radius_mm: float, count: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """``count`` neighbourhoods: the channels whose cell centre lies within ``radius_mm`` of a
    uniformly drawn point of the grid (at least 3 channels each)."""
    xy = np.asarray(cells, dtype=np.float64) * cell_mm
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    out: list[np.ndarray] = []
    while len(out) < count:
        centre = rng.uniform(lo, hi)
        inside = np.flatnonzero(np.hypot(*(xy - centre).T) <= radius_mm)
        if len(inside) >= 3:
            out.append(inside)
    return out


def swap_arrangement(
    r: np.ndarray, start_cells: np.ndarray, cell_mm: float, max_swaps: int = 20_000
) -> tuple[np.ndarray, dict[str, float]]:
    """Post-hoc arrangement: cells (C, 2) that raise the spatial correlation of ``r`` (C, C).

    Starts from ``start_cells`` on the ``grid_size(C)`` grid (empty cells take part as
    channels whose correlations are 0) and applies the best swap of two cells while it raises
    ``sum_{i != j} (r_ij - mean r) w_ij``, ``w = 1 / (d + 1)``, which for a fixed set of
    occupied cells is the objective's covariance. Returns the cells and a summary
    (objective before/after, swaps made)."""
    c = r.shape[0]
    g = grid_size(c)
    all_cells = np.array([(i, j) for i in range(g) for j in range(g)])
    index = {(int(a), int(b)): k for k, (a, b) in enumerate(all_cells)}
    taken = [index[(int(a), int(b))] for a, b in start_cells]
    if len(set(taken)) != c:
        raise ValueError("start_cells must give every channel its own cell")
    free = [k for k in range(g * g) if k not in set(taken)]
    slot = np.array(taken + free)  # slot[item] = cell of item; items >= c are empty cells
    m = len(slot)
    a = np.zeros((m, m))
    rc = r - np.eye(c)
    off = ~np.eye(c, dtype=bool)
    a[:c, :c] = np.where(off, rc - rc[off].mean(), 0.0)
    w_cells = 1.0 / (cell_distances(all_cells, cell_mm) + 1.0)
    np.fill_diagonal(w_cells, 0.0)

    def objective(s: np.ndarray) -> float:
        return float((a * w_cells[np.ix_(s, s)]).sum())

    before = spatial_correlation(
        torch.as_tensor(r), torch.as_tensor(cell_distances(all_cells[slot[:c]], cell_mm))
    )
    swaps = 0
    for swaps in range(max_swaps):  # noqa: B007 - the count is reported
        w = w_cells[np.ix_(slot, slot)]  # w[p, q] = weight between items p and q
        aw = a @ w  # aw[p, q] = sum_k a[p, k] w[k, q]
        diag_a = np.diag(aw)
        # gain of swapping items p and q (a symmetric, zero diagonal):
        # 2 [ (A W)_pq + (A W)_qp - (A W)_pp - (A W)_qq ] + 4 a_pq w_pq
        gain = 2 * (aw + aw.T - diag_a[:, None] - diag_a[None, :]) + 4 * a * w
        np.fill_diagonal(gain, 0.0)
        gain[c:, c:] = 0.0  # swapping two empty cells changes nothing
        p, q = np.unravel_index(np.argmax(gain), gain.shape)
        if gain[p, q] <= 1e-12:
            break
        slot[[p, q]] = slot[[q, p]]
    cells = all_cells[slot[:c]]
    after = spatial_correlation(torch.as_tensor(r), torch.as_tensor(cell_distances(cells, cell_mm)))
    summary = {
        "objective_before": float(before),
        "objective_after": float(after),
        "swaps": float(swaps),
        "covariance_after": objective(slot),
    }
    return cells.astype(np.int64), summary


def swap_units(
    r: np.ndarray,
    start: np.ndarray,
    grid: int,
    cell_mm: float,
    radius_mm: float = 1.0,
    batches: int = 4000,
    seed: int = 0,
    progress: Any = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Post-hoc places of n units: cell indices (row-major on a ``grid`` x ``grid`` grid of
    ``cell_mm`` cells) that raise ``sum_{i != j} (r_ij - mean r) / (d_ij + 1)``.

    ``r``: (n, n) response correlations; ``start``: each unit's starting cell (distinct).
    Each batch proposes up to 512 swaps of a unit with the unit of a random cell within
    ``radius_mm`` (pairs sharing a unit dropped) and keeps those whose gain, computed against
    the places at the start of the batch, is positive. ``progress``: a callable told after
    each batch. Returns the cells and a summary (objective before / after, swaps kept)."""
    n = r.shape[0]
    if len(set(start.tolist())) != n or start.max() >= grid * grid:
        raise ValueError("start must give every unit its own cell of the grid")
    a = (r - np.eye(n, dtype=r.dtype)).astype(np.float32)
    a -= a.sum() / max(n * n - n, 1)
    np.fill_diagonal(a, 0.0)
    cells = np.arange(grid * grid)
    xy = np.c_[cells // grid, cells % grid].astype(np.float32) * cell_mm
    w = 1.0 / (np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1]) + 1.0)
    w = w.astype(np.float32)
    np.fill_diagonal(w, 0.0)
    slot = np.asarray(start, dtype=np.int64).copy()  # slot[unit] = cell
    owner = -np.ones(grid * grid, dtype=np.int64)
    owner[slot] = np.arange(n)
    rng = np.random.default_rng(seed)
    batch = max(1, min(512, n // 2))
    rad = max(1, round(radius_mm / cell_mm))

    def objective() -> float:
        return float((a * w[np.ix_(slot, slot)]).sum())

    before, kept = objective(), 0
    for _ in range(batches):
        p = rng.choice(n, batch, replace=False)
        ty = np.clip(slot[p] // grid + rng.integers(-rad, rad + 1, batch), 0, grid - 1)
        tx = np.clip(slot[p] % grid + rng.integers(-rad, rad + 1, batch), 0, grid - 1)
        q = owner[ty * grid + tx]
        ok = (q >= 0) & (q != p)
        p, q = p[ok], q[ok]
        seen: set[int] = set()
        keep = []
        for k in range(len(p)):  # pairs that share no unit
            if int(p[k]) not in seen and int(q[k]) not in seen:
                seen.update((int(p[k]), int(q[k])))
                keep.append(k)
        p, q = p[keep], q[keep]
        da = a[p] - a[q]
        dw = w[slot[q]][:, slot] - w[slot[p]][:, slot]
        i = np.arange(len(p))
        gain = (da * dw).sum(1) - da[i, p] * dw[i, p] - da[i, q] * dw[i, q]
        for pp, qq in zip(p[gain > 0], q[gain > 0]):
            cp, cq = slot[pp], slot[qq]
            slot[pp], slot[qq] = cq, cp
            owner[cq], owner[cp] = pp, qq
        kept += int((gain > 0).sum())
        if progress is not None:
            progress()
    return slot, {"objective_before": before, "objective_after": objective(), "swaps": kept}
