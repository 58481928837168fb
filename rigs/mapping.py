"""Map recorded neurons onto a brain model: linear readouts of a layer, cross-validated.

A mapped site is ``rate = features @ w + b`` over one layer's units (features = the layer's
activations to the stimuli as the rig presents them). Fitting: ridge regression in closed
form (regularisation per site by leave-one-out error inside each training fold) or PLS;
predictivity = Pearson r between the out-of-fold predictions and the mean response over
repetitions; noise ceiling = the correlation a perfect model could reach with those means,
``sqrt`` of the Spearman-Brown-corrected split-half reliability (unequal halves for odd
repeat counts). ``layer="best"`` uses nested cross-validation: the layer is chosen on inner
folds of each outer training set and predictivity is measured on the outer folds, so picking
the best of several layers cannot inflate it; one layer's features are held at a time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import xarray as xr
from tqdm.auto import tqdm

import stimuli
from recordings.real import IMAGE_PATH_COORDS

if TYPE_CHECKING:
    from rigs.rig import Rig

DEFAULT_ALPHAS = tuple(10.0 ** np.arange(-2, 7))


@dataclass(frozen=True)
class MappedSites:
    """Recorded sites mapped onto a model layer; behaves like an implanted array.

    ``weights`` (sites, units) and ``bias`` (sites,) map the layer's activations (flat unit
    order) to the site's rate in the units of the real recording (spikes/s). ``predictivity``
    is the cross-validated Pearson r, ``noise_ceiling`` the r a perfect model could reach.
    """

    model_name: str
    region: str
    layer: str
    names: np.ndarray
    weights: torch.Tensor = field(repr=False)
    bias: torch.Tensor = field(repr=False)
    predictivity: np.ndarray = field(repr=False)
    noise_ceiling: np.ndarray = field(repr=False)
    method: str = "ridge"
    info: dict = field(default_factory=dict, repr=False)
    parent: MappedSites | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def sites(self) -> _Indexer:
        """``mapped.sites[mask]`` / ``mapped.sites[[0, 3]]``: a subset, still mapped."""
        return _Indexer(self)

    @property
    def consistency(self) -> np.ndarray:
        """Predictivity relative to the noise ceiling (1 = as good as the data allow)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.predictivity / self.noise_ceiling

    def report(self) -> pd.DataFrame:
        """Per site: predictivity (Pearson r), noise ceiling, consistency."""
        return pd.DataFrame(
            {
                "site": self.names,
                "predictivity": self.predictivity,
                "noise_ceiling": self.noise_ceiling,
                "consistency": self.consistency,
                "layer": self.layer,
                "method": self.method,
            }
        )

    def __repr__(self) -> str:
        return (
            f"MappedSites({len(self)} sites -> {self.region} ({self.layer}) of "
            f"{self.model_name!r} by {self.method}, "
            f"median r {np.nanmedian(self.predictivity):.3f}, "
            f"median ceiling {np.nanmedian(self.noise_ceiling):.3f})"
        )


class _Indexer:
    def __init__(self, mapped: MappedSites) -> None:
        self._m = mapped

    def __getitem__(self, key) -> MappedSites:
        m = self._m
        idx = np.atleast_1d(np.asarray(key))
        if idx.dtype == bool:
            if len(idx) != len(m):
                raise ValueError(f"site mask has {len(idx)} entries for {len(m)} mapped sites")
            idx = np.flatnonzero(idx)
        if len(idx) == 0:
            raise ValueError("no mapped sites selected")
        if idx.min() < -len(m) or idx.max() >= len(m):
            raise ValueError(f"site indices must lie in [0, {len(m)})")
        t = torch.as_tensor(idx)
        return MappedSites(
            m.model_name,
            m.region,
            m.layer,
            m.names[idx],
            m.weights[t],
            m.bias[t],
            m.predictivity[idx],
            m.noise_ceiling[idx],
            m.method,
            m.info,
            m.parent or m,
        )


