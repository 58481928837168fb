"""The optimisation loop: a batch of images, one Adam optimiser, constraints at every step.

``optimize`` knows nothing about brains: it takes a differentiable ``forward`` callable
(images -> population rates) from the rig, so ``stimuli`` need not import ``rigs``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from stimuli.synthesis import params as params_mod
from stimuli.synthesis.constraints import DisplayConstraints
from stimuli.synthesis.objectives import Batch, Objective
from stimuli.synthesis.transforms import RandomAffine


@dataclass
class Optimized:
    """Final deviations (B, 3, H, W), objective trajectory (steps, B), snapshots of the
    deviations every ``snapshot_every`` steps (n, B, 3, H, W) and their step numbers."""

    deviations: torch.Tensor
    trajectory: torch.Tensor
    snapshots: torch.Tensor
    snapshot_steps: list[int]
    cancelled: bool = False


def optimize(
    forward: Callable[[torch.Tensor], torch.Tensor],
    weights: torch.Tensor,
    objective: Objective,
    constraints: DisplayConstraints,
    shape: tuple[int, int],
    steps: int = 256,
    lr: float = 0.05,
    param: str = "fourier",
    transforms: bool = True,
    seed: int = 0,
    z_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
    goal: torch.Tensor | None = None,
    snapshot_every: int = 32,
    progress: bool = True,
    callback: Callable[[int, torch.Tensor, torch.Tensor], bool | None] | None = None,
    description: str = "synthesizing",
) -> Optimized:
    """Maximise ``objective`` for a batch of ``len(weights)`` images.

    ``forward(luminance deviations (B, 3, H, W)) -> rates (B, N)``; ``weights`` (B, N) say
    which population members each image targets. ``z_stats`` = (mean, sd) of each neuroid's
    natural-image rate, for ``one_hot``. ``callback(step, deviations, values)`` runs after
    every step; returning True cancels (the images so far are returned).
    """
    gen = torch.Generator().manual_seed(int(seed))
    n = len(weights)
    # drawn on the CPU from the seeded generator (the same start on every device), then
    # moved to the device the population weights live on (the model's)
    image = params_mod.make(param, n, shape, gen).to(weights.device)
    opt = torch.optim.Adam(image.parameters(), lr=lr)
    jitter = RandomAffine(gen) if transforms else None
    trajectory = torch.empty(steps, n)
    snapshots, snap_steps = [], []
    cancelled = False
    bar = tqdm(range(steps), desc=description, disable=not progress, leave=False)
    for step in bar:
        d = constraints(image())
        shown = jitter(d) if jitter is not None else d
        rates = forward(shown)
        z = None if z_stats is None else (rates - z_stats[0]) / z_stats[1]
        values = objective(Batch(rates=rates, weights=weights, images=d, z=z, goal=goal))
        opt.zero_grad(set_to_none=True)
        (-values.sum()).backward()
        opt.step()
        trajectory[step] = values.detach().cpu()
        if step % snapshot_every == 0 or step == steps - 1:
            snapshots.append(d.detach().cpu().half())
            snap_steps.append(step)
        if progress:
            bar.set_postfix(objective=f"{float(values.detach().mean()):.3g}")
        if callback is not None and callback(step, d.detach(), values.detach()):
            cancelled = True
            trajectory = trajectory[: step + 1]
            break
    with torch.no_grad():
        final = constraints(image()).detach().cpu()
    return Optimized(final, trajectory, torch.stack(snapshots), snap_steps, cancelled)
