"""Microstimulation on the cortical sheet: current sets the activated volume (Stoney et al.
1968), pulse rate and train duration the added rate. Every constant names its source."""

from __future__ import annotations

import math

import numpy as np
import torch

from insilico.brain import BrainModel
from perturb.base import UnitMaps, check_nonnegative
from perturb.sheet import SheetPerturbation, unit_footprint_mm

# --- microstimulation ------------------------------------------------------------------------
#: current-distance constant K in I = K r^2: r (mm) is the radius within which a current I
#: (µA) directly activates neurons (Stoney, Thompson & Asanuma 1968, J Neurophysiol 31:659);
#: 1292 µA/mm^2 lies in the 100-4000 µA/mm^2 range reviewed by Tehovnik 1996 (J Neurosci
#: Methods 65:1; the table entry was not verified here). 1 µA -> r = 28 µm, 50 µA -> 197 µm.
STONEY_K_UA_PER_MM2 = 1292.0
#: response window (ms) over which an added rate is averaged: the rig's default time bin
#: (70-170 ms after onset). A train shorter than the window adds proportionally less.
MICROSTIM_WINDOW_MS = 100.0
#: spikes per pulse of a directly activated neuron: one (the definition of direct activation;
#: Histed, Bonin & Reid 2009, Neuron 63:508 show the activated set is sparse and distributed,
#: which this population model averages over)
SPIKES_PER_PULSE = 1.0


class Microstimulation(SheetPerturbation):
    """An electrode at ``at_mm`` passing ``current_ua`` µA pulses at ``pulse_hz`` for
    ``duration_ms``.

    Current sets the activated volume: neurons within r = sqrt(I / K) of the tip are
    directly activated (Stoney et al. 1968, ``STONEY_K_UA_PER_MM2``). A model unit stands for
    the neurons of its patch of sheet (a Gaussian footprint of the area per unit), so the
    fraction of its neurons activated is the share of that footprint inside the activated disc
    — a soft edge, and at 1 µA (r = 28 µm) a small fraction of the tip unit only. Each
    activated neuron fires one spike per pulse, averaged over the response window: added drive
    = fraction * pulse_hz * min(duration_ms / 100 ms, 1) spikes/s, which then saturates at
    max_hz through the rate function. Effects grow monotonically with current, pulse rate and
    duration; zero in any of them changes nothing.
    """

    citation = (
        "Stoney et al. 1968 (I = K r^2); one spike per pulse in the activated volume "
        "(Histed et al. 2009)"
    )

    def __init__(
        self,
        region: str,
        at_mm: tuple[float, float],
        current_ua: float,
        pulse_hz: float = 200.0,
        duration_ms: float = 100.0,
        hemisphere: str = "left",
        spread_scale: float = 1.0,
    ) -> None:
        self._place_on_sheet(region, at_mm, hemisphere, spread_scale)
        self.current_ua = check_nonnegative("current_ua", current_ua, "µA")
        self.pulse_hz = check_nonnegative("pulse_hz", pulse_hz, "Hz")
        self.duration_ms = check_nonnegative("duration_ms", duration_ms, "ms")

    @property
    def radius_mm(self) -> float:
        """Radius of direct activation r = sqrt(I / K) in mm."""
        return math.sqrt(self.current_ua / STONEY_K_UA_PER_MM2)

    def activated_fraction(self, model: BrainModel) -> torch.Tensor:
        """Fraction of each unit's neurons inside the activated disc: P(|X| < r) for X a
        2-D Gaussian (the unit's footprint, sigma from the area per unit) centred d away."""
        from scipy.stats import ncx2

        d = self._distance(model).numpy().astype(np.float64)
        if self.radius_mm == 0:
            return torch.zeros(len(d))
        sigma = unit_footprint_mm(model, self.region) / self.spread_scale
        frac = np.zeros_like(d)
        near = np.isfinite(d) & (d < self.radius_mm + 8 * sigma)
        frac[near] = ncx2.cdf(
            (self.radius_mm / sigma[near]) ** 2, df=2, nc=(d[near] / sigma[near]) ** 2
        )
        return torch.as_tensor(frac, dtype=torch.float32)

    def drive_hz(self, model: BrainModel) -> torch.Tensor:
        """Added drive (spikes/s) of every unit (flat unit order), before saturation."""
        per_neuron = (
            SPIKES_PER_PULSE * self.pulse_hz * min(self.duration_ms / MICROSTIM_WINDOW_MS, 1.0)
        )
        return self.activated_fraction(model) * per_neuron

    def unit_maps(self, model: BrainModel) -> UnitMaps:
        drive = self.drive_hz(model)
        return UnitMaps(torch.ones_like(drive), drive, torch.ones_like(drive))

    def _at(self, site: tuple[float, float], hemisphere: str, scale: float) -> Microstimulation:
        return Microstimulation(
            self.region,
            site,
            self.current_ua,
            self.pulse_hz,
            self.duration_ms,
            hemisphere,
            scale,
        )
