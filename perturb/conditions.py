"""Many perturbation conditions in one forward pass, and the tissue they affect.

Perturbations that act unit by unit (``unit_maps``: lesions, muscimol, optogenetics,
microstimulation, zero ablation) can run as one batch of conditions: the network runs once up
to the perturbed layer, whose output is replicated once per condition with that condition's
unit maps, so 50 matched controls cost the downstream layers only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from insilico.brain import BrainModel
from perturb.base import Perturbation, UnitMaps
from perturb.sheet import effect_size


def acts_through_unit_maps(p: Perturbation) -> bool:
    """True when ``p`` is fully described by its ``unit_maps`` (its ``attach`` is the
    generic one), so it can run as one condition of a replicated batch."""
    try:
        return (
            type(p).attach is Perturbation.attach
            and type(p).unit_maps is not Perturbation.unit_maps
        )
    except AttributeError:
        return False


def replicate_conditions(model: BrainModel, region: str, maps: list[UnitMaps]):
    """Attach a hook replicating ``region``'s output once per condition, each with its unit
    maps. Returns (hook handle, (factor, undo)): per condition, the rate factor of the
    region's units and the output gain a recorded rate undoes (see ``perturb.base``)."""
    ru = model.region_units(region)
    rc = model.region(region)
    c, h, w = ru.shape
    per_hz = (rc.max_hz - rc.baseline_hz) / ru.rate_scale
    gain = torch.stack([m.gain for m in maps]).view(len(maps), 1, c, h, w).to(model.device)
    shift = torch.stack([m.drive_hz / per_hz for m in maps]).view(len(maps), 1, c, h, w)
    shift = shift.to(model.device)

    def hook(module, args, output: torch.Tensor) -> torch.Tensor:
        y = output.unsqueeze(0) * gain + shift
        return y.reshape(-1, c, h, w)

    handle = model.network.get_submodule(ru.layer).register_forward_hook(hook)
    factor = torch.stack([m.silencing for m in maps])
    undo = torch.stack(
        [
            torch.where((m.silencing < 1) & (m.gain > 0), m.gain, torch.ones_like(m.gain))
            for m in maps
        ]
    )
    return handle, (factor, undo)


def tissue_match(model: BrainModel, real: Perturbation, controls: list) -> tuple[int | None, Any]:
    """Affected-unit counts of the real perturbation and its controls, at the real one's
    threshold (half its peak effect); None for perturbations without a spatial effect."""
    if not hasattr(real, "affected"):
        return None, None
    e = effect_size(real.unit_maps(model), model.region(real.region).max_hz)
    threshold = 0.5 * float(e.max())
    counts = np.array([c.affected(model, threshold) for c in controls], dtype=int)
    return real.affected(model, threshold), counts


def rates_through_maps(model: BrainModel, region: str, acts: torch.Tensor, maps: UnitMaps):
    """Rates (stimuli, units) in spikes/s of ``region`` when a perturbation with unit maps
    ``maps`` acts on it, from the region's unperturbed activations ``acts`` (stimuli, units):
    what recording the region under ``rig.perturb`` gives, without running the network again
    (the hook of ``replicate_conditions`` and the rate undo of ``perturb.base``). For
    analyses that read the perturbed region itself under many conditions (sites, doses)."""
    ru = model.region_units(region)
    rc = model.region(region)
    per_hz = (rc.max_hz - rc.baseline_hz) / ru.rate_scale
    y = acts.float() * maps.gain + maps.drive_hz / per_hz
    keep = (maps.silencing < 1) & (maps.gain > 0)
    undo = torch.where(keep, maps.gain, torch.ones_like(maps.gain))
    u = y / undo * per_hz + rc.baseline_hz
    return model.saturate(region, u) * maps.silencing
