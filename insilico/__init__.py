"""insilico-lab: an in-silico experimentation lab for visual neuroscience.

``import insilico as lab`` is cheap: the public API loads lazily on first use (PEP 562), so
the low-level ``insilico.brain`` modules can be imported by ``perturb`` and ``rigs``
without a cycle.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "__version__": ("recordings.format", "INSILICO_VERSION"),
    "load_model": ("insilico.brain", "load_model"),
    "models": ("insilico.brain", "models"),
    "BrainModel": ("insilico.brain", "BrainModel"),
    "Rig": ("rigs", "Rig"),
    "SiteArray": ("rigs", "SiteArray"),
    "Display": ("stimuli", "Display"),
    "StimulusSet": ("stimuli", "StimulusSet"),
    "stimuli": ("stimuli", None),
    "recordings": ("recordings", None),
    "perturb": ("perturb", None),
    "rigs": ("rigs", None),
    "view": ("insilico.viewer", "view"),
    "Experiment": ("insilico.experiments", "Experiment"),
    "experiments": ("insilico.experiments", None),
    "analysis": ("insilico.analysis", None),
    "animals": ("insilico.animals", None),
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = importlib.import_module(module)
        if attr is not None:
            value = getattr(value, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'insilico' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
