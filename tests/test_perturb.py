import itertools

import numpy as np
import pytest
import torch
import xarray as xr

import insilico as lab
import recordings
import stimuli
from perturb import (
    Ablation,
    DirectionalAblation,
    Lesion,
    Microstimulation,
    Muscimol,
    Optogenetic,
    compare,
)
from perturb.spatial import MUSCIMOL_VARIANCE_MM2


@pytest.fixture(scope="module")
def rig():
    return lab.Rig(lab.load_model("tiny"))


@pytest.fixture(scope="module")
def grat():
    return stimuli.gratings(size_deg=8, orientation_deg=range(0, 180, 30), sf_cpd=[0.5, 1])


@pytest.fixture(scope="module")
def task(rig):
    train = stimuli.gratings(
        size_deg=8,
        orientation_deg=[0, 90],
        sf_cpd=[0.5, 1],
        phase_deg=range(0, 360, 15),
        contrast=[0.5, 1],
    )
    labels = np.where(train.meta.orientation_deg == 0, "vertical", "horizontal")
    return train, labels, rig.fit_task(train, labels, region="IT")


def _centre(rig, region):
    ex, ey = rig.model.region_units(region).sheet_extent_mm
    return ex / 2, ey / 2


def test_muscimol_profile(rig, grat):
    t = rig.units("V1")
    cx, cy = _centre(rig, "V1")
    k = int(np.argmin(np.hypot(t.tissue_x_mm - cx, t.tissue_y_mm - cy)))
    at = (float(t.tissue_x_mm[k]), float(t.tissue_y_mm[k]))  # inject at a unit
    base = rig.record(grat, "V1", progress=False).mean(("presentation", "time_bin")).values
    with rig.perturb(Muscimol("V1", at_mm=at, volume_ul=1.0)):
        pert = rig.record(grat, "V1", progress=False).mean(("presentation", "time_bin")).values
    d = np.hypot(t.tissue_x_mm - at[0], t.tissue_y_mm - at[1]).to_numpy()
    live = base > 1e-3
    change = 1 - pert[live] / base[live]
    d = d[live]
    sigma = np.sqrt(MUSCIMOL_VARIANCE_MM2)
    centre = d < 0.2
    assert centre.sum() > 0 and (change[centre] >= 0.95).all()
    assert (np.abs(change[d >= 3 * sigma]) < 0.05).all() and (d >= 3 * sigma).sum() > 0
    # monotone: less change further away. With saturating rates (rate = f * R(b + g f a)) a
    # unit's change depends on its drive too, so compare the mean change per distance bin.
    edges = np.arange(0.0, d.max() + sigma / 2, sigma / 2)
    which = np.digitize(d, edges)
    means = [change[which == b].mean() for b in np.unique(which)]
    assert len(means) > 3 and (np.diff(means) <= 1e-6).all()


def test_microstimulation_grows_with_current(rig, grat):
    at = _centre(rig, "IT")
    t = rig.units("IT")
    site = int(np.argmin(np.hypot(t.tissue_x_mm - at[0], t.tissue_y_mm - at[1])))
    ids = [rig.model.region_units("IT").neuroid_ids([site])[0]]
    base = rig.record(grat, ids, progress=False).values.mean()
    changes = []
    for current in (0, 10, 40, 160):
        with rig.perturb(Microstimulation("IT", at_mm=at, current_ua=current)):
            changes.append(rig.record(grat, ids, progress=False).values.mean() - base)
    assert changes[0] == 0
    assert all(b > a for a, b in itertools.pairwise(changes))
    # and falls with distance from the tip
    m = Microstimulation("IT", at_mm=at, current_ua=40).drive_hz(rig.model).numpy()
    d = np.hypot(t.tissue_x_mm - at[0], t.tissue_y_mm - at[1]).to_numpy()
    assert m[np.argmin(d)] > m[d > 2].max()


def test_optogenetic_suppress_and_activate(rig, grat):
    at = _centre(rig, "IT")
    base = rig.record(grat, "IT", progress=False).values
    with rig.perturb(Optogenetic("IT", at_mm=at, power_mw=2.0)):
        down = rig.record(grat, "IT", progress=False).values
    with rig.perturb(Optogenetic("IT", at_mm=at, power_mw=1.0, mode="activate")):
        up = rig.record(grat, "IT", progress=False).values
    assert down.sum() < base.sum() < up.sum()


