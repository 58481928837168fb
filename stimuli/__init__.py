"""Stimuli in degrees of visual angle: StimulusSet, Display geometry and generators."""

from stimuli.display import Display
from stimuli.generators import (
    blank,
    blend,
    concat,
    equate,
    from_arrays,
    from_folder,
    gabors,
    gratings,
    natural,
    natural_equated,
    pink_noise,
    white_noise,
)
from stimuli.stimulus_set import StimulusSet

__all__ = [
    "Display",
    "StimulusSet",
    "blank",
    "blend",
    "concat",
    "equate",
    "from_arrays",
    "from_folder",
    "gabors",
    "gratings",
    "natural",
    "natural_equated",
    "pink_noise",
    "white_noise",
]
