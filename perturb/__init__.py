"""Perturbations of brain models: lesion, ablation, microstimulation, muscimol, optogenetics.

Each is a small class with ``attach(model) -> handle`` built on forward hooks on a region's
layer; ``rig.perturb(a, b)`` applies them inside a ``with`` block and always removes them,
``rig.apply(p)`` / ``rig.clear()`` keep them on. Measuring an effect against matched random
controls runs a rig, so it sits above the rig: ``insilico.analysis.compare``.
"""

from perturb.ablation import Ablation, DirectionalAblation
from perturb.base import Handle, Perturbation, UnitMaps
from perturb.inactivation import Lesion, Muscimol, Optogenetic
from perturb.microstimulation import Microstimulation

__all__ = [
    "Ablation",
    "DirectionalAblation",
    "Handle",
    "Lesion",
    "Microstimulation",
    "Muscimol",
    "Optogenetic",
    "Perturbation",
    "UnitMaps",
]
