"""Stimuli in degrees of visual angle: StimulusSet, Display geometry and the stimulus kinds
(parametric, noise, images, natural photographs) with the operations that combine sets."""

from stimuli.display import Display
from stimuli.faces import faces
from stimuli.images import from_arrays, from_folder
from stimuli.noise import pink_noise, white_noise
from stimuli.operations import blend, concat, equate
from stimuli.parametric import blank, gabors, gratings
from stimuli.photographs import natural, natural_equated
from stimuli.stimulus_set import StimulusSet

__all__ = [
    "Display",
    "StimulusSet",
    "blank",
    "blend",
    "concat",
    "equate",
    "faces",
    "from_arrays",
    "from_folder",
    "gabors",
    "gratings",
    "natural",
    "natural_equated",
    "pink_noise",
    "white_noise",
]
