"""A virtual animal: a network the user cannot see inside, recorded like a monkey.

``VirtualAnimal`` builds its own brain model (by default EfficientNet-Lite2, trained separately
from the lab's Lite0) and an implanted array of ``n_sites`` recording sites in one region. It
answers only ``show(stimuli)``: a recording in the lab's format with opaque site ids, spike
counts with over-dispersed noise, and a fixed budget of trials. Mapping its sites onto another
model (``rig.map_neurons``) is then the honest rehearsal of a real session: the mapping model
is not the animal, its sites are not the animal's units, and its noise is not Poisson.

A site (the constants below are lab choices, not fitted to data):

- **a sparse non-negative mixture of units**: ``MIXTURE_SIZE`` (1-5) units of the region, with
  weights from a flat Dirichlet (they sum to 1; one unit often dominates), each of a random
  channel, the unit of that channel whose RF centre lies nearest a point jittered by
  ``JITTER_DEG`` (s.d. per axis) around the site's place; the places of the sites are spread
  uniformly over a disc of radius ``SPREAD_DEG`` around the array's ``at_deg``, as on an
  implanted array whose sites see neighbouring parts of the visual field;
- **a saturating rate**: drive ``d = spont + gain * (sum_j w_j u_j - baseline)`` with ``u_j`` the
  units' drives in spikes/s (``BrainModel.rates(clamp=False)``; ``baseline`` the region's
  spontaneous rate), and rate ``max * tanh(softplus(d) / max)`` (the lab's ``saturate``) with
  the site's own spontaneous rate ``spont`` (``SPONT_HZ``), maximum ``max`` (``MAX_HZ``) and
  ``gain`` (log-normal, median 1, log s.d. ``GAIN_LOG_SD``);
- **over-dispersed Poisson noise**: the count in ``WINDOW_MS`` is gamma-Poisson (negative
  binomial) with mean ``rate * T`` and variance ``fano * mean``, the site's Fano factor
  ``fano`` drawn from ``FANO`` (> 1: cortical counts vary more than Poisson's, Fano factors of
  about 1-2 in macaque cortex, e.g. Shadlen & Newsome 1998, J Neurosci 18:3870; Churchland et
  al. 2010, Nat Neurosci 13:369; values as commonly quoted, not verified here);
- **a fixed trial budget**: every presentation (a stimulus once) is one trial; a ``show`` that
  would exceed ``trial_budget`` raises before recording anything.

Everything is seeded: the same arguments give the same animal, and ``show`` with the same
stimuli, repeats and seed gives the same responses (noise seeded per stimulus id).
"""

from __future__ import annotations

import datetime as _dt
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr

from insilico.brain import BrainModel, load_model
from insilico.brain.model import saturate
from recordings.format import INSILICO_VERSION, as_string_array, json_attrs
from rigs.recording import as_recording
from rigs.rig import Rig
from rigs.screen import as_stimulus_set
from stimuli import StimulusSet
from stimuli.stimulus_set import check_position_deg, check_positive_int, check_seed

__all__ = ["AnimalInsides", "VirtualAnimal"]

#: units per site (inclusive range, uniform)
MIXTURE_SIZE = (1, 5)
#: radius (deg) of the disc around ``at_deg`` over which the sites' places spread
SPREAD_DEG = 1.5
#: s.d. (deg, per axis) of each unit's RF centre around its site's place
JITTER_DEG = 0.5
#: each site's spontaneous rate (spikes/s), uniform in this range
SPONT_HZ = (2.0, 12.0)
#: each site's maximum rate (spikes/s), uniform in this range
MAX_HZ = (40.0, 120.0)
#: log s.d. of each site's gain (log-normal, median 1)
GAIN_LOG_SD = 0.4
#: each site's Fano factor (variance / mean of counts), uniform in this range
FANO = (1.2, 2.0)
#: the counting window (ms after stimulus onset)
WINDOW_MS = (70.0, 170.0)
#: trials (presentations) an animal gives before it is done (about two days of a session
#: of 500 images x 4 repeats, and some synthesized images)
DEFAULT_TRIAL_BUDGET = 6000


@dataclass(frozen=True)
class AnimalInsides:
    """What a virtual animal is made of: for checking the lab, not for experiments.

    ``units[k]`` are the neuroid ids of site k's units, ``weights[k]`` their mixture weights;
    ``rates(stimuli)`` gives the sites' expected rates (stimuli, sites) in spikes/s."""

    model: BrainModel
    region: str
    units: list[list[str]]
    weights: list[np.ndarray]
    place_deg: np.ndarray
    spont_hz: np.ndarray
    max_hz: np.ndarray
    gain: np.ndarray
    fano: np.ndarray
    rates: Callable[[StimulusSet], np.ndarray]


