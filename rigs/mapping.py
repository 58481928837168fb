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

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import xarray as xr
from PIL import Image
from tqdm.auto import tqdm

import stimuli
from recordings.format import as_strings
from recordings.real import IMAGE_PATH_COORDS, load_responses
from rigs.mapped import MappedSites
from rigs.readouts import READOUTS, check_images
from rigs.regression import DEFAULT_ALPHAS, check_method, cross_validated, fit
from rigs.reliability import check_reliable, mean_and_repeats, pearson, split_half_ceiling
from rigs.targets import joined_activation, layer_parts

if TYPE_CHECKING:
    from rigs.rig import Rig

#: fewest stimuli in each ensemble member's own part of a training fold
MIN_MEMBER_PART = 8


def _stimuli_for(responses: xr.DataArray, given: stimuli.StimulusSet | None) -> stimuli.StimulusSet:
    """The StimulusSet of the recording's unique stimulus ids, in first-seen order."""
    ids = pd.unique(as_strings(responses.stimulus_id.values))
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
                "sid": as_strings(responses.stimulus_id.values),
                "path": as_strings(responses[path_coord].values),
            }
        )
        .drop_duplicates("sid")
        .set_index("sid")
        .loc[ids]
    )
    images = []
    for sid, p in zip(ids, first["path"]):
        try:
            with Image.open(p) as im:
                images.append(np.asarray(im.convert("RGB")))
        except OSError:
            raise ValueError(f"stimulus {sid!r}: cannot read image {p!r}") from None
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ValueError(f"stimulus images have different shapes {sorted(shapes)[:3]}")
    return stimuli.from_arrays(np.stack(images), size_deg=size, ids=list(ids))


def mixed_layer(model, layer) -> str:
    """A layer name; a list of layers (or ``"a+b"``) mixes them: their channels on one spatial
    grid, named ``"a+b"``. One-line error when their grids differ."""
    if isinstance(layer, list | tuple):
        if not layer or not all(isinstance(p, str) for p in layer):
            raise ValueError(f"layer must be a layer name or a list of names, got {layer!r}")
        layer = "+".join(layer)
    parts = layer_parts(layer)
    if len(parts) > 1:
        grids = {p: model.layer_shape(p)[1:] for p in parts}
        if len(set(grids.values())) > 1:
            raise ValueError(f"mixed layers must share one spatial grid; got {grids} (rows, cols)")
    return layer


def mixed_shape(model, layer: str) -> tuple[int, int, int]:
    """(channels, rows, cols) of a layer or of a mixed ``"a+b"`` layer (channels summed)."""
    shapes = [model.layer_shape(p) for p in layer_parts(layer)]
    return (sum(s[0] for s in shapes), *shapes[0][1:])


def layer_features(
    rig: Rig, stim: stimuli.StimulusSet, layer: str, batch_size: int = 64, progress: bool = False
) -> torch.Tensor:
    """Activations (stimuli, units) of one layer (or a mixed ``"a+b"`` one: the parts' units
    in turn), streamed batch by batch (float32, CPU)."""
    rig.check_visible(stim)
    out = None
    for lo in tqdm(
        range(0, len(stim), batch_size), desc=f"features {layer}", leave=False, disable=not progress
    ):
        idx = np.arange(lo, min(lo + batch_size, len(stim)))
        acts = rig.model.activations(rig.present(stim, idx), layer_parts(layer))
        a = joined_activation(acts, layer)
        a = a.reshape(len(idx), -1).float().cpu()
        if out is None:
            out = torch.empty(len(stim), a.shape[1])
        out[lo : lo + len(idx)] = a
    return out


