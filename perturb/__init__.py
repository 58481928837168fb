"""Perturbations of brain models: lesion, ablation, microstimulation, muscimol, optogenetics.

Each is a small class with ``attach(model) -> handle`` built on forward hooks on a region's
layer; ``rig.perturb(a, b)`` applies them inside a ``with`` block and always removes them,
``rig.apply(p)`` / ``rig.clear()`` keep them on. ``compare`` measures an effect against
matched random controls: the documented way to report a perturbation.
"""

from perturb.ablation import Ablation, DirectionalAblation
from perturb.base import Handle, Perturbation, UnitMaps
from perturb.effects import Effect, compare
from perturb.spatial import Lesion, Microstimulation, Muscimol, Optogenetic, preferred_site

__all__ = [
    "Ablation",
    "DirectionalAblation",
    "Effect",
    "Handle",
    "Lesion",
    "Microstimulation",
    "Muscimol",
    "Optogenetic",
    "Perturbation",
    "UnitMaps",
    "compare",
    "preferred_site",
]
