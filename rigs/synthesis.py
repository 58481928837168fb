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
from recordings.format import INSILICO_VERSION
from rigs.arrays import SiteArray
from rigs.cores import core_list, ensemble_drive, ensemble_rates
from rigs.mapped import MappedSites
from rigs.scoring import (
    TRANSFER_COLUMNS,
    compare_with_references,
    match_units,
    population_drive,
)
from rigs.targets import resolve_targets
from stimuli.synthesis import objectives as obj_mod
from stimuli.synthesis.constraints import DisplayConstraints
from stimuli.synthesis.loop import optimize
from stimuli.synthesis.result import SynthesisResult

if TYPE_CHECKING:
    from rigs.rig import Rig


def _target_sets(rig: Rig, targets: Any) -> tuple[list[str], list[list[str]]]:
    """(names, member neuroid ids) per target."""
    if isinstance(targets, MappedSites):
        names = [str(n) for n in targets.neuroid_ids]
        return names, [[n] for n in names]
    if isinstance(targets, SiteArray):
        ids = [str(i) for i in targets.neuroid_ids]
        return ids, [[i] for i in ids]
    if isinstance(targets, dict):
        names, members = [], []
        for name, value in targets.items():
            ids = [str(i) for t in resolve_targets(rig.model, value) for i in _ids(rig, t)]
            names.append(str(name))
            members.append(ids)
        return names, members
    if isinstance(targets, str):
        (t,) = resolve_targets(rig.model, targets)
        return [targets], [list(_ids(rig, t))]
    if isinstance(targets, list | tuple | np.ndarray) and len(targets) > 0:
        ids = [str(i) for t in resolve_targets(rig.model, list(targets)) for i in _ids(rig, t)]
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
    equate_reference: bool = True,
    low_contrast: str = "scale_up",
    transfer_tolerance_deg: float = 1.0,
    calibration: stimuli.StimulusSet | None = None,
    cores: list[tuple[Rig, MappedSites]] | None = None,
) -> SynthesisResult:
    """Synthesize images that ``objective`` the ``targets`` (drive / silence / one_hot /
    match, or a composed ``stimuli.synthesis.objectives.Objective``).

    ``targets``: a SiteArray (each site a target), neuroid ids, a region name or a dict
    ``{name: members}`` of population targets. Keywords: ``n_per_target=1``,
    ``size_deg`` (default 3/4 of the field of view), ``position_deg=(0, 0)``,
    ``steps=256``, ``seed=0``, ``reference`` (natural StimulusSet to compare with; default
    1,000 crops), ``population`` (for one_hot; default the targets' whole array),
    ``goal`` (match: pattern in spikes/s), ``param="fourier"|"pixel"``,
    ``transforms=True``, ``rms_contrast=0.25``, ``edge_deg=0.25``, ``lr=0.05``,
    ``temperature=1.0``, ``batch_size=32``, ``transfer=[other rigs]``, ``progress``,
    ``callback(step, deviations, values) -> cancel?``. Images are constrained exactly
    (aperture, mean luminance = background, RMS contrast, gamut) and their responses
    re-measured as the display shows them.

    Comparison with natural images. ``reference`` (default: 1,000 :func:`stimuli.natural`
    crops, seed 1) is shown at the synthesis size and place two ways: *equated*
    (``equate_reference=True``, the default comparison: :func:`stimuli.equate` gives each
    crop the synthesis's aperture and ``edge_deg``, mean luminance = the display background,
    RMS contrast = ``rms_contrast`` (``low_contrast="scale_up"`` raises crops below it,
    ``"keep"`` leaves them), the display's gamma and bit depth) and *unconstrained* (the
    full-gamut square crops). ``targets`` gets ``best_natural``/``ratio``/``beats_natural``
    against the equated set and ``*_unconstrained`` against the plain crops.

    Transfer. A rig in ``transfer`` on the same network (weights) is scored on the same
    neuroid ids (``attrs["transfer_modes"][name] = "by_id_same_network"``). On a different
    network each population unit is matched (``"rf_matched"``) to a unit of the same region
    and hemisphere whose RF centre lies within ``transfer_tolerance_deg`` (deg) of its own,
    choosing among those candidates the one whose rates over ``calibration`` (default 200
    natural crops, seed 2, at the synthesis size and place; never the reference) correlate
    best with the target's; ``attrs["transfer_match"][name]`` lists per unit the matched id,
    the correlation ``r``, the RF offset in deg and the number of candidates.

    Ensembles over networks. ``cores=[(other_rig, other_mapped), ...]`` (mapped targets only:
    the same recording mapped onto other networks) optimises, and reports, the mean of each
    site's rates over this rig's and the other rigs' mappings (``rigs.cores``).
    """
    model = rig.model
    vd = model.visual_degrees
    stimuli.stimulus_set.check_seed(seed)
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
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not math.isfinite(temperature)
        or temperature <= 0
    ):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if not 0 < rms_contrast <= 1:
        raise ValueError(f"rms_contrast must be in (0, 1], got {rms_contrast!r}")
    objective_fn = obj_mod.named(objective)
    name = objective if isinstance(objective, str) else objective.description
    kind = objective if isinstance(objective, str) else "custom"

    names, members = _target_sets(rig, targets)
    # the requested site numbers travel with the images (export names files by them)
    site_numbers = targets.site_numbers if isinstance(targets, SiteArray) else None
    if population is None:
        parent = targets.parent if isinstance(targets, SiteArray | MappedSites) else None
        population = parent if parent is not None else targets
    _, pop_members = _target_sets(rig, population)
    pop_ids = list(dict.fromkeys([i for m in [*pop_members, *members] for i in m]))
    if isinstance(population, MappedSites):  # columns are the mapped sites themselves
        if len(pop_ids) != len(population):
            raise ValueError("mapped targets must be sites of the mapped population")
        resolved = resolve_targets(rig.model, population)
    else:
        resolved = resolve_targets(rig.model, pop_ids)
    column = {nid: k for k, nid in enumerate(pop_ids)}
    w_targets = torch.zeros(len(names), len(pop_ids))
    for t, m in enumerate(members):
        for nid in m:
            w_targets[t, column[nid]] = 1.0 / len(m)

    ppd = model.input_size / vd
    shape_px = max(8, round(size * ppd))
    bg = float(rig.display.background)
    core_set = core_list(rig, population, resolved, pop_ids, cores)

    # reference natural images at the same size and place: equated to the synthesis's
    # display budget (the default comparison) and unconstrained (full-gamut square crops)
    if reference is None:
        reference = stimuli.natural(1000, size_deg=size, seed=1)
    if not isinstance(reference, stimuli.StimulusSet):
        raise TypeError(f"reference must be a StimulusSet, got {type(reference).__name__}")
    ref_plain = reference.with_size(size).with_position(pos)
    ref = (
        stimuli.equate(ref_plain, rms_contrast, edge_deg, rig.display, low_contrast)
        if equate_reference
        else ref_plain
    )
    ref_drive = ensemble_drive(core_set, ref)
    plain_drive = ensemble_drive(core_set, ref_plain) if equate_reference else ref_drive
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
            forward=lambda d: ensemble_rates(core_set, d, pos, size, grad=True),
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
                **(
                    {"site": [int(site_numbers[t]) for t in rows]}
                    if site_numbers is not None
                    else {}
                ),
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
    columns, result.targets = compare_with_references(
        kind,
        names,
        rows,
        w_targets,
        ensemble_drive(core_set, shown),
        ref_drive,
        plain_drive,
        z_stats,
        temperature,
        equate_reference,
    )
    for col, values in columns.items():
        result.table[col] = values
    transfer_modes, transfer_match = {}, {}
    for other in transfer or []:
        if not hasattr(other, "model") or not hasattr(other, "screen"):
            raise ValueError(f"transfer must be a list of Rigs, got {type(other).__name__}")
        mine = (type(rig.model.network).__name__, rig.model.weights_id)
        theirs_id = (type(other.model.network).__name__, other.model.weights_id)
        if mine == theirs_id:
            transfer_modes[other.model.name] = "by_id_same_network"
            other_resolved = resolve_targets(
                other.model, population if isinstance(population, MappedSites) else pop_ids
            )
        else:
            # a neuroid id names an unrelated unit on another network: match by RF position,
            # then by responses over a natural calibration set (never silently by id)
            if isinstance(population, MappedSites):
                raise ValueError(
                    f"transfer of mapped sites to a different network ({other.model.name!r}) "
                    "is not defined; map the recording onto that network instead"
                )
            matched, table = match_units(
                rig, other, pop_ids, size, pos, transfer_tolerance_deg, calibration
            )
            transfer_modes[other.model.name] = "rf_matched"
            transfer_match[other.model.name] = table
            other_resolved = resolve_targets(other.model, matched)
        other_ref = population_drive(other, ref, other_resolved)
        other_plain = (
            population_drive(other, ref_plain, other_resolved) if equate_reference else other_ref
        )
        _, theirs = compare_with_references(
            kind,
            names,
            rows,
            w_targets,
            population_drive(other, shown, other_resolved),
            other_ref,
            other_plain,
            (other_ref.mean(0), other_ref.std(0).clamp(min=1e-3)),
            temperature,
            equate_reference,
        )
        for col in TRANSFER_COLUMNS:
            if col in theirs:
                result.targets[f"transfer_{other.model.name}_{col}"] = theirs[col].to_numpy()
    result.attrs = {
        "transfer_modes": transfer_modes,
        "transfer_match": transfer_match,
        "reference_equated": bool(equate_reference),
        "low_contrast": low_contrast,
        "objective": name,
        "objective_kind": kind,
        "model": model.name,
        "weights_id": model.weights_id,
        "commitment": model.commitment.to_dict(),
        "rig": rig.describe(),
        "cores": [c.rig.model.name for c in core_set],
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
            "equated_fingerprint": ref.fingerprint() if equate_reference else None,
        },
        "insilico_version": INSILICO_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    return result