class VirtualAnimal:
    """A virtual monkey with an array of ``n_sites`` sites in ``region`` of ``model``'s brain
    (see the module docstring). ``show(stimuli, repeats, seed)`` records from it;
    ``trials_left`` counts what its ``trial_budget`` has left. Its insides are private;
    ``reveal()`` exposes them for checking the lab only."""

    def __init__(
        self,
        model: str = "efficientnet_lite2",
        region: str = "V4",
        n_sites: int = 100,
        seed: int = 0,
        trial_budget: int = DEFAULT_TRIAL_BUDGET,
        at_deg: tuple[float, float] = (1.0, 1.0),
    ) -> None:
        if not isinstance(model, str):
            raise ValueError(f"model must be a model name (lab.models()), got {model!r}")
        if not isinstance(region, str):
            raise ValueError(f"region must be a region name, got {region!r}")
        n_sites = check_positive_int(n_sites, "n_sites")
        trial_budget = check_positive_int(trial_budget, "trial_budget")
        check_seed(seed)
        at = check_position_deg(at_deg, "at_deg")
        brain = load_model(model)
        if region not in brain.regions:
            raise ValueError(
                f"the {model} animal has no region {region!r}; its regions are "
                f"{', '.join(brain.regions)}"
            )
        half = brain.visual_degrees / 2
        if max(abs(at[0]), abs(at[1])) >= half:
            raise ValueError(f"at_deg {at} lies outside the animal's field of view (±{half:g} deg)")
        self.__model = brain
        self.__rig = Rig(brain)
        self.__region = region
        self.__seed = int(seed)
        self.__budget = trial_budget
        self.__used = 0
        self.__hemisphere = "left" if at[0] >= 0 else "right"  # the sheet of the array
        self.__build_sites(n_sites, np.asarray(at, dtype=float), np.random.default_rng(seed))

    # the sites ---------------------------------------------------------------------------
    def __build_sites(self, n: int, at: np.ndarray, rng: np.random.Generator) -> None:
        table = self.__model.units(self.__region)
        c, h, w = self.__model.layer_shape(self.__model.region(self.__region).layer)
        rf = table[["rf_x_deg", "rf_y_deg"]].to_numpy().reshape(c, h * w, 2)
        radius = SPREAD_DEG * np.sqrt(rng.uniform(size=n))
        angle = rng.uniform(0, 2 * np.pi, size=n)
        places = at + np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
        units, weights = [], []
        for place in places:
            k = int(rng.integers(MIXTURE_SIZE[0], MIXTURE_SIZE[1] + 1))
            chosen: list[int] = []
            while len(chosen) < k:
                ch = int(rng.integers(c))
                point = place + rng.normal(0, JITTER_DEG, size=2)
                pos = int(np.argmin(((rf[ch] - point) ** 2).sum(axis=1)))
                unit = ch * h * w + pos
                if unit not in chosen:
                    chosen.append(unit)
            units.append(np.array(chosen, dtype=np.int64))
            weights.append(rng.dirichlet(np.ones(k)))
        used = np.unique(np.concatenate(units))
        mix = np.zeros((len(used), n), dtype=np.float32)
        for s, (u, wt) in enumerate(zip(units, weights)):
            mix[np.searchsorted(used, u), s] = wt
        self.__units, self.__weights, self.__places = units, weights, places
        self.__used_units = used
        self.__mix = torch.from_numpy(mix)
        self.__spont = rng.uniform(*SPONT_HZ, size=n)
        self.__max = rng.uniform(*MAX_HZ, size=n)
        self.__gain = np.exp(rng.normal(0, GAIN_LOG_SD, size=n))
        self.__fano = rng.uniform(*FANO, size=n)

    def __rates(self, stimuli: StimulusSet, batch_size: int = 64) -> np.ndarray:
        """Expected rates (stimuli, sites) in spikes/s."""
        model, region = self.__model, self.__region
        layer = model.region(region).layer
        baseline = model.region(region).baseline_hz
        spont = torch.as_tensor(self.__spont, dtype=torch.float32)
        top = torch.as_tensor(self.__max, dtype=torch.float32)
        gain = torch.as_tensor(self.__gain, dtype=torch.float32)
        out = np.empty((len(stimuli), len(self.__spont)), dtype=np.float64)
        for lo in range(0, len(stimuli), batch_size):
            idx = np.arange(lo, min(lo + batch_size, len(stimuli)))
            act = model.activations(self.__rig.present(stimuli, idx), [layer])[layer]
            units = model.gather(act, self.__used_units).float().cpu()
            drive = model.rates(region, units, self.__used_units, clamp=False)
            d = spont + gain * (drive @ self.__mix - baseline)
            out[idx] = saturate(d, top).double().numpy()
        return out

    # what a user sees -------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.__model.name

    @property
    def region(self) -> str:
        return self.__region

    @property
    def n_sites(self) -> int:
        return len(self.__spont)

    @property
    def site_ids(self) -> list[str]:
        """Opaque site ids, ``site_000``, ``site_001``, ..."""
        width = max(3, len(str(self.n_sites - 1)))
        return [f"site_{k:0{width}d}" for k in range(self.n_sites)]

    @property
    def trial_budget(self) -> int:
        return self.__budget

    @property
    def trials_used(self) -> int:
        return self.__used

    @property
    def trials_left(self) -> int:
        return self.__budget - self.__used

    def __repr__(self) -> str:
        return (
            f"VirtualAnimal({self.model_name!r}, {self.region}, {self.n_sites} sites, "
            f"{self.trials_used} trials used, {self.trials_left} left)"
        )

    def show(self, stimuli: Any, repeats: int = 1, seed: int = 0) -> xr.DataArray:
        """Show ``stimuli`` (a StimulusSet or a SynthesisResult) ``repeats`` times each and
        record every site: rates (spikes/s) in the lab's recording format, dims (presentation,
        neuroid, time_bin), one bin ``WINDOW_MS``; neuroids are opaque ``site_NNN`` ids with
        no model coordinates (RFs, tissue positions NaN). Spends ``len(stimuli) * repeats``
        trials; more than ``trials_left`` is an error, raised before anything is shown.
        Noise is seeded by (animal seed, ``seed``, stimulus id)."""
        stimuli = as_stimulus_set(stimuli)
        repeats = check_positive_int(repeats, "repeats")
        check_seed(seed)
        trials = len(stimuli) * repeats
        if trials > self.trials_left:
            raise ValueError(
                f"showing {len(stimuli)} stimuli x {repeats} repeats needs {trials} trials; "
                f"the animal has {self.trials_left} of its {self.trial_budget} left"
            )
        self.__rig.screen.check_visible(stimuli)
        expected = self.__rates(stimuli)
        duration = (WINDOW_MS[1] - WINDOW_MS[0]) / 1000.0
        scale = self.__fano - 1.0  # gamma-Poisson: variance = fano * mean
        values = np.empty((len(stimuli), repeats, self.n_sites), dtype=np.float32)
        for j, sid in enumerate(stimuli.ids):
            key = zlib.crc32(str(sid).encode())
            rng = np.random.default_rng([self.__seed, int(seed), key])
            mean = expected[j] * duration
            lam = rng.gamma(np.broadcast_to(mean / scale, (repeats, self.n_sites)), scale)
            values[j] = rng.poisson(lam) / duration
        values = values.reshape(len(stimuli) * repeats, self.n_sites, 1)
        bins = np.array([WINDOW_MS])
        rec = as_recording(
            values, np.arange(len(stimuli)), stimuli.parameters, self.__coords(), bins, repeats
        )
        self.__used += trials
        rec.attrs = json_attrs(
            {
                "units": "spikes/s",
                "insilico_version": INSILICO_VERSION,
                "source": "virtual animal (insilico.animals.VirtualAnimal)",
                "model": self.model_name,
                "region": self.region,
                "animal_seed": self.__seed,
                "stimulus_set": {
                    "kind": stimuli.kind,
                    "fingerprint": stimuli.fingerprint(),
                    "n": len(stimuli),
                },
                "repeats": repeats,
                "noise": "gamma-poisson",
                "seed": int(seed),
                "trials_used": self.trials_used,
                "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            }
        )
        return rec

    def __coords(self) -> dict[str, tuple[str, np.ndarray]]:
        """Neuroid coordinates an experimenter knows: ids, region, hemisphere, site number."""
        n = self.n_sites
        missing = np.full(n, np.nan)
        return {
            "neuroid_id": ("neuroid", as_string_array(self.site_ids)),
            "region": ("neuroid", as_string_array([self.region] * n)),
            "layer": ("neuroid", as_string_array([""] * n)),
            **{name: ("neuroid", np.full(n, -1)) for name in ("channel", "row", "col")},
            **{
                name: ("neuroid", missing.copy())
                for name in ("rf_x_deg", "rf_y_deg", "rf_size_deg", "tissue_x_mm", "tissue_y_mm")
            },
            "hemisphere": ("neuroid", as_string_array([self.__hemisphere] * n)),
            "site": ("neuroid", np.arange(n)),
        }

    def reveal(self) -> AnimalInsides:
        """The animal's insides, for checking the lab (ground-truth rates, which units a site
        mixes), not for experiments: a real animal has no such method, and ``rates`` spends no
        trials."""
        ru = self.__model.region_units(self.__region)
        return AnimalInsides(
            model=self.__model,
            region=self.__region,
            units=[ru.neuroid_ids(u).tolist() for u in self.__units],
            weights=[w.copy() for w in self.__weights],
            place_deg=self.__places.copy(),
            spont_hz=self.__spont.copy(),
            max_hz=self.__max.copy(),
            gain=self.__gain.copy(),
            fano=self.__fano.copy(),
            rates=lambda stimuli: self.__rates(as_stimulus_set(stimuli)),
        )
