"""Shared pieces of the perturbation suite (``insilico.experiments.perturbation_suite``):
cached region activations, rates under a perturbation, site selectivity, site sampling,
decoders and the statistics behind the verdicts.

The suite's perturbations act on the region its decoders read (IT), so each stimulus set is
run through the network once and every perturbation condition (a site, a dose) is applied to
the cached activations (:func:`perturb.conditions.rates_through_maps`, exact).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from scipy import stats

from insilico.analysis.selectivity import unit_dprime
from insilico.brain.units import with_places
from perturb.base import Perturbation, UnitMaps
from perturb.conditions import rates_through_maps
from perturb.sheet import random_site
from rigs.behavior import Decoder, fit_decoder
from rigs.rig import Rig
from stimuli import StimulusSet, blend, concat, faces, natural, pink_noise

#: significance level of every verdict (as in Brain-Score's qualitative metrics)
ALPHA = 0.05
#: radius (mm) over which a site's selectivity is averaged: the +-500 um neighbourhood of
#: Afraz et al. 2006 (as quoted in Brain-Score's Afraz2006 benchmark)
SITE_RADIUS_MM = 0.5
#: face-detection d' above which a site counts as face-selective (Afraz et al. 2006, 2015)
FACE_SITE_DPRIME = 1.0
#: candidate signal levels for the face-detection task; the level whose intact accuracy on
#: held-in calibration images is closest to TARGET_ACCURACY is used
DETECTION_LEVELS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
#: the intact accuracy the tasks are set to: the 85-95 % Afraz et al. 2015 kept (methods),
#: inside the issue's 75-90 % below-ceiling band
TARGET_ACCURACY = 0.85
#: hemifield positions (deg) of lateralised images: centre 2.5 deg off fixation, 3.5 deg wide,
#: so an image lies wholly in one hemifield
LATERAL_X_DEG, LATERAL_SIZE_DEG = 2.5, 3.5


class SuiteRig:
    """A rig with its region's activations cached per stimulus set."""

    def __init__(self, rig: Rig, region: str = "IT", dose_scale: float = 1.0) -> None:
        self.rig, self.model, self.region = rig, rig.model, region
        #: multiplies every dose (current, light power, volume); 0 gives the null suite
        self.dose_scale = float(dose_scale)
        self.layer = self.model.region(region).layer
        self.table = self.model.units(region)
        self._acts: dict[str, torch.Tensor] = {}
        self._memo: dict[str, Any] = {}
        self._dprime: np.ndarray | None = None

    def with_places(self, table: Any, arrangement: str) -> SuiteRig:
        """The same rig with the region's units at ``table``'s places (a null sheet): it
        shares the cached activations, unit d' and intact-rate decoders, which do not depend
        on where units lie."""
        self.dprime()  # computed once, on the intact rates, for both
        view = SuiteRig.__new__(SuiteRig)
        view.__dict__.update(self.__dict__)
        view.model = with_places(self.model, self.region, table, arrangement)
        view.table = view.model.units(self.region)
        return view

    def memo(self, key: str, compute: Any) -> Any:
        """``compute()`` once per key (decoders and task calibrations fitted on intact rates,
        shared by every draw of sites and by null sheets)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def acts(self, stim: StimulusSet) -> torch.Tensor:
        """Unperturbed activations (stimuli, units) of the region, computed once per set."""
        key = hashlib.sha1("|".join(stim.ids).encode()).hexdigest()
        if key not in self._acts:
            self.rig.check_visible(stim)
            out = []
            for lo in range(0, len(stim), 64):
                idx = np.arange(lo, min(lo + 64, len(stim)))
                a = self.model.activations(self.rig.present(stim, idx), [self.layer])[self.layer]
                out.append(a.reshape(len(idx), -1).float().cpu())
            self._acts[key] = torch.cat(out)
        return self._acts[key]

    def rates(self, stim: StimulusSet, perturbation: Perturbation | None = None) -> torch.Tensor:
        """Rates (stimuli, units) in spikes/s, under ``perturbation`` if given."""
        return self.rates_of(self.acts(stim), perturbation)

    def rates_of(self, acts: torch.Tensor, perturbation: Perturbation | None = None):
        """Rates (stimuli, units) in spikes/s from cached activations ``acts``."""
        if perturbation is None:
            return self.model.rates(self.region, acts)
        return rates_through_maps(self.model, self.region, acts, self.maps(perturbation))

    def maps(self, perturbation: Perturbation) -> UnitMaps:
        return perturbation.unit_maps(self.model)

    def dprime(self) -> np.ndarray:
        """Per unit face d' (faces vs non-faces of lfw's test half, 4 deg at fixation)."""
        if self._dprime is None:
            loc = faces("test", 4.0, signal=1.0)
            r = self.rates(loc).numpy().astype(np.float64)
            is_face = (loc.meta["category"] == "face").to_numpy()
            self._dprime = unit_dprime(r[is_face], r[~is_face])
        return self._dprime

    def site_dprime(self, at_mm: tuple[float, float], hemisphere: str) -> float:
        """Mean face d' of the units within ``SITE_RADIUS_MM`` of a site (nearest unit if
        none lies that close)."""
        t = self.table
        mine = (t["hemisphere"] == hemisphere).to_numpy()
        d = np.hypot(t["tissue_x_mm"].to_numpy() - at_mm[0], t["tissue_y_mm"].to_numpy() - at_mm[1])
        d = np.where(mine, d, np.inf)
        near = d <= SITE_RADIUS_MM
        return float(self.dprime()[near].mean() if near.any() else self.dprime()[np.argmin(d)])

    def sites(
        self, n: int, rng: np.random.Generator, hemisphere: str | None = None, face: Any = None
    ) -> list[tuple[tuple[float, float], str, float]]:
        """``n`` area-uniform random sites ``(at_mm, hemisphere, site d')``, optionally on one
        hemisphere and face-selective (``face=True``: d' > 1) or not (``face=False``).
        Fewer when the sheet has too few such sites (after 200 tries per site)."""
        out = []
        for _ in range(200 * n):
            if len(out) == n:
                break
            at, hemi = random_site(self.model, self.region, rng)
            if hemisphere is not None and hemi != hemisphere:
                continue
            dp = self.site_dprime(at, hemi)
            if face is None or (dp > FACE_SITE_DPRIME) == bool(face):
                out.append((at, hemi, dp))
        return out

    def dose(self, value: float) -> float:
        return value * self.dose_scale


def decoder(suite: SuiteRig, stim: StimulusSet, labels: Any) -> Decoder:
    """A logistic decoder of ``labels`` from the intact region's rates (5-fold CV), fitted
    once per stimulus set and labels."""
    labels = np.asarray(labels)
    key = hashlib.sha1(("|".join(stim.ids) + "#" + "|".join(map(str, labels))).encode())

    def fit() -> Decoder:
        return fit_decoder(suite.rates(stim), labels, suite.region, suite.model.name, folds=5)

    return suite.memo("decoder:" + key.hexdigest(), fit)


def p_correct(dec: Decoder, rates: torch.Tensor, labels: Any) -> np.ndarray:
    """Per stimulus, the decoder's probability of the correct label."""
    probs = dec.probabilities(rates).numpy()
    col = {str(c): k for k, c in enumerate(dec.classes)}
    return probs[np.arange(len(probs)), [col[str(v)] for v in np.asarray(labels)]]


def noisy_objects(
    sources: list[str],
    n: int,
    size_deg: float,
    position: tuple[float, float],
    signal: float,
    half: str,
    seed: int,
) -> StimulusSet:
    """``n`` crops of each photograph in ``sources`` (one ``half``), blended with pink
    noise: ``signal`` of the crop, ``1 - signal`` of the noise (linear light)."""
    parts = [
        natural(n, size_deg, seed=seed + k, position_deg=position, sources=[s], half=half)
        for k, s in enumerate(sources)
    ]
    crops = concat(parts)
    noise = pink_noise(len(crops), size_deg, seed=seed + 100, position_deg=position)
    return blend(crops, noise, signal)


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), 0.01, 0.99)
    return np.log(q / (1 - q))


