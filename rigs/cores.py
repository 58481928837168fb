"""Ensembles across networks ("cores"): one recording mapped onto several models.

A readout ensemble on one network (``map_neurons(n_models=K)``) averages readouts of the
same features; its images can still exploit that network's quirks. An ensemble over cores
(Willeke et al. 2023 average readouts on separately trained cores; Walker et al. 2019
synthesize on an ensemble's mean) predicts each recorded site by the mean of its mapped rates
on several networks. ``rig.synthesize(mapped, cores=[(other_rig, other_mapped)])`` optimises
and re-measures that mean; :func:`ensemble_predictivity` is its cross-validated r, computed
from each mapping's out-of-fold predictions (the same stimuli, ``cv`` and ``seed`` give the
same folds, so every prediction comes from readouts that did not see its stimulus).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

import stimuli
from rigs.mapped import MappedSites
from rigs.reliability import pearson
from rigs.scoring import population_drive
from rigs.targets import Target, rates, resolve_targets

if TYPE_CHECKING:
    from rigs.rig import Rig


@dataclass(frozen=True)
class Core:
    """One network of an ensemble: its rig and the population resolved on its model."""

    rig: Rig
    resolved: list[Target]


def aligned(mapped: MappedSites, ids: Sequence[str]) -> MappedSites:
    """The sites of ``mapped`` (or of the mapping it was taken from) standing for the
    recorded neuroid ``ids``, in that order."""
    base = mapped.parent or mapped
    where = {str(n): k for k, n in enumerate(base.neuroid_ids)}
    missing = [i for i in ids if i not in where]
    if missing:
        raise ValueError(
            f"the sites mapped onto {base.model_name!r} lack recorded neuroid {missing[0]!r} "
            f"({len(missing)} of {len(ids)} missing); map the same recording onto every core"
        )
    return base.sites[[int(base.site_numbers[where[i]]) for i in ids]]


def core_list(
    rig: Rig, population: Any, resolved: list[Target], ids: list[str], cores
) -> list[Core]:
    """The rig's own core and one per ``(Rig, MappedSites)`` pair of ``cores``, each with
    the population's sites matched by recorded neuroid id (checked: mapped targets, the
    same display background and gamma)."""
    out = [Core(rig, resolved)]
    if not cores:
        return out
    if not isinstance(population, MappedSites):
        raise ValueError(
            "cores= averages mapped sites over networks: targets must be MappedSites "
            f"(rig.map_neurons), got {type(population).__name__}"
        )
    if not isinstance(cores, list | tuple):
        raise ValueError(f"cores must be a list of (Rig, MappedSites) pairs, got {cores!r}")
    for item in cores:
        ok = isinstance(item, tuple | list) and len(item) == 2
        if not ok or not hasattr(item[0], "model") or not isinstance(item[1], MappedSites):
            raise ValueError(f"cores must be a list of (Rig, MappedSites) pairs, got {item!r}")
        other, mapped = item
        if mapped.model_name != other.model.name:
            raise ValueError(
                f"core sites were mapped onto {mapped.model_name!r}, their rig holds "
                f"{other.model.name!r}"
            )
        mine, theirs = rig.display, other.display
        if (mine.background, mine.gamma) != (theirs.background, theirs.gamma):
            raise ValueError(
                f"core {other.model.name!r} has display background/gamma "
                f"{theirs.background:g}/{theirs.gamma:g}, expected {mine.background:g}/"
                f"{mine.gamma:g} (the rig's): every core must see the same images"
            )
        out.append(Core(other, resolve_targets(other.model, aligned(mapped, ids))))
    return out


def ensemble_rates(
    cores: list[Core], deviations: torch.Tensor, pos: np.ndarray, size: float, grad: bool
) -> torch.Tensor:
    """Mean unrectified drive (spikes/s) over ``cores`` of the population for luminance
    deviations from the background, ``size`` deg wide at ``pos`` (deg): (n, sites)."""
    out = None
    device = deviations.device
    for core in cores:
        rig = core.rig
        d = deviations.to(rig.model.device, torch.float32)
        placed = rig.screen.place(d, np.tile(pos, (len(d), 1)), size)
        lum = (placed + float(rig.display.background)).clamp(1e-6, 1.0)
        if rig.screen.on_screen is not None:
            lum = lum * rig.screen.on_screen
        r = rates(rig.model, lum.pow(1.0 / rig.display.gamma), core.resolved, grad, clamp=False)
        out = r.to(device) if out is None else out + r.to(device)
    return out / len(cores)


def ensemble_drive(cores: list[Core], stim: stimuli.StimulusSet) -> torch.Tensor:
    """Mean unrectified drive (spikes/s) over ``cores`` for a StimulusSet: (stimuli, sites)."""
    total = sum(population_drive(c.rig, stim, c.resolved) for c in cores)
    return total / len(cores)


def ensemble_predictivity(mapped: Sequence[MappedSites]) -> np.ndarray:
    """Cross-validated Pearson r, per site of ``mapped[0]``, of the mean prediction of
    several mappings of one recording (e.g. onto Lite0 and Lite1): the out-of-fold
    predictions of each are averaged. They must share the stimuli, ``cv`` and ``seed``
    (hence the folds)."""
    if len(mapped) < 1 or not all(isinstance(m, MappedSites) for m in mapped):
        raise ValueError("ensemble_predictivity needs a list of MappedSites")
    first = mapped[0]
    keys = ("stimuli_fingerprint", "cv", "seed")
    for m in mapped:
        if "cv_predictions" not in m.info:
            raise ValueError(f"sites mapped onto {m.model_name!r} carry no out-of-fold predictions")
        for k in keys:
            if m.info.get(k) != first.info.get(k):
                raise ValueError(
                    f"mappings differ in {k} ({m.info.get(k)!r} on {m.model_name!r} vs "
                    f"{first.info.get(k)!r} on {first.model_name!r}): folds are not shared"
                )
    ids = [str(n) for n in first.neuroid_ids]
    preds = [m.info["cv_predictions"][:, aligned(m, ids).site_numbers] for m in mapped]
    means = first.info["responses_mean"][:, first.site_numbers]
    return pearson(np.mean(preds, axis=0), means)