def test_lesion_of_readout_region_gives_chance_and_random_one_percent_little(rig, task):
    train, labels, decoder = task
    assert decoder.cv_accuracy > 0.9
    whole = compare(
        rig,
        train,
        Lesion("IT"),
        readout="behaviour",
        task=decoder,
        labels=labels,
        controls=0,
        progress=False,
    )
    # accuracy under the lesion (baseline + effect CI) contains chance
    assert whole.baseline + whole.ci[0] <= decoder.chance <= whole.baseline + whole.ci[1]
    n_units = len(rig.units("IT"))
    few = np.random.default_rng(0).choice(n_units, size=n_units // 100, replace=False)
    small = compare(
        rig,
        train,
        Lesion("IT", neuroids=few),
        readout="behaviour",
        task=decoder,
        labels=labels,
        controls=10,
        progress=False,
    )
    assert abs(small.effect) < 0.05


def test_directional_ablation_is_a_projection(rig, grat):
    model = rig.model
    layer = model.region("V4").layer
    c = model.layer_shape(layer)[0]
    dirs = np.random.default_rng(0).standard_normal((3, c))
    q, _ = np.linalg.qr(dirs.T)
    q = torch.as_tensor(q.T, dtype=torch.float32)
    images = rig.present(grat)
    before = model.activations(images, [layer])[layer].permute(0, 2, 3, 1)
    with rig.perturb(DirectionalAblation("V4", dirs)):
        after = model.activations(images, [layer])[layer].permute(0, 2, 3, 1)
    assert (after @ q.T).abs().max() < 1e-4 * before.abs().max()
    keep = lambda x: x - (x @ q.T) @ q  # noqa: E731
    assert torch.allclose(keep(after), keep(before), atol=1e-5)
    # flattened-unit subspace too
    n_units = len(rig.units("V4"))
    with rig.perturb(DirectionalAblation("V4", np.ones(n_units))):
        flat = model.activations(images, [layer])[layer].reshape(len(images), -1)
    assert flat.sum(1).abs().max() < 1e-3


def test_ablation_zero_and_mean(rig, grat):
    model = rig.model
    layer = model.region("V2").layer
    images = rig.present(grat)
    ref = stimuli.natural(16, size_deg=8, seed=0)
    with rig.perturb(Ablation("V2", channels=[0, 3])):
        a = model.activations(images, [layer])[layer]
    assert (a[:, [0, 3]] == 0).all() and (a[:, 1].abs() > 0).any()
    with rig.perturb(Ablation("V2", channels=[2], value="mean", reference=ref)):
        m = model.activations(images, [layer])[layer]
    assert torch.allclose(m[0, 2], m[-1, 2])  # the same (mean) value for every image
    mean_ref = model.activations(rig.present(ref), [layer])[layer][:, 2].mean(0)
    assert torch.allclose(m[0, 2], mean_ref, atol=1e-5)


def test_hooks_removed_after_exception_and_composition(rig, grat):
    base = rig.record(grat, "V4", progress=False)
    with pytest.raises(RuntimeError, match="boom"):
        with rig.perturb(Lesion("V2"), Muscimol("V4", at_mm=_centre(rig, "V4"))):
            raise RuntimeError("boom")
    assert not rig.perturbations
    after = rig.record(grat, "V4", progress=False)
    assert np.array_equal(base.values, after.values)
    # persistent application and composition
    rig.apply(Lesion("V1"))
    rig.apply(Muscimol("V4", at_mm=_centre(rig, "V4")))
    assert len(rig.perturbations) == 2
    lesioned = rig.record(grat, "V4", progress=False)
    assert not np.array_equal(base.values, lesioned.values)
    rig.clear()
    assert np.array_equal(base.values, rig.record(grat, "V4", progress=False).values)


def test_provenance_round_trip(rig, grat, tmp_path):
    p = Muscimol("IT", at_mm=_centre(rig, "IT"), volume_ul=0.5)
    with rig.perturb(p):
        rec = rig.record(grat, "IT", progress=False)
        beh = rig.behave(grat)
    assert "Muscimol" in rec.attrs["perturbations"] and "0.5" in rec.attrs["perturbations"]
    assert "Muscimol" in beh.attrs["perturbations"]
    back = recordings.open(recordings.save(rec, tmp_path / "p.zarr"))
    assert back.attrs["perturbations"] == rec.attrs["perturbations"]
    plain = rig.record(grat, "IT", progress=False)
    assert plain.attrs["perturbations"] == "[]"


def test_behave_outputs(rig, grat, task):
    _, _, decoder = task
    b = rig.behave(grat)
    assert b.dims == ("presentation", "choice") and b.sizes["choice"] == 10
    assert np.allclose(b.sum("choice"), 1, atol=1e-5)
    assert "label" in b.coords and "orientation_deg" in b.coords
    d = rig.behave(grat, task=decoder)
    assert list(d.choice.values) == ["horizontal", "vertical"]
    with rig.perturb(Lesion("IT")):
        lesioned = rig.behave(grat, task=decoder)
    assert not np.allclose(lesioned.values, d.values)


def test_batched_controls_equal_serial(rig, task, monkeypatch):
    train, labels, decoder = task
    p = Muscimol("IT", at_mm=_centre(rig, "IT"), volume_ul=1.0)

    def behaviour_and_neural():
        common = dict(controls=6, seed=3, progress=False)
        return (
            compare(rig, train, p, readout="behaviour", task=decoder, labels=labels, **common),
            compare(rig, train, p, readout="neural", targets="IT", **common),
        )

    batched, neural_b = behaviour_and_neural()
    import perturb.effects as pc

    monkeypatch.setattr(pc, "_is_map_perturbation", lambda p: False)
    serial, neural_s = behaviour_and_neural()
    assert batched.batched and not serial.batched
    assert np.allclose(batched.control_effects, serial.control_effects)
    assert batched.effect == pytest.approx(serial.effect)
    assert np.allclose(neural_b.control_effects, neural_s.control_effects, atol=1e-4)
    assert neural_b.effect == pytest.approx(neural_s.effect, abs=1e-4)
    assert neural_b.effect < 0 and neural_b.ci[1] < 0


def test_bad_input(rig, grat):
    with pytest.raises(ValueError, match="no region 'MT'"):
        with rig.perturb(Muscimol("MT", at_mm=(1, 1))):
            pass
    with pytest.raises(ValueError, match="off the IT sheet"):
        with rig.perturb(Muscimol("IT", at_mm=(500, 1))):
            pass
    with pytest.raises(ValueError, match="current_ua must be a number >= 0"):
        Microstimulation("IT", at_mm=(1, 1), current_ua=-5)
    with pytest.raises(ValueError, match="volume_ul must be a number >= 0"):
        Muscimol("IT", at_mm=(1, 1), volume_ul=-1)
    with pytest.raises(ValueError, match=r"directions have dimension 7; V4 .* needs 32"):
        with rig.perturb(DirectionalAblation("V4", np.eye(2, 7))):
            pass
    with pytest.raises(ValueError, match="linearly dependent"):
        DirectionalAblation("V4", np.ones((2, 32)))
    with pytest.raises(TypeError, match="expected perturbations"):
        with rig.perturb("lesion"):
            pass
    with pytest.raises(ValueError, match="needs labels"):
        compare(rig, grat, Lesion("IT"), readout="behaviour", task="imagenet")
    assert not rig.perturbations
    xr.testing.assert_equal(
        rig.record(grat, "V1", progress=False), rig.record(grat, "V1", progress=False)
    )


def test_preferred_site_finds_the_patch_preferring_a_label(rig):
    from perturb import preferred_site

    horizontal = stimuli.gratings(size_deg=8, orientation_deg=[0], phase_deg=range(0, 360, 30))
    vertical = stimuli.gratings(size_deg=8, orientation_deg=[90], phase_deg=range(0, 360, 30))
    both = stimuli.concat({"h": horizontal, "v": vertical})
    site_h = preferred_site(rig, "V1", both, "set", "h", radius_mm=0.5)
    site_v = preferred_site(rig, "V1", both, "set", "v", radius_mm=0.5)
    rates = rig.region_rates(both, "V1").numpy()
    xy = rig.model.units("V1")[["tissue_x_mm", "tissue_y_mm"]].to_numpy()
    is_h = both.meta["set"].to_numpy() == "h"

    def h_minus_v(site):
        near = np.hypot(*(xy - np.asarray(site)).T) < 0.5
        return rates[is_h][:, near].mean() - rates[~is_h][:, near].mean()

    assert h_minus_v(site_h) > 0 > h_minus_v(site_v)
    with pytest.raises(ValueError, match="prefer='x' must label some but not all"):
        preferred_site(rig, "V1", both, "set", "x")