def logistic_fit(levels: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of the line fitted by least squares to logit(P('face')) (P clipped
    to [0.01, 0.99]) against the signal level: a logistic psychometric curve."""
    b, a = np.polyfit(np.asarray(levels, dtype=float), _logit(p), 1)
    return float(a), float(b)


def psychometric_shift(levels: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> float:
    """How far (in signal units) curve ``p1`` lies left of ``p0``: the 50 % point moves by
    this much towards less signal (positive: more 'face' choices). Both curves share the
    intact curve's slope, so only the horizontal position is fitted (NaN when the intact
    curve does not rise)."""
    a0, b0 = logistic_fit(levels, p0)
    if not b0 > 0:
        return float("nan")
    a1 = float(np.mean(_logit(p1) - b0 * np.asarray(levels, dtype=float)))
    return (a1 - a0) / b0


def significant_correlation(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Pearson r and its two-sided p (NaN pairs dropped)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) < 1e-12 or np.ptp(y[ok]) < 1e-12:
        return float("nan"), 1.0
    r, p = stats.pearsonr(x[ok], y[ok])
    return float(r), float(p)


def mean_change(deltas: np.ndarray) -> tuple[float, float]:
    """Mean of per-site changes and the two-sided one-sample t-test p against 0."""
    deltas = np.asarray(deltas, dtype=float)
    if len(deltas) < 2 or np.allclose(deltas, deltas[0]):
        return float(np.mean(deltas)) if len(deltas) else float("nan"), 1.0
    return float(deltas.mean()), float(stats.ttest_1samp(deltas, 0.0).pvalue)


def mantel(distance: np.ndarray, similarity: np.ndarray, n_perm: int = 2000, seed: int = 0):
    """Pearson r between the upper triangles of two site x site matrices and its two-sided
    permutation p (site labels permuted: the pairs are not independent)."""
    iu = np.triu_indices(len(distance), 1)
    if np.ptp(similarity[iu]) < 1e-12:  # no pattern to relate (e.g. no effect anywhere)
        return float("nan"), 1.0
    r = np.corrcoef(distance[iu], similarity[iu])[0, 1]
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_perm):
        perm = rng.permutation(len(distance))
        rp = np.corrcoef(distance[iu], similarity[np.ix_(perm, perm)][iu])[0, 1]
        hits += abs(rp) >= abs(r)
    return float(r), (1 + hits) / (1 + n_perm)


def detection_task(s: SuiteRig):
    """Decoder and (contra, ipsi) test sets of face detection in noise at the level where the
    intact accuracy on calibration images (train half) is nearest TARGET_ACCURACY (once)."""
    return s.memo("detection_task", lambda: _detection_task(s))


def _detection_task(s: SuiteRig):

    def at(x: float, half: str, levels, seed: int):
        return faces(half, LATERAL_SIZE_DEG, list(levels), position_deg=(x, 0.0), seed=seed)

    train = concat(
        [
            at(x, "train", DETECTION_LEVELS, 21 + k)
            for k, x in enumerate((LATERAL_X_DEG, -LATERAL_X_DEG))
        ]
    )
    dec = decoder(s, train, train.meta["category"])
    calib = at(LATERAL_X_DEG, "train", DETECTION_LEVELS, 31)
    acc = p_correct(dec, s.rates(calib), calib.meta["category"])
    lv = calib.meta["signal"].to_numpy()
    level = min(DETECTION_LEVELS, key=lambda v: abs(acc[lv == v].mean() - TARGET_ACCURACY))
    contra = at(LATERAL_X_DEG, "test", [level], 41)  # right field: the left hemisphere's
    ipsi = at(-LATERAL_X_DEG, "test", [level], 42)
    return dec, contra, ipsi, level


def face_pairs(
    s: SuiteRig,
    half: str,
    n: int,
    seed: int,
    signal: float = 0.9,
    sizes: tuple[float, ...] = (3.6, 4.0, 4.4),
):
    """Activations of ``n`` trials' first and second faces and their labels: 50 lfw faces
    of ``half``, 3 exemplars each (3.6, 4.0, 4.4 deg, independent noise; at signal 0.9
    Lite0's intact observer is 80 % correct, within the 75-90 % band);
    'same' trials show two exemplars of one face, 'diff' trials two faces."""
    acts = []
    for k, size in enumerate(sizes):
        st = faces(half, size, signal, seed=50 + k)
        acts.append(s.acts(st)[torch.as_tensor(np.flatnonzero(st.meta["category"] == "face"))])
    ids = len(acts[0])
    r = np.random.default_rng(seed)
    a_ex, a_id = r.integers(0, 3, n), r.integers(0, ids, n)
    same = r.random(n) < 0.5
    b_ex = (a_ex + r.integers(1, 3, n)) % 3
    b_id = np.where(same, a_id, (a_id + r.integers(1, ids, n)) % ids)
    first = torch.stack([acts[e][i] for e, i in zip(a_ex, a_id)])
    second = torch.stack([acts[e][i] for e, i in zip(b_ex, b_id)])
    return first, second, np.where(same, "same", "diff")


def task_dprime(pa: np.ndarray, pb: np.ndarray) -> float:
    from scipy.stats import norm

    hr, far = np.clip(np.nan_to_num([pa.mean(), pb.mean()], nan=0.5), 0.01, 0.99)
    return float(norm.ppf(hr) - norm.ppf(far))
