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


def test_an_ensemble_predicts_by_its_members_mean(rig, truth):
    """``n_models=K``: member k is stopped early on the k-th of K parts; the mapped weights are
    the members' mean, so held-out squared error cannot exceed the members' mean error
    (Jensen) and recording the mapped sites gives the members' mean prediction."""
    from rigs.regression import DEFAULT_ALPHAS, fit

    stim, da, _ = truth
    x = layer_features(rig, stim, "v4")
    y = torch.as_tensor(
        da.groupby("stimulus_id").mean().sel(stimulus_id=list(stim.ids)).values,
        dtype=torch.float32,
    )
    train, test = slice(0, 180), slice(180, None)
    shape = rig.model.layer_shape("v4")
    w, b, reg = fit("gaussian", x[train], y[train], DEFAULT_ALPHAS, 25, shape, n_models=3)
    members = [fit_readout("gaussian", x[train], y[train], shape, (k, 3)) for k in range(3)]
    torch.testing.assert_close(w, torch.stack([m[0] for m in members]).mean(0))
    assert len(reg["members"]) == 3 and reg["row"].shape == (N_SITES,)
    assert not torch.allclose(members[0][0], members[1][0])  # validated on different parts
    err = lambda w_, b_: ((x[test] @ w_ + b_ - y[test]) ** 2).mean(0)  # noqa: E731
    mean_member = torch.stack([err(m[0], m[1]) for m in members]).mean(0)
    assert (err(w, b) <= mean_member + 1e-4).all()
    # ridge members are trained without their part, so they differ too
    wr, _, alphas = fit("ridge", x[train], y[train], DEFAULT_ALPHAS, 25, n_models=2)
    assert alphas.shape == (2, N_SITES)
    w0, _, _ = fit("ridge", x[train], y[train], DEFAULT_ALPHAS, 25)
    assert not torch.allclose(wr, w0)
    ens = rig.map_neurons(
        da, "V4", method="gaussian", cv=CV, stimuli_set=stim, progress=False, n_models=3
    )
    assert ens.info["n_models"] == 3 and "ensemble of 3" in repr(ens)
    assert np.nanmedian(ens.predictivity) > 0.5
    rates = rig.record(stim[:5], ens, progress=False).values[:, :, 0]
    act = x[:5] @ ens.weights.T + ens.bias
    np.testing.assert_allclose(rates, act.clamp(min=0).numpy(), rtol=1e-4, atol=1e-3)


def test_bad_sites_and_ensembles_are_one_line_errors(rig, truth):
    stim, da, _ = truth
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match=f"n_models must be a positive integer, got {bad}"):
            rig.map_neurons(da, "V4", stimuli_set=stim, progress=False, n_models=bad)
    with pytest.raises(ValueError, match="n_models=40 splits each training fold of 160 stimuli"):
        rig.map_neurons(da, "V4", cv=CV, stimuli_set=stim, progress=False, n_models=40)
    dead = da.copy()
    dead[:, 2] = 0.0
    with pytest.raises(ValueError, match=r"1 sites have no stimulus-dependent response.*site2"):
        rig.map_neurons(dead, "V4", stimuli_set=stim, progress=False)
    unreliable = da.copy()  # site 5's second repetition mirrors its first (plus a little)
    first = unreliable.values[::REPS, 5]
    wiggle = np.random.default_rng(1).standard_normal(len(first))
    unreliable[1::REPS, 5] = 40 - first + 0.1 * wiggle
    with pytest.raises(ValueError, match=r"1 sites have no reliable.*ceiling 0 or NaN.*site5"):
        rig.map_neurons(unreliable, "V4", stimuli_set=stim, progress=False, noise_ceiling=True)
    kept = rig.map_neurons(unreliable, "V4", stimuli_set=stim, progress=False)
    assert kept.noise_ceiling[5] == 0 and np.isnan(kept.consistency[5])


def test_mixed_layers_on_one_grid(rig, truth):
    """``layer=[a, b]`` on one spatial grid: the readout sees both layers' channels; recording
    and synthesis read the same concatenation; different grids are a one-line error."""
    stim, da, _ = truth
    mixed = rig.map_neurons(
        da, "V4", method="gaussian", layer=["v4.0", "v4"], cv=CV, stimuli_set=stim,
        progress=False,
    )  # fmt: skip
    assert mixed.layer == "v4.0+v4" and mixed.weights.shape == (N_SITES, 2 * 32 * 8 * 8)
    assert np.nanmedian(mixed.predictivity) > 0.5
    assert np.isfinite(mixed.info["rf_x_deg"]).all()  # the grid of V4's layer
    x = torch.cat([layer_features(rig, stim[:6], "v4.0"), layer_features(rig, stim[:6], "v4")], 1)
    expected = (x @ mixed.weights.T + mixed.bias).clamp(min=0).numpy()
    rates = rig.record(stim[:6], mixed, progress=False).values[:, :, 0]
    np.testing.assert_allclose(rates, expected, rtol=1e-4, atol=1e-3)
    res = rig.synthesize(mixed.sites[:1], steps=3, size_deg=6, progress=False)
    assert np.isfinite(res.table["response"]).all()
    with pytest.raises(ValueError, match="mixed layers must share one spatial grid"):
        rig.map_neurons(da, "V4", layer=["v2", "v4"], stimuli_set=stim, progress=False)
