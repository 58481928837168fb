"""Perturbations of brain models (lesion, ablation, microstimulation, inactivation).

Perturbations are reversible forward hooks on a brain model's network, attached by
``rig.perturb(...)``; see DESIGN.md (Perturbations).
"""
