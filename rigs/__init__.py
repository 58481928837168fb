"""Virtual rigs: present stimuli to a brain model, implant arrays, record (and perturb)."""

from rigs.arrays import SiteArray, implant
from rigs.rig import Rig
from stimuli import Display

__all__ = ["Display", "Rig", "SiteArray", "implant"]
