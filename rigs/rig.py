"""The virtual rig: a brain model in front of a display, with implants and perturbations.

``Rig`` holds the model, the screen it fixates and the live perturbations; its experiment
methods are the functions of the modules below it, each of which takes a rig:
``record`` (``rigs.recording``), ``fit_task``/``behave`` (``rigs.behavior``),
``map_neurons`` (``rigs.mapping``) and ``synthesize`` (``rigs.synthesis``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from insilico.brain import BrainModel
from perturb.base import Perturbation
from rigs import behavior, mapping, recording, synthesis
from rigs.arrays import SiteArray, implant
from rigs.screen import OffScreenWarning, Screen
from rigs.targets import rates, resolve_targets
from stimuli import Display, StimulusSet

__all__ = ["OffScreenWarning", "Rig"]


class Rig:
    """A brain model in front of a display, fixating ``fixation_deg`` (from screen centre).

    Stimulus positions are in degrees relative to fixation, x right, y up. The model sees a
    square window ``visual_degrees`` wide centred on fixation (``rig.screen``).
    """

    def __init__(
        self,
        model: BrainModel,
        display: Display | None = None,
        fixation_deg: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        if not isinstance(model, BrainModel):
            raise TypeError(
                f"model must be a BrainModel (lab.load_model(...)), got {type(model).__name__}"
            )
        self.model = model
        display = display if display is not None else Display()
        #: what the model sees of the display (presentation geometry)
        self.screen = Screen(display, fixation_deg, model.input_size, model.visual_degrees)
        self.display = self.screen.display
        self.fixation_deg = self.screen.fixation_deg
        #: live perturbations: (perturbation, hook handle, applied persistently?) in order
        self._live: list[tuple[Perturbation, Any, bool]] = []

    def __repr__(self) -> str:
        d = self.display
        return (
            f"Rig({self.model.name!r}, display {d.resolution[0]}x{d.resolution[1]} px at "
            f"{d.distance_cm:g} cm, fixation {self.fixation_deg} deg)"
        )

    # geometry ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """JSON-safe rig geometry for provenance."""
        return {
            "display": self.display.to_dict(),
            "fixation_deg": list(self.fixation_deg),
            "visual_degrees": self.model.visual_degrees,
            "input_size": self.model.input_size,
        }

    def screen_px_to_deg(self, u: float, v: float) -> tuple[float, float]:
        """Monitor pixel (column u, row v) -> degrees relative to fixation (atan geometry)."""
        return self.screen.px_to_deg(u, v)

    def check_visible(self, stimuli: StimulusSet) -> None:
        """Raise if a stimulus lies entirely outside the model's field of view; warn if part
        of one lies off the physical display (that part is not shown)."""
        self.screen.check_visible(stimuli)

    def present(
        self, stimuli: StimulusSet, index: Sequence[int] | slice | None = None
    ) -> torch.Tensor:
        """Render stimuli as the model sees them: ``(n, 3, N, N)`` pixel values in [0, 1]
        (see :meth:`rigs.screen.Screen.present`)."""
        return self.screen.present(stimuli, index)

    # perturbations ----------------------------------------------------------------------
    @property
    def perturbations(self) -> list[Perturbation]:
        """The perturbations whose hooks are live now, in the order applied (provenance is
        read from here, so it always equals the live hooks)."""
        return [p for p, _, _ in self._live]

    def _attach(self, perturbations: Sequence[Any], persistent: bool) -> list:
        for p in perturbations:
            if not isinstance(p, Perturbation):
                raise TypeError(
                    f"expected perturbations (lab.perturb.Muscimol(...), ...), got {p!r}"
                )
        entries = []
        try:
            for p in perturbations:
                entry = (p, p.attach(self.model, present=self.present), persistent)
                entries.append(entry)
                self._live.append(entry)
        except BaseException:
            self._detach(entries)
            raise
        return entries

    def _detach(self, entries: Sequence[tuple[Perturbation, Any, bool]]) -> None:
        for entry in reversed(entries):
            if any(entry is e for e in self._live):
                entry[1].remove()
                self._live = [e for e in self._live if e is not entry]

    @contextmanager
    def perturb(self, *perturbations: Perturbation) -> Iterator[Rig]:
        """Apply ``perturbations`` inside a ``with`` block; they are removed on exit, also
        after an exception. Recordings made inside carry them in their provenance; an
        ``apply`` inside the block outlives it, a ``clear`` inside it leaves the block's own."""
        entries = self._attach(perturbations, persistent=False)
        try:
            yield self
        finally:
            self._detach(entries)

    def apply(self, *perturbations: Perturbation) -> None:
        """Apply ``perturbations`` until ``clear()`` (persistent, e.g. a lesioned animal)."""
        self._attach(perturbations, persistent=True)

    def clear(self) -> None:
        """Remove every perturbation applied with ``apply`` (those of an enclosing
        ``with rig.perturb(...)`` block stay until the block ends)."""
        self._detach([e for e in self._live if e[2]])

    # rates ------------------------------------------------------------------------------
    def rates(
        self,
        images: torch.Tensor,
        targets: Any,
        grad: bool = False,
        clamp: bool = True,
        precision: str = "float32",
    ) -> torch.Tensor:
        """Firing rates (spikes/s) of ``targets`` for model-input ``images``: ``(n, neuroids)``.
        ``clamp=False`` gives the unrectified drive; ``grad=True`` keeps the graph."""
        resolved = resolve_targets(self.model, targets)
        return rates(self.model, images, resolved, grad=grad, clamp=clamp, precision=precision)

    def region_rates(
        self, stimuli: StimulusSet, region: str, batch_size: int = 64, progress: bool = False
    ) -> torch.Tensor:
        """Expected rates (spikes/s) of every unit of ``region``: (stimuli, units)."""
        self.screen.check_visible(stimuli)
        target = resolve_targets(self.model, region)
        out = []
        for lo in tqdm(range(0, len(stimuli), batch_size), disable=not progress, leave=False):
            idx = np.arange(lo, min(lo + batch_size, len(stimuli)))
            out.append(rates(self.model, self.present(stimuli, idx), target).float().cpu())
        return torch.cat(out)

    # experiments: functions of the modules below that take the rig as their first argument
    record = recording.record
    fit_task = behavior.fit_task
    behave = behavior.behave
    map_neurons = mapping.map_neurons
    synthesize = synthesis.synthesize

    # arrays -----------------------------------------------------------------------------
    def implant(self, region: str, n_sites: int, **kwargs: Any) -> SiteArray:
        """Implant an ``n_sites`` array in ``region`` of this rig's model; keywords
        ``at_deg``, ``at_mm``, ``pitch_mm`` (default the Utah pitch, 0.4 mm), ``seed``,
        ``hemisphere`` as in :func:`rigs.arrays.implant`."""
        return implant(self.model, region, n_sites, **kwargs)

    def units(self, region: str) -> pd.DataFrame:
        """The unit table of ``region`` (RFs in deg, tissue positions in mm)."""
        return self.model.units(region)