def _best_layer_nested(
    rig, stim, layers, y, mean, method, cv, seed, alphas, n_components, batch_size, progress, k
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
        shape = mixed_shape(rig.model, name)
        for f in range(cv):
            test = torch.as_tensor(outer == f)
            xt, yt = x[~test], y[~test]
            inner = cross_validated(method, xt, yt, cv, seed + 1, alphas, n_components, shape, k)
            inner_score[i, f] = float(np.nanmedian(pearson(inner, yt.numpy())))
            w, b, _ = fit(method, xt, yt, alphas, n_components, shape, k)
            outer_pred[i, test.numpy()] = (x[test] @ w + b).numpy()
        if final is None or inner_score[i].mean() > inner_score[final[0]].mean():
            final = (i, *fit(method, x, y, alphas, n_components, shape, k))
        del x
    chosen = inner_score.argmax(axis=0)  # per outer fold
    pred = np.empty(tuple(y.shape))
    for f in range(cv):
        pred[outer == f] = outer_pred[chosen[f], outer == f]
    r = pearson(pred, mean)
    i, w, b, reg = final
    scores = {name: float(np.mean(inner_score[k])) for k, name in enumerate(layers)}
    return layers[i], r, w, b, reg, scores, pred


def rf_degrees(rig: Rig, region: str, layer: str, row, col) -> tuple[np.ndarray, np.ndarray]:
    """Feature-map positions (row, col, fractional) of ``layer`` -> RF centres in degrees,
    bilinear over the unit table's (row, col) grid (RF centres averaged over channels) of
    the region committed to ``layer`` (``region`` first); NaN when no region is."""
    model = rig.model
    owners = [region] + [r for r in model.regions if r != region]
    parts = layer_parts(layer)  # a mixed layer's grid is its parts' grid
    owner = next((r for p in parts for r in owners if model.region(r).layer == p), None)
    row, col = np.asarray(row, dtype=float), np.asarray(col, dtype=float)
    if owner is None:
        return np.full(row.shape, np.nan), np.full(row.shape, np.nan)
    _, h, w = model.layer_shape(parts[0])
    grid = model.units(owner).groupby(["row", "col"])[["rf_x_deg", "rf_y_deg"]].mean()
    out = []
    for name in ("rf_x_deg", "rf_y_deg"):
        g = grid[name].unstack().reindex(index=range(h), columns=range(w)).to_numpy()
        r0 = np.clip(np.floor(row), 0, max(h - 2, 0)).astype(int)
        c0 = np.clip(np.floor(col), 0, max(w - 2, 0)).astype(int)
        r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
        fr, fc = np.clip(row - r0, 0, 1), np.clip(col - c0, 0, 1)
        top = g[r0, c0] * (1 - fc) + g[r0, c1] * fc
        bottom = g[r1, c0] * (1 - fc) + g[r1, c1] * fc
        out.append(top * (1 - fr) + bottom * fr)
    return out[0], out[1]


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
    n_models: int = 1,
) -> MappedSites:
    """Map recorded sites onto ``region`` (its committed layer, ``layer=NAME``, a list of
    layers on one spatial grid whose channels are mixed (named ``"a+b"``), or
    ``layer="best"`` over ``candidate_layers``) by ``method`` ("ridge", "pls", or the
    data-efficient "factorized" and "gaussian" readouts of ``rigs.readouts``) with
    ``cv``-fold cross-validation; "gaussian" adds each site's RF centre in degrees
    (``info["rf_x_deg"]``, ``info["rf_y_deg"]``) and on the feature map (``info["rf_row"]``,
    ``info["rf_col"]``, ``info["rf_sigma"]``, pixels). ``responses``: an xarray, or a path
    to .nc / .zarr / .nwb (see ``recordings.load_responses``); its stimuli come from an
    ``image_path`` coordinate plus ``size_deg``, or ``stimuli_set=`` a StimulusSet matched by
    ``stimulus_id``. ``n_models=K`` > 1 maps an ensemble of K readouts, each stopped early
    on (readouts) or trained without (ridge, PLS) a different K-th of the stimuli, and
    predicts by their mean (``rigs.regression.fit``); its predictivity is that of the mean,
    cross-validated like a single readout. ``noise_ceiling="auto"`` (from repetitions when
    there are any), True (required) or False. Returns MappedSites, usable as targets of ``record``,
    ``synthesize`` and ``behave``-style readouts; see ``report()``."""
    check_method(method)
    n_models = stimuli.stimulus_set.check_positive_int(n_models, "n_models")
    stimuli.stimulus_set.check_seed(seed)
    responses = load_responses(responses)
    model = rig.model
    rc = model.region(region)
    stim = _stimuli_for(responses, stimuli_set)
    if method in READOUTS:
        check_images(method, len(stim), cv)
    fold = len(stim) - math.ceil(len(stim) / cv) if isinstance(cv, int) and cv >= 2 else 0
    if n_models > 1 and fold // n_models < MIN_MEMBER_PART:
        raise ValueError(
            f"n_models={n_models} splits each training fold of {fold} stimuli into parts of "
            f"fewer than {MIN_MEMBER_PART}; use fewer models or more stimuli"
        )
    ids = as_strings(stim.ids)
    mean, reps = mean_and_repeats(responses, ids)
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
    check_reliable(mean, ceiling, as_strings(responses.neuroid_id.values), noise_ceiling is True)
    y = torch.as_tensor(mean, dtype=torch.float32)
    if layer == "best":
        layers = candidate_layers or [model.region(r).layer for r in model.regions]
        layers = [mixed_layer(model, c) for c in layers]
        name, r, w, b, reg, scores, pred = _best_layer_nested(
            rig,
            stim,
            layers,
            y,
            mean,
            method,
            cv,
            seed,
            alphas,
            n_components,
            batch_size,
            progress,
            n_models,
        )
    else:
        name = mixed_layer(model, layer or rc.layer)
        x = layer_features(rig, stim, name, batch_size, progress)
        shape = mixed_shape(model, name)
        pred = cross_validated(method, x, y, cv, seed, alphas, n_components, shape, n_models)
        r = pearson(pred, mean)
        scores = {name: float(np.nanmedian(r))}
        w, b, reg = fit(method, x, y, alphas, n_components, shape, n_models)
        del x
    rf = {}
    if method == "gaussian":
        rf_x, rf_y = rf_degrees(rig, region, name, reg["row"], reg["col"])
        rf = {"rf_x_deg": rf_x, "rf_y_deg": rf_y, "rf_row": reg["row"], "rf_col": reg["col"]}
        rf["rf_sigma"] = reg["sigma"]
    neuroid_ids = as_strings(responses.neuroid_id.values)
    return MappedSites(
        model_name=model.name,
        region=region,
        layer=name,
        neuroid_ids=neuroid_ids,
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
            "n_models": n_models,
            "n_stimuli": len(stim),
            "stimuli_fingerprint": stim.fingerprint(),
            # out-of-fold predictions and the mean responses they were scored against
            # (stimuli, sites): what a cross-network ensemble's predictivity is computed from
            "cv_predictions": pred.astype(np.float32),
            "responses_mean": np.asarray(mean, dtype=np.float32),
            **rf,
        },
    )
