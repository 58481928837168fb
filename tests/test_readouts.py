"""Factorized and Gaussian readouts against ground truth: sites that are single V4 units of
the tiny model plus noise, mapped from few images (the regime where ridge on a whole layer
recovers them poorly)."""

import numpy as np
import pytest
import torch
import xarray as xr

import insilico as lab
import stimuli
from rigs.mapping import layer_features
from rigs.readouts import fit_readout, min_images

N_IMAGES, N_SITES, REPS, CV = 240, 8, 2, 3


@pytest.fixture(scope="module")
def rig():
    return lab.Rig(lab.load_model("tiny"))


@pytest.fixture(scope="module")
def truth(rig):
    """Sites = single V4 units (of the more variable half), rates 20 +- 10 spikes/s, noise
    s.d. 5 on each of 2 repetitions."""
    stim = stimuli.natural(N_IMAGES, size_deg=8, seed=3)
    x = layer_features(rig, stim, "v4").numpy()
    rng = np.random.default_rng(0)
    sd = x.std(0)
    units = rng.choice(np.flatnonzero(sd > np.median(sd)), N_SITES, replace=False)
    signal = x[:, units]
    signal = 20 + 10 * (signal - signal.mean(0)) / signal.std(0)
    noisy = signal[:, None, :] + rng.standard_normal((len(stim), REPS, N_SITES)) * 5
    da = xr.DataArray(
        noisy.reshape(-1, N_SITES),
        dims=("presentation", "neuroid"),
        coords={
            "stimulus_id": ("presentation", np.repeat(stim.ids, REPS)),
            "repetition": ("presentation", np.tile(np.arange(REPS), len(stim))),
            "neuroid_id": ("neuroid", [f"site{k}" for k in range(N_SITES)]),
        },
    )
    return stim, da, units


@pytest.fixture(scope="module")
def mapped(rig, truth):
    stim, da, _ = truth
    return {
        m: rig.map_neurons(da, "V4", method=m, cv=CV, stimuli_set=stim, progress=False)
        for m in ("ridge", "factorized", "gaussian")
    }


def test_readouts_beat_ridge_on_few_images(mapped):
    ridge = np.median(mapped["ridge"].predictivity)
    for method in ("factorized", "gaussian"):
        m = mapped[method]
        assert m.method == method and m.weights.shape == mapped["ridge"].weights.shape
        assert np.median(m.predictivity) > max(0.7, ridge + 0.2), (method, ridge)
        assert np.median(m.consistency) > 0.75


def test_gaussian_finds_the_unit_rf_in_degrees(rig, mapped, truth):
    _, _, units = truth
    table = rig.units("V4").set_index("unit").loc[units]
    info = mapped["gaussian"].info
    err = np.hypot(info["rf_x_deg"] - table["rf_x_deg"], info["rf_y_deg"] - table["rf_y_deg"])
    # V4 of the tiny model: one feature-map pixel is 1 deg; the fitted centre is within half
    assert np.max(err) < 0.5, err
    assert np.allclose(info["rf_row"], table["row"], atol=0.5)
    assert np.allclose(info["rf_col"], table["col"], atol=0.5)
    assert (info["rf_sigma"] > 0).all()


def test_readouts_are_rank_one_per_site(truth, rig):
    stim, da, _ = truth
    x = layer_features(rig, stim, "v4")
    y = torch.as_tensor(da.isel(presentation=da.repetition.values == 0).values).float()
    shape = rig.model.layer_shape("v4")
    for method in ("factorized", "gaussian"):
        w, b, summary = fit_readout(method, x[:120], y[:120, :3], shape)
        assert w.shape == (x.shape[1], 3) and b.shape == (3,)
        s = torch.linalg.svdvals(w.T.reshape(3, shape[0], -1).double())
        assert (s[:, 1] < 1e-4 * s[:, 0]).all()  # spatial mask x channel weights
        assert len(summary["steps"]) == 3


def test_training_improves_on_the_starting_point(truth, rig):
    """The half-steps lower the validation error of the starting point (a ridge fit at the
    best single position) for most sites, and each site stops on its own."""
    stim, da, _ = truth
    x = layer_features(rig, stim, "v4")
    y = torch.as_tensor(da.isel(presentation=da.repetition.values == 0).values).float()
    shape = rig.model.layer_shape("v4")
    for method in ("factorized", "gaussian"):
        _, _, summary = fit_readout(method, x[:160], y[:160], shape)
        improved = summary["val_best"] < summary["val_start"] - 1e-3
        assert improved.mean() >= 0.75, (method, summary["val_start"], summary["val_best"])
        assert np.median(summary["val_best"] / summary["val_start"]) < 0.9, method
        assert (summary["steps"] > 0).mean() >= 0.75, method


def test_shuffled_responses_give_no_predictivity(rig, truth):
    stim, da, _ = truth
    order = np.random.default_rng(1).permutation(N_IMAGES)
    shuffled = da.copy(data=da.values.reshape(N_IMAGES, REPS, -1)[order].reshape(da.shape))
    for method in ("ridge", "factorized", "gaussian"):
        null = rig.map_neurons(
            shuffled, "V4", method=method, cv=CV, stimuli_set=stim, progress=False
        )
        assert abs(np.median(null.predictivity)) < 0.12, method
        assert np.max(null.predictivity) < 0.3, method


def test_mapped_readouts_record_and_synthesize(rig, truth, mapped):
    stim, _, _ = truth
    for method in ("factorized", "gaussian"):
        m = mapped[method]
        rec = rig.record(stim[:16], m, progress=False)
        x = layer_features(rig, stim[:16], "v4")
        expected = (x @ m.weights.T + m.bias).clamp(min=0).numpy()
        assert np.allclose(rec.values[:, :, 0], expected, atol=1e-3)
    res = rig.synthesize(
        mapped["gaussian"].sites[:1], objective="drive", steps=4, size_deg=6, progress=False
    )
    assert list(res.targets["target"]) == [mapped["gaussian"].neuroid_ids[0]]


def test_bad_input(rig, truth):
    stim, da, _ = truth
    few = da.isel(presentation=slice(0, REPS * 30))
    need = min_images(CV)
    with pytest.raises(ValueError, match=f"needs at least {need} stimuli with cv={CV}.*got 30"):
        rig.map_neurons(few, "V4", method="gaussian", cv=CV, stimuli_set=stim, progress=False)
    with pytest.raises(ValueError, match="'ridge', 'pls', 'factorized', 'gaussian'; got 'lasso'"):
        rig.map_neurons(da, "V4", method="lasso", stimuli_set=stim, progress=False)
    with pytest.raises(ValueError, match="needs the layer's"):
        fit_readout("factorized", torch.zeros(50, 8), torch.zeros(50, 1), None)
