"""Functional ablations: units set to zero or their mean, and directional (subspace) ablation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from insilico.brain import BrainModel
from perturb.base import Handle, Perturbation, UnitMaps, attach_maps, resolve_units


class Ablation(Perturbation):
    """Set chosen units' outputs to zero (``value="zero"``) or to their mean response over a
    ``reference`` stimulus set (``value="mean"``). Choose units by neuroid ids / indices
    (``units``) or whole ``channels``. Downstream layers see the ablated values; the recorded
    rate of an ablated unit follows the rate commitment (zero output -> baseline rate)."""

    citation = "functional ablation (unit knock-out / mean ablation)"

    def __init__(
        self,
        region: str,
        units: Any = None,
        channels: Any = None,
        value: str = "zero",
        reference: Any = None,
    ) -> None:
        if (units is None) == (channels is None):
            raise ValueError("give units (neuroid ids or indices) or channels, not both or neither")
        if value not in ("zero", "mean"):
            raise ValueError(f"value must be 'zero' or 'mean', got {value!r}")
        if value == "mean" and reference is None:
            raise ValueError("value='mean' needs a reference StimulusSet to take the mean over")
        self.region = region
        self.units = None if units is None else np.asarray(units).tolist()
        self.channels = None if channels is None else [int(c) for c in np.atleast_1d(channels)]
        self.value = value
        self._reference = reference

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        if self._reference is not None:
            d["reference"] = getattr(self._reference, "fingerprint", lambda: "tensor")()
        return d

    def _selected(self, model: BrainModel) -> np.ndarray:
        ru = model.region_units(self.region)
        if self.units is not None:
            return resolve_units(model, self.region, self.units)
        c = ru.shape[0]
        bad = [ch for ch in self.channels if not 0 <= ch < c]
        if bad:
            raise ValueError(f"channels {bad} do not exist in {self.region} ({c} channels)")
        return np.flatnonzero(np.isin(ru.table["channel"].to_numpy(), self.channels))

    def attach(self, model: BrainModel, present: Callable | None = None) -> Handle:
        ru = model.region_units(self.region)
        rc = model.region(self.region)
        n = len(ru.table)
        sel = torch.as_tensor(self._selected(model))
        gain = torch.ones(n)
        gain[sel] = 0
        drive = torch.zeros(n)
        if self.value == "mean":
            images = self._reference
            if not isinstance(images, torch.Tensor):
                if present is None:
                    raise ValueError(
                        "mean ablation over a StimulusSet needs the rig: use rig.perturb"
                    )
                images = present(images)
            mean = torch.zeros(n)
            for start in range(0, len(images), 64):
                a = model.activations(images[start : start + 64], [ru.layer])[ru.layer]
                mean += a.reshape(len(a), -1).float().sum(0).cpu()
            mean /= len(images)
            drive[sel] = mean[sel] * (rc.max_hz - rc.baseline_hz) / ru.rate_scale
        return attach_maps(model, self.region, UnitMaps(gain, drive, torch.ones(n)))

    def random_control(self, model: BrainModel, rng: np.random.Generator) -> Ablation:
        n_units = len(self._selected(model))
        total = len(model.region_units(self.region).table)
        units = np.sort(rng.choice(total, size=n_units, replace=False))
        return Ablation(self.region, units=units, value=self.value, reference=self._reference)


class DirectionalAblation(Perturbation):
    """Project a subspace out of a region's activity: ``a' = a - Q^T Q a`` with ``Q`` an
    orthonormal basis of ``directions`` (k, D). ``D`` = number of channels: the subspace is
    removed from the channel vector at every position; ``D`` = number of units: from the
    whole flattened activity. Afterwards the activity has no component in the subspace."""

    citation = "directional ablation (distributed vs single-unit coding)"

    def __init__(self, region: str, directions: Any) -> None:
        d = np.asarray(directions, dtype=np.float64)
        if d.ndim == 1:
            d = d[None]
        if d.ndim != 2 or d.shape[0] == 0 or not np.isfinite(d).all():
            raise ValueError(
                f"directions must be a finite (k, D) array, got shape {np.shape(directions)}"
            )
        self.region = region
        self.k, self.dim = d.shape
        q, r = np.linalg.qr(d.T)  # columns of q span the directions
        if np.abs(np.diag(r)).min() < 1e-10 * max(1.0, np.abs(r).max()):
            raise ValueError("directions are linearly dependent (or zero)")
        self._basis = torch.as_tensor(q.T, dtype=torch.float32)  # (k, D) orthonormal rows

    def describe(self) -> dict[str, Any]:
        return {"type": "DirectionalAblation", "region": self.region, "k": self.k, "dim": self.dim}

    def attach(self, model: BrainModel, present: Callable | None = None) -> Handle:
        ru = model.region_units(self.region)
        c, h, w = ru.shape
        if self.dim not in (c, c * h * w):
            raise ValueError(
                f"directions have dimension {self.dim}; {self.region} of {model.name!r} needs "
                f"{c} (channels) or {c * h * w} (units)"
            )
        q = self._basis.to(model.device)
        per_channel = self.dim == c

        def hook(module, args, output: torch.Tensor) -> torch.Tensor:
            if per_channel:
                x = output.permute(0, 2, 3, 1)  # (n, h, w, c)
                x = x - (x @ q.T) @ q
                return x.permute(0, 3, 1, 2)
            flat = output.reshape(len(output), -1)
            return (flat - (flat @ q.T) @ q).reshape(output.shape)

        handle = model.network.get_submodule(ru.layer).register_forward_hook(hook)
        return Handle([handle.remove])

    def random_control(self, model: BrainModel, rng: np.random.Generator) -> DirectionalAblation:
        return DirectionalAblation(self.region, rng.standard_normal((self.k, self.dim)))
