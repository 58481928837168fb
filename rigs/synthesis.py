"""``Rig.synthesize``: drive, silence, one-hot or match recorded populations with images.

The rig supplies what the engine (``stimuli.synthesis``) cannot know: a differentiable
forward pass from stimulus images in degrees to the population's firing rates, the
reference natural images' responses, and the re-measurement of every result on the image as
the display will show it (quantised, gamma, monitor pixels and back).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

import stimuli
from rigs.arrays import SiteArray
from rigs.mapping import MappedSites
from stimuli.synthesis import objectives as obj_mod
from stimuli.synthesis.constraints import DisplayConstraints
from stimuli.synthesis.loop import optimize
from stimuli.synthesis.result import SynthesisResult

if TYPE_CHECKING:
    from rigs.rig import Rig


def _target_sets(rig: Rig, targets: Any) -> tuple[list[str], list[list[str]]]:
    """(names, member neuroid ids) per target."""
    if isinstance(targets, MappedSites):
        names = [str(n) for n in targets.names]
        return names, [[n] for n in names]
    if isinstance(targets, SiteArray):
        ids = [str(i) for i in targets.neuroid_ids]
        return ids, [[i] for i in ids]
    if isinstance(targets, dict):
        names, members = [], []
        for name, value in targets.items():
            ids = [str(i) for t in rig._targets(value) for i in _ids(rig, t)]
            names.append(str(name))
            members.append(ids)
        return names, members
    if isinstance(targets, str):
        (t,) = rig._targets(targets)
        return [targets], [list(_ids(rig, t))]
    if isinstance(targets, list | tuple | np.ndarray) and len(targets) > 0:
        ids = [str(i) for t in rig._targets(list(targets)) for i in _ids(rig, t)]
        return ids, [[i] for i in ids]
    raise ValueError(
        f"targets must be a SiteArray, neuroid ids, a region name or a dict of populations, "
        f"got {targets!r}"
    )


def _ids(rig: Rig, target) -> np.ndarray:
    return rig.model.region_units(target.region).neuroid_ids(target.units)


def synthesize(
    rig: Rig,
    targets: Any,
    objective: str | obj_mod.Objective = "drive",
    n_per_target: int = 1,
    size_deg: float | None = None,
    position_deg: tuple[float, float] = (0.0, 0.0),
    steps: int = 256,
    seed: int = 0,
    reference: stimuli.StimulusSet | None = None,
    population: Any = None,
    goal: Any = None,
    param: str = "fourier",
    transforms: bool = True,
    rms_contrast: float = 0.25,
    edge_deg: float = 0.25,
    lr: float = 0.05,
    temperature: float = 1.0,
    batch_size: int = 32,
    snapshot_every: int | None = None,
    transfer: list[Rig] | None = None,
    progress: bool = True,
    callback=None,
) -> SynthesisResult:
    """See :meth:`rigs.rig.Rig.synthesize`."""
    model = rig.model
    vd = model.visual_degrees
    if not isinstance(steps, int) or steps <= 0:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if not isinstance(n_per_target, int) or n_per_target <= 0:
        raise ValueError(f"n_per_target must be a positive integer, got {n_per_target!r}")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    size = 0.75 * vd if size_deg is None else stimuli.stimulus_set.check_size_deg(size_deg)
    if size > vd + 1e-9:
        raise ValueError(f"size_deg={size:g} is larger than the model's field of view ({vd:g} deg)")
    pos = stimuli.stimulus_set.check_position_deg(position_deg)
    if abs(pos[0]) - size / 2 >= vd / 2 or abs(pos[1]) - size / 2 >= vd / 2:
        raise ValueError(f"position_deg={position_deg!r} puts the image outside the field of view")
    if not 0 < rms_contrast <= 1:
        raise ValueError(f"rms_contrast must be in (0, 1], got {rms_contrast!r}")
    objective_fn = obj_mod.named(objective)
    name = objective if isinstance(objective, str) else objective.description
    kind = objective if isinstance(objective, str) else "custom"

    names, members = _target_sets(rig, targets)
    if population is None:
        parent = targets.parent if isinstance(targets, SiteArray | MappedSites) else None
        population = parent if parent is not None else targets
    _, pop_members = _target_sets(rig, population)
    pop_ids = list(dict.fromkeys([i for m in [*pop_members, *members] for i in m]))
    if isinstance(population, MappedSites):  # columns are the mapped sites themselves
        if len(pop_ids) != len(population):
            raise ValueError("mapped targets must be sites of the mapped population")
        resolved = rig._targets(population)
    else:
        resolved = rig._targets(pop_ids)
    column = {nid: k for k, nid in enumerate(pop_ids)}
    w_targets = torch.zeros(len(names), len(pop_ids))
    for t, m in enumerate(members):
        for nid in m:
            w_targets[t, column[nid]] = 1.0 / len(m)

    ppd = model.input_size / vd
    shape_px = max(8, round(size * ppd))
    bg = float(rig.display.background)
    gamma = rig.display.gamma

    def rates_of(deviations: torch.Tensor, grad: bool) -> torch.Tensor:
        placed = rig._place(deviations.to(torch.float32), np.tile(pos, (len(deviations), 1)), size)
        lum = (placed + bg).clamp(1e-6, 1.0)
        if rig._on_screen is not None:
            lum = lum * rig._on_screen
        return rig._rates(lum.pow(1.0 / gamma), resolved, grad=grad, clamp=False)

    # reference natural images at the same size and place
    if reference is None:
        reference = stimuli.natural(256, size_deg=size, seed=1)
    if not isinstance(reference, stimuli.StimulusSet):
        raise TypeError(f"reference must be a StimulusSet, got {type(reference).__name__}")
    ref = reference.with_size(size).with_position(pos)
    ref_drive = _drive(rig, ref, resolved)
    z_stats = (ref_drive.mean(0), ref_drive.std(0).clamp(min=1e-3))

    goal_t = None
    if kind == "match" or goal is not None:
        if goal is None:
            raise ValueError("objective 'match' needs goal= a population pattern in spikes/s")
        g = torch.as_tensor(np.asarray(goal, dtype=np.float32))
        if g.ndim == 1:
            g = g.expand(len(names), -1)
        if g.shape != (len(names), len(pop_ids)):
            raise ValueError(
                f"goal has shape {tuple(g.shape)}; expected ({len(pop_ids)},) or "
                f"({len(names)}, {len(pop_ids)}) over the population {pop_ids[:3]}..."
            )
        goal_t = g

    constraints = DisplayConstraints((shape_px, shape_px), size, bg, rms_contrast, edge_deg)
    per_batch = max(1, batch_size // n_per_target)
    snap = snapshot_every or max(1, steps // 8)
    images, trajs, snaps, snap_steps = [], [], [], []
    for start in range(0, len(names), per_batch):
        t_idx = np.arange(start, min(start + per_batch, len(names)))
        rows = np.repeat(t_idx, n_per_target)
        out = optimize(
            forward=lambda d: rates_of(d, grad=True),
            weights=w_targets[rows].to(model.device),
            objective=objective_fn,
            constraints=constraints.to(model.device),
            shape=(shape_px, shape_px),
            steps=steps,
            lr=lr,
            param=param,
            transforms=transforms,
            seed=seed + start,
            z_stats=(z_stats[0].to(model.device), z_stats[1].to(model.device)),
            goal=None if goal_t is None else goal_t[rows].to(model.device),
            snapshot_every=snap,
            progress=progress,
            callback=callback,
            description=f"synthesizing {kind} ({start + len(t_idx)}/{len(names)} targets)",
        )
        images.append(out.deviations)
        trajs.append(out.trajectory)
        snaps.append(out.snapshots)
        snap_steps = out.snapshot_steps
        if out.cancelled:
            names, members = names[: start + len(t_idx)], members[: start + len(t_idx)]
            w_targets = w_targets[: len(names)]
            break
    deviations = torch.cat(images)
    n_steps = min(len(t) for t in trajs)
    trajectory = torch.cat([t[:n_steps] for t in trajs], dim=1).numpy()
    n_snap = min(len(s) for s in snaps)
    snapshots = torch.cat([s[:n_snap] for s in snaps], dim=1).numpy()
    luminance = (deviations + bg).clamp(0, 1)
    rows = np.repeat(np.arange(len(names)), n_per_target)

    # re-measure on the image as the display shows it
    result = SynthesisResult(
        images=luminance,
        table=pd.DataFrame(
            {
                "stimulus_id": [
                    f"synth_{kind}_{hashlib.sha1(img.numpy().tobytes()).hexdigest()[:12]}"
                    for img in luminance
                ],
                "target": [names[t] for t in rows],
                "replicate": np.tile(np.arange(n_per_target), len(names)),
                "objective": kind,
                "size_deg": size,
                "position_x_deg": pos[0],
                "position_y_deg": pos[1],
            }
        ),
        targets=pd.DataFrame(),
        trajectory=trajectory,
        snapshots=snapshots,
        snapshot_steps=snap_steps[:n_snap],
        background=bg,
    )
    shown = stimuli.from_arrays(
        result.displayed_luminance(rig.display),
        size_deg=size,
        position_deg=pos,
        encoding="linear",
    )
    columns, result.targets = evaluate(
        kind,
        names,
        rows,
        w_targets,
        _drive(rig, shown, resolved),
        ref_drive,
        z_stats,
        temperature,
    )
    for col, values in columns.items():
        result.table[col] = values
    transfer_modes = {}
    for other in transfer or []:
        mine = (type(rig.model.network).__name__, rig.model.weights_id)
        theirs_id = (type(other.model.network).__name__, other.model.weights_id)
        if mine != theirs_id:
            # the same neuroid id names an unrelated unit on another network; matching by RF
            # position is not implemented yet, so refuse rather than silently mis-resolve
            raise ValueError(
                f"transfer to a different network ({other.model.name!r}, weights "
                f"{other.model.weights_id!r}) from {rig.model.name!r} (weights "
                f"{rig.model.weights_id!r}): neuroid ids do not carry across networks; "
                "expected a rig on the same network (another commitment)"
            )
        transfer_modes[other.model.name] = "by_id_same_network"
        other_resolved = other._targets(
            population if isinstance(population, MappedSites) else pop_ids
        )
        other_ref = _drive(other, ref, other_resolved)
        _, theirs = evaluate(
            kind,
            names,
            rows,
            w_targets,
            _drive(other, shown, other_resolved),
            other_ref,
            (other_ref.mean(0), other_ref.std(0).clamp(min=1e-3)),
            temperature,
        )
        for col in ("synthesized", "best_natural", "ratio", "beats_natural"):
            result.targets[f"transfer_{other.model.name}_{col}"] = theirs[col].to_numpy()
    result.attrs = {
        "transfer_modes": transfer_modes,
        "objective": name,
        "objective_kind": kind,
        "model": model.name,
        "weights_id": model.weights_id,
        "commitment": model.commitment.to_dict(),
        "rig": rig.describe(),
        "display": rig.display.to_dict(),
        "perturbations": [p.describe() for p in rig.perturbations],
        "population": pop_ids,
        "steps": steps,
        "seed": seed,
        "param": param,
        "transforms": transforms,
        "rms_contrast": rms_contrast,
        "edge_deg": edge_deg,
        "lr": lr,
        "n_per_target": n_per_target,
        "reference": {
            "kind": reference.kind,
            "fingerprint": reference.fingerprint(),
            "n": len(reference),
        },
        "insilico_version": _version(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    return result


def _version() -> str:
    import insilico

    return insilico.__version__


def _drive(rig: Rig, stim: stimuli.StimulusSet, resolved) -> torch.Tensor:
    """Unrectified drive (spikes/s before clamping at 0) of the population: (stimuli, N)."""
    out = []
    for lo in range(0, len(stim), 64):
        idx = np.arange(lo, min(lo + 64, len(stim)))
        out.append(rig._rates(rig.present(stim, idx), resolved, clamp=False).float().cpu())
    return torch.cat(out)


def _one_hot_score(drive, weights, z_stats, temperature) -> torch.Tensor:
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
        columns["score"] = _one_hot_score(drive, w, z_stats, temperature).numpy()
        ref_scores = torch.stack(
            [
                _one_hot_score(
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
