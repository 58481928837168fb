"""Analyses above the rig: tuning and selectivity of recordings, and perturbation effects
measured against matched controls (``compare``, the documented way to report one)."""

from insilico.analysis.effects import Effect, compare, control_statistics
from insilico.analysis.selectivity import preferred_site, unit_dprime
from insilico.analysis.tuning import orientation_selectivity, tuning_curve

__all__ = [
    "Effect",
    "compare",
    "control_statistics",
    "orientation_selectivity",
    "preferred_site",
    "tuning_curve",
    "unit_dprime",
]
