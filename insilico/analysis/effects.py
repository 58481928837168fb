"""Effects of a perturbation against matched random controls, with bootstrap statistics.

``compare`` runs the unperturbed condition, the perturbation and ``controls`` matched random
controls (the same perturbation at random sheet locations, on random units of the same
number, or along random directions of the same dimension) on one stimulus set, and reports
the effect on a readout with a 95 % bootstrap confidence interval over stimuli and the rank of
the real effect among the controls. A localisation claim is only as good as this comparison.

Perturbations that act unit by unit run as one batch of conditions
(``perturb.conditions.replicate_conditions``); other perturbations run condition by condition.
This is analysis above the rig: it runs a rig and its decoders, so it lives here, not in
``perturb``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from perturb.base import Perturbation, UnitMaps
from perturb.conditions import acts_through_unit_maps, replicate_conditions, tissue_match
from rigs.behavior import Decoder, imagenet_categories
from rigs.rig import Rig
from rigs.targets import resolve_targets
from stimuli.stimulus_set import check_seed

READOUTS = ("behaviour", "choice", "neural")


@dataclass
class Effect:
    """The effect of a perturbation on a readout, with its controls.

    ``effect`` = mean over stimuli of (perturbed - unperturbed) readout; ``ci`` its 95 %
    bootstrap interval (stimuli resampled); ``control_effects`` the same for each matched
    control; ``p_value`` = (1 + #controls with |effect| >= |real effect|) / (1 + #controls);
    ``rank`` = fraction of controls whose |effect| is smaller than the real one;
    ``p_directional`` = (1 + #controls with an effect at least as large in the real effect's
    direction) / (1 + #controls), for a directional hypothesis (e.g. "biases towards cat").
    """

    readout: str
    unit: str
    perturbation: dict
    n_stimuli: int
    baseline: float
    perturbed: float
    effect: float
    ci: tuple[float, float]
    control_effects: np.ndarray = field(repr=False)
    p_value: float
    rank: float
    p_directional: float = float("nan")
    seconds: float = 0.0
    batched: bool = False
    #: units the perturbation affects (effect >= half its peak) and the same count for each
    #: control (tissue matching: the controls affect as much tissue, not the same dose)
    affected_units: int | None = None
    control_affected_units: np.ndarray | None = field(default=None, repr=False)

    def __str__(self) -> str:
        c = self.control_effects
        lines = [
            f"{self.perturbation.get('type', 'perturbation')} on {self.readout} "
            f"({self.n_stimuli} stimuli):",
            f"  unperturbed {self.baseline:.4g} {self.unit}, perturbed {self.perturbed:.4g}",
            f"  effect {self.effect:+.4g} {self.unit}, "
            f"95% CI [{self.ci[0]:+.4g}, {self.ci[1]:+.4g}]",
        ]
        if self.affected_units is not None and self.control_affected_units is not None:
            ca = self.control_affected_units
            lines.append(
                f"  tissue match: {self.affected_units} units affected; controls "
                f"{np.mean(ca):.1f} on average ({int(np.min(ca))}..{int(np.max(ca))})"
                if len(ca)
                else f"  {self.affected_units} units affected"
            )
        if len(c):
            lines.append(
                f"  {len(c)} matched controls: effect {np.mean(c):+.4g} ± {np.std(c):.4g}; "
                f"real effect larger in magnitude than {100 * self.rank:.0f}% of them, "
                f"p = {self.p_value:.3g} (directional p = {self.p_directional:.3g})"
            )
        return "\n".join(lines)


def _readout(rig: Rig, readout: str, task: Any, labels: Any, choice: Any, targets: Any):
    """(region or None, per-stimulus function of (rates or probabilities) -> values, unit)."""
    if readout == "neural":
        if targets is None:
            raise ValueError("readout='neural' needs targets (a region, an array or neuroid ids)")
        resolved = resolve_targets(rig.model, targets)
        if len({t.region for t in resolved}) != 1:
            raise ValueError("readout='neural' targets must lie in one region")
        idx = torch.as_tensor(np.concatenate([t.units for t in resolved]))
        return resolved[0].region, (lambda rates: rates[..., idx].mean(-1)), "spikes/s"
    if readout not in ("behaviour", "choice"):
        raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
    if not isinstance(task, Decoder) and task != "imagenet":
        raise ValueError(f"readout={readout!r} needs task= a Decoder (rig.fit_task) or 'imagenet'")
    classes = (
        np.asarray([str(c) for c in task.classes])
        if isinstance(task, Decoder)
        else np.asarray(rig_categories(rig))
    )
    region = task.region if isinstance(task, Decoder) else None

    def probs(x: torch.Tensor) -> torch.Tensor:
        if isinstance(task, Decoder):
            shape = x.shape[:-1]
            return task.probabilities(x.reshape(-1, x.shape[-1])).reshape(*shape, -1)
        return torch.softmax(x, dim=-1)

    if readout == "choice":
        if choice is None or str(choice) not in classes:
            raise ValueError(f"readout='choice' needs choice= one of {list(classes)[:10]}")
        k = int(np.flatnonzero(classes == str(choice))[0])
        return region, (lambda x: probs(x)[..., k]), "probability"
    if labels is None:
        raise ValueError("readout='behaviour' needs labels= the correct class of every stimulus")
    labels = np.asarray([str(v) for v in np.asarray(labels)])
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not classes of the task {list(classes)[:10]}")
    truth = torch.as_tensor(np.searchsorted(np.sort(classes), labels))
    order = torch.as_tensor(np.argsort(classes))

    def correct(x: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        pred = probs(x).argmax(-1)
        return (order[pred] == truth[torch.as_tensor(rows)]).float()

    correct.needs_rows = True  # type: ignore[attr-defined]
    return region, correct, "fraction correct"


def rig_categories(rig: Rig) -> list[str]:
    return imagenet_categories(rig.model.commitment.num_classes)


def _condition_values(rig: Rig, images, rows, region, fn, k: int, silencing) -> torch.Tensor:
    """Readout values (conditions, stimuli) for one image batch. With a replicating hook
    attached the network output carries ``k`` conditions; ``silencing`` is then a pair of
    (k, units) tensors for the readout region: the per-condition rate factor and the output
    gain the recorded rate undoes (see perturb.base), or None (the model's own)."""
    model = rig.model
    n = len(images)
    if region is None:
        x = model.logits(images).float().cpu()
    else:
        ru = model.region_units(region)
        a = model.activations(images, [ru.layer])[ru.layer]
        flat = a.reshape(a.shape[0], -1).float().cpu()
        if silencing is None:
            x = model.rates(region, flat)
        else:
            rc = model.region(region)
            gain = (rc.max_hz - rc.baseline_hz) / ru.rate_scale
            factor, undo = silencing
            u = flat.reshape(k, n, -1) / undo[:, None, :] * gain + rc.baseline_hz
            x = model.saturate(region, u) * factor[:, None, :]
    x = x.reshape(-1, n, x.shape[-1])
    values = fn(x, rows) if getattr(fn, "needs_rows", False) else fn(x)
    return values.expand(k, n) if values.shape[0] == 1 else values


def _bootstrap_ci(diff: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    idx = rng.integers(0, len(diff), size=(n_boot, len(diff)))
    means = diff[idx].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def compare(
    rig: Rig,
    stimuli: Any,
    perturbation: Perturbation,
    readout: str = "behaviour",
    task: Any = None,
    labels: Any = None,
    choice: Any = None,
    targets: Any = None,
    controls: int = 50,
    seed: int = 0,
    n_boot: int = 2000,
    batch_size: int = 64,
    progress: bool = True,
) -> Effect:
    """Effect of ``perturbation`` on a readout, against ``controls`` matched random controls.

    Readouts: ``"behaviour"`` (fraction correct of ``task`` given ``labels``), ``"choice"``
    (probability of choosing ``choice``), ``"neural"`` (mean rate of ``targets``, spikes/s).
    """
    if not isinstance(perturbation, Perturbation):
        raise TypeError(f"perturbation must be a Perturbation, got {perturbation!r}")
    if not isinstance(controls, int) or controls < 0:
        raise ValueError(f"controls must be an integer >= 0, got {controls!r}")
    check_seed(seed)
    t0 = time.perf_counter()
    rig.check_visible(stimuli)
    region, fn, unit = _readout(rig, readout, task, labels, choice, targets)
    rng = np.random.default_rng(seed)
    model = rig.model
    conditions = [perturbation] + [perturbation.random_control(model, rng) for _ in range(controls)]
    batched = all(acts_through_unit_maps(p) for p in conditions) and not rig.perturbations
    n = len(stimuli)
    values = np.empty((len(conditions) + 1, n))  # row 0: unperturbed
    if batched:
        n_units = len(model.region_units(perturbation.region).table)
        maps = [UnitMaps.identity(n_units)] + [p.unit_maps(model) for p in conditions]
        k = len(maps)
        chunk = max(1, (4 * batch_size) // k)
        handle, silencing = replicate_conditions(model, perturbation.region, maps)
        sil = silencing if region == perturbation.region else None
        try:
            for lo in tqdm(range(0, n, chunk), desc="compare", disable=not progress, leave=False):
                rows = np.arange(lo, min(lo + chunk, n))
                v = _condition_values(rig, rig.present(stimuli, rows), rows, region, fn, k, sil)
                values[:, rows] = v.numpy()
        finally:
            handle.remove()
    else:
        for c, p in enumerate(
            tqdm([None, *conditions], desc="compare", disable=not progress, leave=False)
        ):
            ctx = rig.perturb(p) if p is not None else rig.perturb()
            with ctx:
                for lo in range(0, n, batch_size):
                    rows = np.arange(lo, min(lo + batch_size, n))
                    v = _condition_values(
                        rig, rig.present(stimuli, rows), rows, region, fn, 1, None
                    )
                    values[c, rows] = v[0].numpy()
    diffs = values[1:] - values[0]
    effects = diffs.mean(axis=1)
    affected, control_affected = tissue_match(model, perturbation, conditions[1:])
    real, ctrl = float(effects[0]), effects[1:]
    return Effect(
        readout=readout,
        unit=unit,
        perturbation=perturbation.describe(),
        n_stimuli=n,
        baseline=float(values[0].mean()),
        perturbed=float(values[1].mean()),
        effect=real,
        ci=_bootstrap_ci(diffs[0], n_boot, rng),
        control_effects=ctrl,
        **control_statistics(real, ctrl),
        seconds=time.perf_counter() - t0,
        batched=batched,
        affected_units=affected,
        control_affected_units=control_affected,
    )


def control_statistics(real: float, controls: np.ndarray) -> dict[str, float]:
    """Permutation statistics of a real effect among its matched controls.

    ``p_value`` = (1 + #|control| >= |real|) / (1 + n) (two-sided, the real effect counted
    among the possible outcomes, so never 0); ``rank`` = fraction of controls with a smaller
    |effect|; ``p_directional`` = (1 + #controls at least as large in the real effect's
    direction) / (1 + n).
    """
    ctrl = np.asarray(controls, dtype=float)
    n = len(ctrl)
    return {
        "p_value": float((1 + np.sum(np.abs(ctrl) >= abs(real))) / (1 + n)),
        "rank": float(np.mean(np.abs(ctrl) < abs(real))) if n else float("nan"),
        "p_directional": float((1 + np.sum(np.sign(real) * ctrl >= abs(real))) / (1 + n)),
    }
