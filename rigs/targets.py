"""Recording targets: what a rig records from, resolved to units of a layer, and their rates.

A target is a region (all its units), a ``SiteArray`` (one unit per site), ``MappedSites``
(linear readouts of a layer fitted to real recordings) or a list of neuroid ids. Every rig
operation that reads rates (record, behave, synthesize, compare) resolves its targets here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from insilico.brain import BrainModel
from recordings.format import NEUROID_COORDS, as_string_array
from rigs.arrays import SiteArray
from rigs.mapped import MappedSites


@dataclass(frozen=True)
class Target:
    """Units of one region's layer that a rig records from (resolved from any target)."""

    region: str
    layer: str
    units: np.ndarray
    sites: np.ndarray  # site number per unit, -1 when not recorded through an array
    whole: bool = False  # all units of the region, in table order
    mapped: MappedSites | None = None  # linear readouts of the layer instead of units


def resolve_targets(model: BrainModel, targets: Any) -> list[Target]:
    """``targets`` (a region name, SiteArray, MappedSites, Target, neuroid ids or a list of
    those) as a list of :class:`Target` of ``model``."""
    if isinstance(targets, Target):
        return [targets]
    if isinstance(targets, SiteArray):
        if targets.model_name != model.name:
            raise ValueError(
                f"array was implanted in model {targets.model_name!r}, "
                f"this rig holds {model.name!r}"
            )
        return [Target(targets.region, targets.layer, targets.units, targets.site_numbers)]
    if isinstance(targets, MappedSites):
        if targets.model_name != model.name:
            raise ValueError(
                f"sites were mapped onto {targets.model_name!r}, this rig holds {model.name!r}"
            )
        n = len(targets)
        return [
            Target(
                targets.region, targets.layer, np.arange(n), targets.site_numbers, mapped=targets
            )
        ]
    if isinstance(targets, str):
        ru = model.region_units(targets)
        n = len(ru.table)
        return [Target(targets, ru.layer, np.arange(n), np.full(n, -1), whole=True)]
    if isinstance(targets, list | tuple | np.ndarray) and len(targets) > 0:
        if all(isinstance(t, Target | SiteArray | MappedSites | str) for t in targets) and not all(
            isinstance(t, str) and t.count(".") == 3 for t in targets
        ):
            return [t for item in targets for t in resolve_targets(model, item)]
        ids = [str(t) for t in targets]
        by_region: dict[str, list[str]] = {}
        for nid in ids:
            by_region.setdefault(nid.split(".")[0], []).append(nid)
        out = []
        for region, group in by_region.items():
            ru = model.region_units(region)
            units = ru.units_of(group)
            out.append(Target(region, ru.layer, units, np.full(len(units), -1)))
        return out
    raise ValueError(
        f"targets must be a region name ({', '.join(model.regions)}), a SiteArray or a "
        f"list of neuroid ids, got {targets!r}"
    )


def neuroid_coords(model: BrainModel, targets: list[Target]) -> dict[str, tuple[str, np.ndarray]]:
    """The neuroid coordinates (DESIGN.md) of the targeted units, in target order."""
    labels = ("neuroid_id", "region", "layer", "hemisphere", "site")
    numeric = [name for name in NEUROID_COORDS if name not in labels]
    columns: dict[str, list[np.ndarray]] = {
        name: [] for name in ("neuroid_id", "region", "layer", *numeric, "hemisphere", "site")
    }
    for t in targets:
        if t.mapped is not None:
            for name, values in mapped_coords(model, t).items():
                columns[name].append(values)
            continue
        ru = model.region_units(t.region)
        units = slice(None) if t.whole else t.units
        columns["neuroid_id"].append(ru.neuroid_ids(np.arange(len(ru.table))[units]))
        columns["region"].append(as_string_array([t.region] * len(t.units)))
        columns["layer"].append(as_string_array([t.layer] * len(t.units)))
        for name in numeric:
            columns[name].append(ru.table[name].to_numpy()[units])
        columns["hemisphere"].append(as_string_array(ru.table["hemisphere"].to_numpy()[units]))
        columns["site"].append(t.sites)
    coords = {name: ("neuroid", np.concatenate(parts)) for name, parts in columns.items()}
    ids = coords["neuroid_id"][1]
    if len(targets) > 1 or not targets[0].whole:
        unique, counts = np.unique(ids.astype(object), return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"neuroid {unique[counts > 1][0]!r} is targeted twice")
    return coords