# data ---------------------------------------------------------------------------------
def _strings(values) -> np.ndarray:
    """Any array of labels (object, <U, StringDType, numbers) as an object array of str."""
    return np.asarray([str(v) for v in np.asarray(values, dtype=object).ravel()], dtype=object)


def _stimuli_for(responses: xr.DataArray, given: stimuli.StimulusSet | None) -> stimuli.StimulusSet:
    """The StimulusSet of the recording's unique stimulus ids, in first-seen order."""
    ids = pd.unique(_strings(responses.stimulus_id.values))
    if given is not None:
        table = given.meta.set_index(given.meta["stimulus_id"].astype(str))
        missing = [s for s in ids if s not in table.index]
        if missing:
            raise ValueError(
                f"{len(missing)} stimulus ids of the responses are not in stimuli= "
                f"(first: {missing[:3]})"
            )
        pos = table.index.get_indexer(ids)
        return given[pos]
    path_coord = next((c for c in IMAGE_PATH_COORDS if c in responses.coords), None)
    if path_coord is None:
        raise ValueError(
            "responses carry no stimulus images: pass stimuli= a StimulusSet with their "
            f"stimulus_id values, or give a presentation coordinate {IMAGE_PATH_COORDS[0]!r}"
        )
    if "size_deg" in responses.coords:
        sizes = np.unique(np.asarray(responses.size_deg.values, dtype=float))
        if len(sizes) != 1:
            raise ValueError(f"stimuli of several sizes {sizes[:5]} deg; map one size at a time")
        size = float(sizes[0])
    elif "size_deg" in responses.attrs:
        size = float(responses.attrs["size_deg"])
    else:
        raise ValueError(
            "unknown stimulus size in degrees: add a 'size_deg' presentation coordinate or attr"
        )
    first = (
        pd.DataFrame(
            {
                "sid": _strings(responses.stimulus_id.values),
                "path": _strings(responses[path_coord].values),
            }
        )
        .drop_duplicates("sid")
        .set_index("sid")
        .loc[ids]
    )
    images = []
    for sid, p in zip(ids, first["path"]):
        from PIL import Image

        try:
            with Image.open(p) as im:
                images.append(np.asarray(im.convert("RGB")))
        except OSError:
            raise ValueError(f"stimulus {sid!r}: cannot read image {p!r}") from None
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"stimulus images have different shapes {sorted(shapes)[:3]}")
    return stimuli.from_arrays(np.stack(images), size_deg=size, ids=list(ids))


