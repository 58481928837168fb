"""Brain models: networks committed to visual degrees and to regions V1, V2, V4 and IT."""

from insilico.brain.commitments import REGIONS, Commitment, RegionCommitment
from insilico.brain.model import BrainModel
from insilico.brain.units import RegionUnits
from insilico.brain.zoo import NotBrainLikeWarning, load_model, models

__all__ = [
    "REGIONS",
    "BrainModel",
    "Commitment",
    "NotBrainLikeWarning",
    "RegionCommitment",
    "RegionUnits",
    "load_model",
    "models",
]
