"""Stimulus synthesis by gradient descent: objectives, parameterizations, transforms,
display constraints and the loop, one idea per module (after Lucent's layout)."""

from stimuli.synthesis.constraints import DisplayConstraints
from stimuli.synthesis.loop import Optimized, optimize
from stimuli.synthesis.objectives import (
    Batch,
    Objective,
    drive,
    l2,
    match,
    one_hot,
    silence,
    total_variation,
)
from stimuli.synthesis.result import SynthesisResult, read_manifest

open_result = SynthesisResult.open

__all__ = [
    "Batch",
    "DisplayConstraints",
    "Objective",
    "Optimized",
    "SynthesisResult",
    "drive",
    "l2",
    "match",
    "one_hot",
    "open_result",
    "optimize",
    "read_manifest",
    "silence",
    "total_variation",
]
