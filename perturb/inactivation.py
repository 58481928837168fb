"""Inactivation on the cortical sheet: lesion, muscimol and optogenetic silencing.

Every constant below names its source. Positions and hemispheres as in ``perturb.sheet``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from insilico.brain import BrainModel
from perturb.base import (
    UnitMaps,
    check_at_mm,
    check_nonnegative,
    resolve_units,
)
from perturb.sheet import SheetPerturbation, check_hemisphere

# --- muscimol ------------------------------------------------------------------------------
#: half-suppression radius (mm) of a 1 µl muscimol injection. The in-silico muscimol module
#: (Schrimpf et al. 2024 code, "effects based on 1 µL (Arikan et al. 2002)") suppresses rates
#: by max(1 - exp(-d^2 / (2 * 1.17 mm^2)), 0) at 1 µl, which halves them at
#: d = sqrt(2 * 1.17 * ln 2) = 1.27 mm; we keep that calibration point. Arikan et al. 2002
#: (J Neurosci Methods 118:51) measured fluorescent-muscimol spread of the order of 1-3 mm in
#: macaque and rat cortex (their figure values not verified here).
MUSCIMOL_R1_MM = math.sqrt(2 * 1.17 * math.log(2))
#: spread exponent: a drug volume V diffusing spherically fills a radius proportional to
#: V^(1/3) (sphere volume = 4/3 pi r^3, tortuosity and uptake aside): r(V) = R1 (V / 1 µl)^(1/3)
MUSCIMOL_SPREAD_EXPONENT = 1.0 / 3.0
#: edge sharpness: rate factor f(d) = 1 - 2^(-(d / r(V))^4): exactly 0 at the injection
#: centre for any volume > 0, 1/2 at r(V), > 0.97 beyond 1.5 r(V) (lab choice of soft edge)
MUSCIMOL_EDGE_POWER = 4.0

# --- optogenetics ---------------------------------------------------------------------------
#: optical fibre core radius (mm): 200 µm-core fibres are the usual choice in macaque
#: optogenetics (e.g. Afraz et al. 2015, PNAS 112:6730; core size not verified here)
OPTO_FIBRE_RADIUS_MM = 0.1
#: fibre numerical aperture and tissue refractive index: light leaves the fibre in a cone of
#: half-angle asin(NA / n) (Aravanis et al. 2007, J Neural Eng 4:S143, model of light
#: spread; NA 0.39 and n = 1.36 are typical values, not from that paper's tables)
OPTO_NA = 0.39
TISSUE_REFRACTIVE_INDEX = 1.36
#: attenuation length (mm) of green (~530 nm) light in cortex by scattering and absorption,
#: order of magnitude from the Kubelka-Munk fits in Aravanis et al. 2007 (value approximate,
#: not verified here)
OPTO_ATTENUATION_MM = 0.25
#: irradiance (mW/mm^2) that halves a neuron's rate through ArchT/Arch; Chow et al. 2010
#: (Nature 463:98) report near-complete silencing at irradiances of a few mW/mm^2 and above
#: (exact half-point not verified here)
OPTO_HALF_IRRADIANCE_MW_MM2 = 1.0


class Lesion(SheetPerturbation):
    """Remove a whole region, a disc of sheet (``at_mm``, ``radius_mm`` on ``hemisphere``) or
    listed neuroids.

    Lesioned units output zero to every downstream layer and fire no spikes (spontaneous
    rate included) while the lesion is attached.
    """

    citation = "anatomical lesion: outputs removed"

    def __init__(
        self,
        region: str,
        at_mm: tuple[float, float] | None = None,
        radius_mm: float | None = None,
        neuroids: Any = None,
        hemisphere: str = "left",
        spread_scale: float = 1.0,
    ) -> None:
        self.region = region
        if (at_mm is None) != (radius_mm is None):
            raise ValueError("a disc lesion needs both at_mm and radius_mm")
        if at_mm is not None and neuroids is not None:
            raise ValueError("give a disc (at_mm, radius_mm) or neuroids, not both")
        self.at_mm = None if at_mm is None else check_at_mm(at_mm)
        self.radius_mm = (
            None if radius_mm is None else check_nonnegative("radius_mm", radius_mm, "mm")
        )
        self.hemisphere = check_hemisphere(hemisphere)
        self.spread_scale = check_nonnegative("spread_scale", spread_scale, "")
        self.neuroids = (
            None
            if neuroids is None
            else [
                v.item() if isinstance(v, np.generic) else v for v in np.asarray(neuroids).tolist()
            ]
        )

    def mask(self, model: BrainModel) -> torch.Tensor:
        """True for every lesioned unit (flat unit order)."""
        n = len(model.region_units(self.region).table)
        if self.at_mm is not None:
            return self._distance(model) <= self.radius_mm
        if self.neuroids is not None:
            m = torch.zeros(n, dtype=torch.bool)
            m[torch.as_tensor(resolve_units(model, self.region, self.neuroids))] = True
            return m
        return torch.ones(n, dtype=torch.bool)

    def unit_maps(self, model: BrainModel) -> UnitMaps:
        keep = (~self.mask(model)).float()
        return UnitMaps(keep, torch.zeros_like(keep), keep)

    def _at(self, site: tuple[float, float], hemisphere: str, scale: float) -> Lesion:
        return Lesion(self.region, site, self.radius_mm, hemisphere=hemisphere, spread_scale=scale)

    def random_control(self, model: BrainModel, rng: np.random.Generator) -> Lesion:
        if self.at_mm is not None:
            return super().random_control(model, rng)
        if self.neuroids is not None:
            n = len(model.region_units(self.region).table)
            units = rng.choice(n, size=len(self.neuroids), replace=False)
            return Lesion(self.region, neuroids=np.sort(units))
        raise NotImplementedError("a whole-region lesion has no matched random control")


class Muscimol(SheetPerturbation):
    """GABA-A agonist injection of ``volume_ul`` µl at ``at_mm`` on ``hemisphere``'s sheet.

    The drug spreads spherically: the silenced radius is r(V) = 1.27 mm (V / 1 µl)^(1/3)
    (``MUSCIMOL_R1_MM``, ``MUSCIMOL_SPREAD_EXPONENT``) and a unit at distance d keeps the rate
    factor f(d) = 1 - 2^(-(d / r)^4): exactly 0 at the centre for any volume > 0, 1/2 at r,
    ~1 far away. Silenced units pass f * activation downstream and fire f * R(u) (one
    divisive effect; see perturb.base). The volume sets the spread, never the depth.
    """

    citation = (
        "spherical spread r ∝ V^(1/3), 1 µl calibrated to the in-silico muscimol module "
        "(Schrimpf et al. 2024; Arikan et al. 2002)"
    )

    def __init__(
        self,
        region: str,
        at_mm: tuple[float, float],
        volume_ul: float = 1.0,
        hemisphere: str = "left",
        spread_scale: float = 1.0,
    ) -> None:
        self._place_on_sheet(region, at_mm, hemisphere, spread_scale)
        self.volume_ul = check_nonnegative("volume_ul", volume_ul, "µl")

    @property
    def radius_mm(self) -> float:
        """Half-suppression radius r(V) in mm (before ``spread_scale``)."""
        return MUSCIMOL_R1_MM * self.volume_ul**MUSCIMOL_SPREAD_EXPONENT

    def factor(self, model: BrainModel) -> torch.Tensor:
        """Rate factor of every unit (1 = untouched, 0 = silent)."""
        d = self._distance(model)
        if self.volume_ul == 0:
            return torch.ones_like(d)
        return 1 - torch.pow(2.0, -((d / self.radius_mm) ** MUSCIMOL_EDGE_POWER))

    def unit_maps(self, model: BrainModel) -> UnitMaps:
        f = self.factor(model)
        return UnitMaps(f, torch.zeros_like(f), f)

    def _at(self, site: tuple[float, float], hemisphere: str, scale: float) -> Muscimol:
        return Muscimol(self.region, site, self.volume_ul, hemisphere, scale)


class Optogenetic(SheetPerturbation):
    """Light through a fibre at ``at_mm`` (``power_mw`` mW out of the fibre) on a region
    expressing an opsin: ``mode="suppress"`` (ArchT/Arch, Chow et al. 2010) multiplies
    rates by 1 - E/(E + E50); ``mode="activate"`` (ChR2) adds E/(E + E50) * max_hz spikes/s.

    Irradiance E(d) = P / (pi (r_f + d tan theta)^2) * exp(-d / l) mW/mm^2: the fibre's
    output spread over its light cone (half-angle asin(NA / n)) and attenuated in tissue
    (Aravanis et al. 2007's geometry), d the distance from the fibre axis on the sheet.
    More power suppresses more and further; constants and their sources are module-level
    ``OPTO_*`` values.
    """

    citation = "Chow et al. 2010 (ArchT); light cone + attenuation after Aravanis et al. 2007"

    def __init__(
        self,
        region: str,
        at_mm: tuple[float, float],
        power_mw: float = 1.0,
        mode: str = "suppress",
        hemisphere: str = "left",
        spread_scale: float = 1.0,
    ) -> None:
        if mode not in ("suppress", "activate"):
            raise ValueError(f"mode must be 'suppress' or 'activate', got {mode!r}")
        self._place_on_sheet(region, at_mm, hemisphere, spread_scale)
        self.power_mw = check_nonnegative("power_mw", power_mw, "mW")
        self.mode = mode

    def irradiance(self, model: BrainModel) -> torch.Tensor:
        """Irradiance (mW/mm^2) at every unit."""
        d = self._distance(model)
        tan = math.tan(math.asin(OPTO_NA / TISSUE_REFRACTIVE_INDEX))
        area = math.pi * (OPTO_FIBRE_RADIUS_MM + d * tan) ** 2
        return self.power_mw / area * torch.exp(-d / OPTO_ATTENUATION_MM)

    def unit_maps(self, model: BrainModel) -> UnitMaps:
        e = self.irradiance(model)
        fraction = torch.where(torch.isfinite(e), e / (e + OPTO_HALF_IRRADIANCE_MW_MM2), 0.0)
        if self.mode == "suppress":
            f = 1 - fraction
            return UnitMaps(f, torch.zeros_like(f), f)
        drive = fraction * model.region(self.region).max_hz
        return UnitMaps(torch.ones_like(drive), drive, torch.ones_like(drive))

    def _at(self, site: tuple[float, float], hemisphere: str, scale: float) -> Optogenetic:
        return Optogenetic(self.region, site, self.power_mw, self.mode, hemisphere, scale)