def rates(
    model: BrainModel,
    images: torch.Tensor,
    targets: list[Target],
    grad: bool = False,
    clamp: bool = True,
    precision: str = "float32",
) -> torch.Tensor:
    """Firing rates (spikes/s) of resolved ``targets`` for model-input ``images``:
    ``(n, neuroids)``; ``clamp=False`` gives the unrectified drive (for gradients)."""
    names = list(dict.fromkeys(p for t in targets for p in layer_parts(t.layer)))
    with model.autocast(precision):
        acts = model.activations(images, names, grad=grad)
    if precision != "float32":  # rates computed in float32 from the reduced-precision pass
        acts = {k: v.float() for k, v in acts.items()}
    parts = [target_rates(model, joined_activation(acts, t.layer), t, clamp) for t in targets]
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def layer_parts(layer: str) -> list[str]:
    """The layers of a (possibly mixed, ``"a+b"``) layer name of mapped sites."""
    return layer.split("+")


def joined_activation(acts: dict[str, torch.Tensor], layer: str) -> torch.Tensor:
    """The activation of ``layer``; for a mixed name ``"a+b"`` the parts' activations
    concatenated along channels (they share one spatial grid): flattened, the units of ``a``
    then those of ``b``, the order mixed-layer readouts are fitted in."""
    parts = layer_parts(layer)
    if len(parts) == 1:
        return acts[layer]
    return torch.cat([acts[p] for p in parts], dim=1)


def target_rates(
    model: BrainModel, activation: torch.Tensor, t: Target, clamp: bool
) -> torch.Tensor:
    """Rates of one target from its layer's activation (n, C, H, W)."""
    if t.mapped is not None:  # linear readout of the whole layer
        flat = activation.reshape(activation.shape[0], -1).float()
        w = t.mapped.weights.to(flat.device)
        out = flat @ w.T + t.mapped.bias.to(flat.device)
        return out.clamp(min=0.0) if clamp else out
    units = None if t.whole else t.units
    return model.rates(t.region, model.gather(activation, units), units, clamp=clamp)


def mapped_coords(model: BrainModel, t: Target) -> dict[str, np.ndarray]:
    """Neuroid coordinates of mapped sites: RF and sheet position are the |weight|-weighted
    centroids over the layer's units (NaN when the layer is not a committed region layer)."""
    m = t.mapped
    n = len(m)
    out = {
        "neuroid_id": as_string_array(m.neuroid_ids),
        "region": as_string_array([m.region] * n),
        "layer": as_string_array([m.layer] * n),
        "channel": np.full(n, -1),
        "row": np.full(n, -1),
        "col": np.full(n, -1),
        "site": m.site_numbers,
    }
    regions = {model.region(r).layer: r for r in model.regions}
    w = m.weights.abs().numpy()
    w = w / np.clip(w.sum(1, keepdims=True), 1e-30, None)
    table = model.units(regions[m.layer]) if m.layer in regions else None
    for name in ("rf_x_deg", "rf_y_deg", "rf_size_deg", "tissue_x_mm", "tissue_y_mm"):
        if table is None or name == "rf_size_deg":
            out[name] = np.full(n, np.nan)
        else:
            out[name] = w @ table[name].to_numpy()
    # the hemisphere holding most of the site's |weight| ("" when not a committed region layer);
    # tissue centroids average positions on one frame shared by both sheets
    if table is None:
        out["hemisphere"] = as_string_array([""] * n)
    else:
        left = w @ (table["hemisphere"].to_numpy() == "left").astype(float)
        out["hemisphere"] = as_string_array(np.where(left >= 0.5, "left", "right"))
    return out