def _mean_and_repeats(responses: xr.DataArray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(stimuli, sites) mean response and (stimuli, max_reps, sites) repeats (NaN-padded)."""
    r = responses.mean("time_bin") if "time_bin" in responses.dims else responses
    values = np.asarray(r.values, dtype=np.float64)
    sid = _strings(r.stimulus_id.values)
    index = {s: k for k, s in enumerate(ids)}
    rows = np.array([index[s] for s in sid])
    counts = np.bincount(rows, minlength=len(ids))
    reps = np.full((len(ids), counts.max(), values.shape[1]), np.nan)
    slot = np.zeros(len(ids), dtype=int)
    for k, row in enumerate(rows):
        reps[row, slot[row]] = values[k]
        slot[row] += 1
    return np.nanmean(reps, axis=1), reps


def _spearman_brown(rho: np.ndarray, factor: float) -> np.ndarray:
    """Reliability of a mean of ``factor`` times as many repetitions."""
    return factor * rho / (1 + (factor - 1) * rho)


def _single_rep_reliability(r: np.ndarray, h1: float, h2: float) -> np.ndarray:
    """Per-repetition reliability rho1 whose half means of h1 and h2 repetitions correlate r:
    r^2 = SB(rho1, h1) * SB(rho1, h2), solved by bisection (r <= 0 -> 0)."""
    r = np.asarray(r, dtype=float)
    lo, hi = np.zeros_like(r), np.ones_like(r)
    target = np.clip(r, 0, 1) ** 2
    for _ in range(60):
        mid = (lo + hi) / 2
        value = _spearman_brown(mid, h1) * _spearman_brown(mid, h2)
        below = value < target
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    out = (lo + hi) / 2
    return np.where(np.isfinite(r), out, np.nan)


def split_half_ceiling(reps: np.ndarray, n_splits: int = 20, seed: int = 0) -> np.ndarray:
    """Noise ceiling per site from repetitions (stimuli, reps, sites), NaN-padded.

    Every stimulus's repetitions are split at random into halves of floor(n/2) and
    ceil(n/2) (all of them used, also for odd n); the Pearson r between the half means over
    stimuli gives the single-repetition reliability rho1 (solving r^2 = SB(rho1, h1) *
    SB(rho1, h2), Spearman-Brown for the actual half sizes), which is stepped up to the
    reliability of the full mean of n repetitions, averaged over splits; the ceiling is its
    square root (the r a perfect model could reach with the mean responses). For even n this
    is the familiar 2r / (1 + r).
    """
    n_reps = np.sum(~np.isnan(reps[:, :, 0]), axis=1)
    if n_reps.min() < 2:
        raise ValueError(
            "a noise ceiling needs >= 2 repetitions of every stimulus; "
            f"{int((n_reps < 2).sum())} stimuli have fewer"
        )
    rng = np.random.default_rng(seed)
    valid = ~np.isnan(reps[:, :, 0])
    h1 = (n_reps // 2)[:, None]
    h2 = (n_reps - n_reps // 2)[:, None]
    filled = np.nan_to_num(reps)
    rel = []
    for _ in range(n_splits):
        keys = np.where(valid, rng.random(valid.shape), np.inf)
        rank = np.argsort(np.argsort(keys, axis=1), axis=1)  # random order of each row's reps
        in_a = (rank < h1)[:, :, None]
        in_b = ((rank >= h1) & (rank < h1 + h2))[:, :, None]
        a = (filled * in_a).sum(1) / h1
        b = (filled * in_b).sum(1) / h2
        r = _pearson(a, b)
        rho1 = _single_rep_reliability(r, float(h1.mean()), float(h2.mean()))
        rel.append(_spearman_brown(rho1, float(n_reps.mean())))
    reliability = np.nanmean(rel, axis=0)
    return np.sqrt(np.clip(reliability, 0, None))


def _pearson(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(0)
    b = b - b.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(0) / np.sqrt((a**2).sum(0) * (b**2).sum(0))


def layer_features(
    rig: Rig, stim: stimuli.StimulusSet, layer: str, batch_size: int = 64, progress: bool = False
) -> torch.Tensor:
    """Activations (stimuli, units) of one layer, streamed batch by batch (float32, CPU)."""
    rig.check_visible(stim)
    out = None
    for lo in tqdm(
        range(0, len(stim), batch_size), desc=f"features {layer}", leave=False, disable=not progress
    ):
        idx = np.arange(lo, min(lo + batch_size, len(stim)))
        a = rig.model.activations(rig.present(stim, idx), [layer])[layer]
        a = a.reshape(len(idx), -1).float().cpu()
        if out is None:
            out = torch.empty(len(stim), a.shape[1])
        out[lo : lo + len(idx)] = a
    return out


# regression ---------------------------------------------------------------------------
def _ridge_fit(
    x: torch.Tensor, y: torch.Tensor, alphas
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Dual ridge with per-site alpha by exact leave-one-out error; returns (W (F,S), b, alpha)."""
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = (x - xm).double(), (y - ym).double()
    k = xc @ xc.T
    # numpy's LAPACK: torch.linalg.eigh on CPU measured 25x slower here (30 s vs 1.2 s, n=1600)
    s_np, u_np = np.linalg.eigh(k.numpy())
    s, u = torch.from_numpy(s_np).clamp(min=0), torch.from_numpy(u_np)
    uy = u.T @ yc
    best = torch.full((y.shape[1],), float("inf"), dtype=torch.float64)
    chosen = torch.zeros(y.shape[1], dtype=torch.float64)
    for alpha in alphas:
        shrink = s / (s + alpha)
        fitted = u @ (shrink[:, None] * uy)
        h = (u**2) @ shrink
        loo = ((yc - fitted) / (1 - h[:, None]).clamp(min=1e-12)) ** 2
        err = loo.mean(0)
        better = err < best
        best = torch.where(better, err, best)
        chosen = torch.where(better, torch.tensor(float(alpha), dtype=torch.float64), chosen)
    dual = torch.empty_like(yc)
    for alpha in torch.unique(chosen):
        cols = chosen == alpha
        dual[:, cols] = u @ ((1.0 / (s + alpha))[:, None] * uy[:, cols])
    w = (xc.T @ dual).float()
    b = (ym - xm @ w).float()
    return w, b, chosen.numpy()


def _pls_fit(
    x: torch.Tensor, y: torch.Tensor, n_components: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """PLS2 regression by NIPALS with ``n_components`` latent variables."""
    xm, ym = x.mean(0), y.mean(0)
    xr, yr = (x - xm).double(), (y - ym).double()
    n_comp = min(n_components, x.shape[0] - 1, x.shape[1])
    ws, ps, qs = [], [], []
    for _ in range(n_comp):
        m = xr.T @ yr
        w = torch.linalg.svd(m, full_matrices=False)[0][:, 0]
        t = xr @ w
        tt = t @ t
        if tt <= 1e-12:
            break
        p = xr.T @ t / tt
        q = yr.T @ t / tt
        xr -= torch.outer(t, p)
        yr -= torch.outer(t, q)
        ws.append(w)
        ps.append(p)
        qs.append(q)
    wmat, pmat, qmat = torch.stack(ws, 1), torch.stack(ps, 1), torch.stack(qs, 1)
    coef = wmat @ torch.linalg.solve(pmat.T @ wmat, qmat.T)
    w = coef.float()
    return w, (ym - xm @ w).float(), np.full(y.shape[1], len(ws))


def _fit(method: str, x, y, alphas, n_components):
    if method == "ridge":
        return _ridge_fit(x, y, alphas)
    if method == "pls":
        return _pls_fit(x, y, n_components)
    raise ValueError(f"method must be 'ridge' or 'pls', got {method!r}")


def cross_validated(
    method: str, x: torch.Tensor, y: torch.Tensor, cv: int, seed: int, alphas, n_components: int
) -> np.ndarray:
    """Out-of-fold predictions (stimuli, sites) from ``cv``-fold cross-validation."""
    n = len(x)
    if not isinstance(cv, int) or not 2 <= cv <= n:
        raise ValueError(f"cv must be an integer in [2, {n}], got {cv!r}")
    folds = np.random.default_rng(seed).permutation(n) % cv
    pred = np.empty(tuple(y.shape))
    for f in range(cv):
        test = torch.as_tensor(folds == f)
        w, b, _ = _fit(method, x[~test], y[~test], alphas, n_components)
        pred[test.numpy()] = (x[test] @ w + b).numpy()
    return pred


def _best_layer_nested(
    rig, stim, layers, y, mean, method, cv, seed, alphas, n_components, batch_size, progress
):
    """``layer="best"`` without selection bias: in each outer fold the layer is chosen by
    inner cross-validation on the outer training stimuli only, and the outer test stimuli are
    predicted by that layer; predictivity is measured on those outer predictions. One layer's
    features are in memory at a time. The layer mapped in the end (refitted on all stimuli)
    is the one with the best mean inner-CV score, ``layer_scores``."""
    n = len(y)
    if not isinstance(cv, int) or not 2 <= cv <= n:
        raise ValueError(f"cv must be an integer in [2, {n}], got {cv!r}")
    outer = np.random.default_rng(seed).permutation(n) % cv
    inner_score = np.zeros((len(layers), cv))
    outer_pred = np.empty((len(layers), n, y.shape[1]))
    final = None
    for i, name in enumerate(layers):
        x = layer_features(rig, stim, name, batch_size, progress)
        for f in range(cv):
            test = torch.as_tensor(outer == f)
            xt, yt = x[~test], y[~test]
            inner = cross_validated(method, xt, yt, cv, seed + 1, alphas, n_components)
            inner_score[i, f] = float(np.nanmedian(_pearson(inner, yt.numpy())))
            w, b, _ = _fit(method, xt, yt, alphas, n_components)
            outer_pred[i, test.numpy()] = (x[test] @ w + b).numpy()
        if final is None or inner_score[i].mean() > inner_score[final[0]].mean():
            final = (i, *_fit(method, x, y, alphas, n_components))
        del x
    chosen = inner_score.argmax(axis=0)  # per outer fold
    pred = np.empty(tuple(y.shape))
    for f in range(cv):
        pred[outer == f] = outer_pred[chosen[f], outer == f]
    r = _pearson(pred, mean)
    i, w, b, reg = final
    scores = {name: float(np.mean(inner_score[k])) for k, name in enumerate(layers)}
    return layers[i], r, w, b, reg, scores


def map_neurons(
    rig: Rig,
    responses: xr.DataArray,
    region: str,
    method: str = "ridge",
    cv: int = 5,
    seed: int = 0,
    layer: str | None = None,
    candidate_layers: list[str] | None = None,
    stimuli_set: stimuli.StimulusSet | None = None,
    noise_ceiling: bool | str = "auto",
    alphas=DEFAULT_ALPHAS,
    n_components: int = 25,
    batch_size: int = 64,
    progress: bool = True,
) -> MappedSites:
    """See :meth:`rigs.rig.Rig.map_neurons`."""
    from recordings.real import load_responses

    if method not in ("ridge", "pls"):
        raise ValueError(f"method must be 'ridge' or 'pls', got {method!r}")
    stimuli.stimulus_set.check_seed(seed)
    responses = load_responses(responses)
    model = rig.model
    rc = model.region(region)
    stim = _stimuli_for(responses, stimuli_set)
    ids = _strings(stim.ids)
    mean, reps = _mean_and_repeats(responses, ids)
    if noise_ceiling is True or (noise_ceiling == "auto" and reps.shape[1] >= 2):
        try:
            ceiling = split_half_ceiling(reps, seed=seed)
        except ValueError:
            if noise_ceiling is True:
                raise
            warnings.warn("some stimuli have 1 repetition: noise ceiling set to NaN", stacklevel=2)
            ceiling = np.full(mean.shape[1], np.nan)
    elif noise_ceiling is True:
        raise ValueError("a noise ceiling needs repetitions; the responses have one per stimulus")
    else:
        ceiling = np.full(mean.shape[1], np.nan)
    y = torch.as_tensor(mean, dtype=torch.float32)
    if layer == "best":
        layers = candidate_layers or [model.region(r).layer for r in model.regions]
        name, r, w, b, reg, scores = _best_layer_nested(
            rig, stim, layers, y, mean, method, cv, seed, alphas, n_components, batch_size, progress
        )
    else:
        name = layer or rc.layer
        x = layer_features(rig, stim, name, batch_size, progress)
        pred = cross_validated(method, x, y, cv, seed, alphas, n_components)
        r = _pearson(pred, mean)
        scores = {name: float(np.nanmedian(r))}
        w, b, reg = _fit(method, x, y, alphas, n_components)
        del x
    names = _strings(responses.neuroid_id.values)
    return MappedSites(
        model_name=model.name,
        region=region,
        layer=name,
        names=names,
        weights=w.T.contiguous(),
        bias=b,
        predictivity=r,
        noise_ceiling=ceiling,
        method=method,
        info={
            "layer_scores": scores,
            "regularisation": reg,
            "cv": cv,
            "seed": seed,
            "n_stimuli": len(stim),
            "stimuli_fingerprint": stim.fingerprint(),
        },
    )
