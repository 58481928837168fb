"""Scoring synthesized images: against the best natural reference image (equated to the same
display budget, and unconstrained), as one-hot control scores, and on other rigs (transfer,
with units matched by receptive field and response when the networks differ)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

import stimuli
from rigs.targets import rates, resolve_targets

if TYPE_CHECKING:
    from rigs.rig import Rig


TRANSFER_COLUMNS = (
    "synthesized",
    "best_natural",
    "ratio",
    "beats_natural",
    "best_natural_unconstrained",
    "ratio_unconstrained",
    "beats_natural_unconstrained",
)


def compare_with_references(
    kind, names, rows, w_targets, drive, ref_drive, plain_drive, z_stats, temp, both
):
    """:func:`evaluate` against the equated reference, plus the ``*_unconstrained`` columns
    against the plain crops (the same values when the reference is not equated)."""
    columns, targets = evaluate(kind, names, rows, w_targets, drive, ref_drive, z_stats, temp)
    if both:
        _, plain = evaluate(kind, names, rows, w_targets, drive, plain_drive, z_stats, temp)
    else:
        plain = targets
    for col in ("best_natural", "ratio", "beats_natural"):
        targets[f"{col}_unconstrained"] = plain[col].to_numpy()
    if kind == "silence":
        targets["beats_natural_drive_unconstrained"] = plain["beats_natural_drive"].to_numpy()
    return columns, targets


def match_units(
    rig: Rig,
    other: Rig,
    neuroid_ids: list[str],
    size_deg: float,
    position_deg: tuple[float, float],
    tolerance_deg: float = 1.0,
    calibration: stimuli.StimulusSet | None = None,
) -> tuple[list[str], list[dict]]:
    """For each of ``rig``'s ``neuroid_ids``, the unit of ``other`` (another network) that
    stands in for it: same region and hemisphere, RF centre within ``tolerance_deg`` (deg)
    of the target's, and among those the best correlated (Pearson r of rates in spikes/s)
    over ``calibration`` (default 200 natural crops, seed 2, ``size_deg`` wide at
    ``position_deg``). Returns the matched ids and one record per target (``target``,
    ``matched``, ``r``, ``rf_offset_deg``, ``n_candidates``)."""
    if not isinstance(tolerance_deg, int | float) or not tolerance_deg > 0:
        raise ValueError(f"transfer_tolerance_deg must be > 0 deg, got {tolerance_deg!r}")
    if calibration is None:
        calibration = stimuli.natural(200, size_deg=size_deg, seed=2)
    if not isinstance(calibration, stimuli.StimulusSet) or len(calibration) < 3:
        raise ValueError("calibration must be a StimulusSet of at least 3 images")
    cal = calibration.with_size(size_deg).with_position(position_deg)
    by_region: dict[str, list[int]] = {}
    for k, nid in enumerate(neuroid_ids):
        by_region.setdefault(str(nid).split(".")[0], []).append(k)
    matched: list[str] = [""] * len(neuroid_ids)
    records: list[dict] = [{} for _ in neuroid_ids]
    for region, idx in by_region.items():
        if region not in other.model.regions:
            raise ValueError(
                f"transfer: region {region!r} is not committed on {other.model.name!r} "
                f"(it has {', '.join(other.model.regions)})"
            )
        ids = [neuroid_ids[k] for k in idx]
        src_ru = rig.model.region_units(region)
        dst_ru = other.model.region_units(region)
        src = src_ru.table.iloc[src_ru.units_of(ids)]
        dst = dst_ru.table
        mine = population_drive(rig, cal, resolve_targets(rig.model, ids)).clamp(min=0).double()
        theirs = (
            population_drive(other, cal, resolve_targets(other.model, region)).clamp(min=0).double()
        )
        zm = (mine - mine.mean(0)) / mine.std(0).clamp(min=1e-9)
        zt = (theirs - theirs.mean(0)) / theirs.std(0).clamp(min=1e-9)
        corr = (zm.T @ zt / (len(cal) - 1)).numpy()  # (targets, other units)
        corr[:, (theirs.std(0) == 0).numpy()] = -np.inf  # silent units cannot match
        dx = dst["rf_x_deg"].to_numpy()[None, :] - src["rf_x_deg"].to_numpy()[:, None]
        dy = dst["rf_y_deg"].to_numpy()[None, :] - src["rf_y_deg"].to_numpy()[:, None]
        dist = np.hypot(dx, dy)
        ok = dist <= tolerance_deg
        if "hemisphere" in src and "hemisphere" in dst:
            ok &= dst["hemisphere"].to_numpy()[None, :] == src["hemisphere"].to_numpy()[:, None]
        for j, k in enumerate(idx):
            cand = np.flatnonzero(ok[j])
            if len(cand) == 0:
                raise ValueError(
                    f"transfer: no {region} unit of {other.model.name!r} has its RF within "
                    f"{tolerance_deg:g} deg of {ids[j]!r}'s (nearest {dist[j].min():.2f} deg); "
                    "raise transfer_tolerance_deg"
                )
            best = cand[int(np.argmax(corr[j, cand]))]
            matched[k] = str(dst_ru.neuroid_ids(np.array([best]))[0])
            r = float(corr[j, best])
            records[k] = {
                "target": str(ids[j]),
                "matched": matched[k],
                "r": r if np.isfinite(r) else float("nan"),
                "rf_offset_deg": float(dist[j, best]),
                "n_candidates": len(cand),
            }
    return matched, records


def population_drive(rig: Rig, stim: stimuli.StimulusSet, resolved) -> torch.Tensor:
    """Unrectified drive (spikes/s before clamping at 0) of the population: (stimuli, N)."""
    out = []
    for lo in range(0, len(stim), 64):
        idx = np.arange(lo, min(lo + 64, len(stim)))
        out.append(rates(rig.model, rig.present(stim, idx), resolved, clamp=False).float().cpu())
    return torch.cat(out)


def one_hot_score(drive, weights, z_stats, temperature) -> torch.Tensor:
    z = (drive - z_stats[0]) / z_stats[1]
    p = torch.softmax(z / temperature, dim=1)
    return (p * (weights > 0)).sum(1)


def evaluate(kind, names, rows, w_targets, drive, ref_drive, z_stats, temperature):
    """Per-image columns and per-target comparison with the reference natural images.

    Responses are firing rates (spikes/s, rectified); for ``silence`` the unrectified drive
    is compared too, since a rate cannot go below 0 however far below threshold it is.
    """
    w = w_targets[rows]
    rates = drive.clamp(min=0)
    ref_rates = ref_drive.clamp(min=0)
    columns = {"response": (rates * w).sum(1).numpy(), "drive": (drive * w).sum(1).numpy()}
    ref_resp = ref_rates @ w_targets.T
    ref_dr = ref_drive @ w_targets.T
    if kind == "one_hot":
        columns["score"] = one_hot_score(drive, w, z_stats, temperature).numpy()
        ref_scores = torch.stack(
            [
                one_hot_score(
                    ref_drive, w_targets[t].expand(len(ref_drive), -1), z_stats, temperature
                )
                for t in range(len(names))
            ],
            dim=1,
        )
    out = []
    for t, name in enumerate(names):
        mine = rows == t
        row: dict[str, Any] = {"target": name}
        if kind == "one_hot":
            synth, natural = float(columns["score"][mine].max()), float(ref_scores[:, t].max())
            row.update(
                synthesized=synth,
                best_natural=natural,
                ratio=synth / max(natural, 1e-12),
                beats_natural=synth > natural,
            )
        elif kind == "silence":
            synth, natural = float(columns["response"][mine].min()), float(ref_resp[:, t].min())
            sd, nd = float(columns["drive"][mine].min()), float(ref_dr[:, t].min())
            row.update(
                synthesized=synth,
                best_natural=natural,
                ratio=synth / natural if natural > 0 else math.nan,
                beats_natural=synth < natural,
                synthesized_drive=sd,
                natural_drive=nd,
                beats_natural_drive=sd < nd,
            )
        else:
            synth, natural = float(columns["response"][mine].max()), float(ref_resp[:, t].max())
            row.update(
                synthesized=synth,
                best_natural=natural,
                ratio=synth / natural if natural > 0 else math.inf,
                beats_natural=synth > natural,
            )
        out.append(row)
    return columns, pd.DataFrame(out)
