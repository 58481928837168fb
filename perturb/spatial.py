"""Perturbations placed on the cortical sheet: lesion, muscimol, optogenetics, microstimulation.

Positions are in mm on one hemisphere's sheet (``model.units(region)`` columns ``tissue_x_mm``,
``tissue_y_mm``, ``hemisphere``; the frame's corner is (0, 0)); a perturbation acts on the
units of its ``hemisphere`` only (default "left", the right visual field), so it never
crosses the vertical meridian. Effects are computed per unit from its distance ``d`` (mm) to
``at_mm``. Every constant below names its source; matched controls are tissue-matched (same
number of affected units, sites drawn area-uniformly; ``_Spatial.random_control``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from insilico.brain import BrainModel
from perturb.base import (
    Perturbation,
    UnitMaps,
    check_at_mm,
    check_nonnegative,
    resolve_units,
    sheet_distance_mm,
)

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

#: the number of affected units of a control matches the real perturbation's within this
#: fraction (or one unit), by scaling the control's spread (see ``Perturbation.matched``)
MATCH_TOLERANCE = 0.05


def _hemisphere(value: str) -> str:
    if value not in ("left", "right"):
        raise ValueError(f"hemisphere must be 'left' or 'right', got {value!r}")
    return value


#: neighbours used to estimate each unit's share of the sheet
FOOTPRINT_NEIGHBOURS = 8
_FOOTPRINTS: dict[int, tuple[Any, np.ndarray]] = {}


def unit_footprint_mm(model: BrainModel, region: str) -> np.ndarray:
    """Per unit, the radius sigma (mm) of the 2-D Gaussian standing for its neurons: its local
    share of the sheet, area = pi r_k^2 / k from the distance r_k to its k-th nearest unit of
    the same hemisphere, equals 2 pi sigma^2. Local, because unit density varies over a
    retinotopic sheet (hypercolumn area ∝ magnification^2)."""
    from scipy.spatial import cKDTree

    ru = model.region_units(region)
    cached = _FOOTPRINTS.get(id(ru))
    if cached is not None and cached[0] is ru:
        return cached[1]
    t = ru.table
    xy = t[["tissue_x_mm", "tissue_y_mm"]].to_numpy(dtype=np.float64)
    sigma = np.empty(len(t))
    k = FOOTPRINT_NEIGHBOURS
    for hemi in ("left", "right"):
        mine = np.flatnonzero(t["hemisphere"].to_numpy() == hemi)
        if len(mine) == 0:
            continue
        kk = min(k, len(mine) - 1)
        if kk < 1:
            sigma[mine] = 0.1
            continue
        dist, _ = cKDTree(xy[mine]).query(xy[mine], k=kk + 1)
        r_k = np.maximum(dist[:, -1], 1e-6)
        sigma[mine] = np.sqrt(np.pi * r_k**2 / kk / (2 * np.pi))
    _FOOTPRINTS[id(ru)] = (ru, sigma)
    return sigma


def _random_site(
    model: BrainModel, region: str, rng: np.random.Generator
) -> tuple[tuple[float, float], str]:
    """A site drawn uniformly over the AREA of tissue (not over units, which crowd where
    magnification is low): a uniform point of the sheet frame on a random hemisphere,
    redrawn until it lies within 2.5 footprints of its nearest unit (on tissue)."""
    ru = model.region_units(region)
    t = ru.table
    sigma = unit_footprint_mm(model, region)
    ex, ey = ru.sheet_extent_mm
    xy = t[["tissue_x_mm", "tissue_y_mm"]].to_numpy()
    hemis = t["hemisphere"].to_numpy()
    for _ in range(10_000):
        hemi = "left" if rng.random() < 0.5 else "right"
        x, y = float(rng.uniform(0, ex)), float(rng.uniform(0, ey))
        mine = np.flatnonzero(hemis == hemi)
        d = np.hypot(xy[mine, 0] - x, xy[mine, 1] - y)
        k = int(np.argmin(d))
        if d[k] <= 2.5 * sigma[mine[k]]:
            return (x, y), hemi
    raise RuntimeError(f"could not draw a site on the {region} sheet")


class _Spatial(Perturbation):
    """A perturbation centred at ``at_mm`` on one hemisphere's sheet; ``spread_scale``
    stretches its spatial profile (distances divided by it) — used to match controls."""

    at_mm: tuple[float, float]
    hemisphere: str
    spread_scale: float

    def _distance(self, model: BrainModel) -> torch.Tensor:
        d = sheet_distance_mm(model, self.region, self.at_mm, self.hemisphere)
        return d / self.spread_scale

    def _at(self, site: tuple[float, float], hemisphere: str, scale: float) -> _Spatial:
        raise NotImplementedError

    def affected(self, model: BrainModel, threshold: float | None = None) -> int:
        """Units whose effect is at least ``threshold`` (default half this perturbation's own
        peak effect): silencing 1 - factor, activation drive / max_hz."""
        e = _effect_size(self.unit_maps(model), model.region(self.region).max_hz)
        if threshold is None:
            threshold = 0.5 * float(e.max())
        return int((e >= threshold).sum()) if threshold > 0 else 0

    def random_control(self, model: BrainModel, rng: np.random.Generator) -> _Spatial:
        """The same dose at an area-uniformly drawn site, its spread scaled so that it affects
        the same number of units (within MATCH_TOLERANCE) as this one: tissue-matched, not
        dose-matched. Near an edge the spread grows until the count matches; a site that
        cannot match (sheet too small there) is redrawn."""
        e = _effect_size(self.unit_maps(model), model.region(self.region).max_hz)
        threshold = 0.5 * float(e.max())
        target = int((e >= threshold).sum()) if threshold > 0 else 0
        for _ in range(50):
            site, hemi = _random_site(model, self.region, rng)
            control = self._at(site, hemi, self.spread_scale)
            if target == 0:
                return control
            lo, hi = 0.0, None
            scale = self.spread_scale
            for _ in range(40):
                n = control.affected(model, threshold)
                if abs(n - target) <= max(1, MATCH_TOLERANCE * target):
                    return control
                if n < target:
                    lo = scale
                    scale = scale * 2 if hi is None else (scale + hi) / 2
                else:
                    hi = scale
                    scale = (lo + scale) / 2
                if scale > 1e3 * self.spread_scale:
                    break
                control = self._at(site, hemi, scale)
        raise RuntimeError(
            f"could not place a control affecting {target} units of {self.region}; the "
            "perturbation covers more tissue than a hemisphere offers elsewhere"
        )


def _effect_size(maps: UnitMaps, max_hz: float) -> torch.Tensor:
    """Per-unit size of an effect in [0, 1]: silencing 1 - factor, activation drive/max_hz."""
    return torch.maximum(1 - maps.silencing, (maps.drive_hz / max_hz).clamp(0, 1))


class Lesion(_Spatial):
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
        self.hemisphere = _hemisphere(hemisphere)
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


class Muscimol(_Spatial):
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
        self.region = region
        self.at_mm = check_at_mm(at_mm)
        self.volume_ul = check_nonnegative("volume_ul", volume_ul, "µl")
        self.hemisphere = _hemisphere(hemisphere)
        self.spread_scale = check_nonnegative("spread_scale", spread_scale, "")

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


class Optogenetic(_Spatial):
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
        self.region = region
        self.at_mm = check_at_mm(at_mm)
        self.power_mw = check_nonnegative("power_mw", power_mw, "mW")
        self.mode = mode
        self.hemisphere = _hemisphere(hemisphere)
        self.spread_scale = check_nonnegative("spread_scale", spread_scale, "")

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


class Microstimulation(_Spatial):
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
        self.region = region
        self.at_mm = check_at_mm(at_mm)
        self.current_ua = check_nonnegative("current_ua", current_ua, "µA")
        self.pulse_hz = check_nonnegative("pulse_hz", pulse_hz, "Hz")
        self.duration_ms = check_nonnegative("duration_ms", duration_ms, "ms")
        self.hemisphere = _hemisphere(hemisphere)
        self.spread_scale = check_nonnegative("spread_scale", spread_scale, "")

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


def unit_dprime(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Signed d' per unit (column) between two sets of rates (rows = stimuli, spikes/s):
    (mean_a - mean_b) / pooled sd, with 1e-6 (spikes/s)^2 added to the pooled variance so a
    unit silent in both sets gives 0, not NaN. The one d' of the lab (category selectivity,
    preferred sites)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    pooled_sd = np.sqrt(0.5 * (a.var(0) + b.var(0)) + 1e-6)
    return (a.mean(0) - b.mean(0)) / pooled_sd


def preferred_site(
    rig: Any,
    region: str,
    stimuli: Any,
    labels: Any,
    prefer: str,
    radius_mm: float = 1.0,
    hemisphere: str = "left",
) -> tuple[float, float]:
    """The cortical-sheet site (x, y) in mm of ``region`` whose units prefer the stimuli
    labelled ``prefer`` most: each unit's d' (``prefer`` against the rest, expected rates) is
    averaged within ``radius_mm`` of candidate sites on the units' own positions — how a
    category patch is found before microstimulating it (Afraz et al. 2006).

    ``labels`` is a column of ``stimuli.meta`` or one label per stimulus. The search runs on
    ``hemisphere``'s sheet (the site is for a perturbation on that hemisphere).
    """
    hemisphere = _hemisphere(hemisphere)
    labels = np.asarray(stimuli.meta[labels] if isinstance(labels, str) else labels).astype(str)
    if len(labels) != len(stimuli):
        raise ValueError(f"got {len(labels)} labels for {len(stimuli)} stimuli")
    is_pref = labels == str(prefer)
    if not is_pref.any() or is_pref.all():
        raise ValueError(
            f"prefer={prefer!r} must label some but not all stimuli; labels are "
            f"{', '.join(sorted(set(labels)))}"
        )
    if not radius_mm > 0:
        raise ValueError(f"radius_mm must be > 0 mm, got {radius_mm!r}")
    rates = rig.region_rates(stimuli, region).numpy().astype(np.float64)
    a, b = rates[is_pref], rates[~is_pref]
    dprime = unit_dprime(a, b)
    table = rig.model.units(region)
    mine = (table["hemisphere"] == hemisphere).to_numpy()
    xy = table[["tissue_x_mm", "tissue_y_mm"]].to_numpy(dtype=float)[mine]
    dprime = dprime[mine]
    grid = xy[:: max(1, len(xy) // 400)]
    score = [dprime[np.hypot(*(xy - g).T) < radius_mm].mean() for g in grid]
    best = grid[int(np.nanargmax(score))]
    return float(best[0]), float(best[1])
