import itertools

import numpy as np
import pytest
import torch
import xarray as xr

import insilico as lab
import recordings
import stimuli
from insilico.analysis import compare, control_statistics
from perturb import (
    Ablation,
    DirectionalAblation,
    Lesion,
    Microstimulation,
    Muscimol,
    Optogenetic,
)
from perturb.inactivation import MUSCIMOL_R1_MM
from perturb.microstimulation import STONEY_K_UA_PER_MM2
from perturb.sheet import unit_footprint_mm


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


def _unit_at(rig, region, at):
    """(x, y) of the left-hemisphere unit nearest ``at`` (inject exactly at a unit)."""
    t = rig.units(region)
    t = t[t.hemisphere == "left"]
    k = int(np.argmin(np.hypot(t.tissue_x_mm - at[0], t.tissue_y_mm - at[1])))
    return float(t.tissue_x_mm.iloc[k]), float(t.tissue_y_mm.iloc[k])


def test_muscimol_scales_the_rate_once_and_stays_on_its_hemisphere(rig, grat):
    """The recorded rate of a silenced unit is f * R(u) — the old model applied f twice
    (gain on the activation and again on the rate); the other hemisphere is untouched."""
    t = rig.units("V1")
    at = _unit_at(rig, "V1", _centre(rig, "V1"))
    base = rig.record(grat, "V1", progress=False).values
    m = Muscimol("V1", at_mm=at, volume_ul=1.0)
    with rig.perturb(m):
        pert = rig.record(grat, "V1", progress=False).values
    f = m.factor(rig.model).numpy()
    np.testing.assert_allclose(pert, base * f[None, :, None], rtol=1e-4, atol=1e-4)
    right = (t.hemisphere == "right").to_numpy()
    assert (f[right] == 1).all() and np.array_equal(pert[:, right], base[:, right])
    d = np.hypot(t.tissue_x_mm - at[0], t.tissue_y_mm - at[1]).to_numpy()
    assert f[np.argmin(np.where(right, np.inf, d))] == 0  # the centre is silent
    left = ~right
    assert (f[left & (d >= 2 * MUSCIMOL_R1_MM)] > 0.99).all()
    # monotone in distance
    order = np.argsort(d[left])
    assert (np.diff(f[left][order]) >= -1e-6).all()


def test_muscimol_volume_sets_spread_not_depth(rig):
    """0.5 µl used to silence no unit; now every volume silences its centre and the
    half-suppression radius grows as volume^(1/3)."""
    at = _unit_at(rig, "IT", _centre(rig, "IT"))
    model = rig.model
    silenced, radii = [], []
    for volume in (0.1, 0.5, 1.0, 2.0):
        m = Muscimol("IT", at_mm=at, volume_ul=volume)
        f = m.factor(model).numpy()
        assert f.min() == 0  # the unit at the centre is silent at any volume
        silenced.append(int((f <= 0.5).sum()))
        radii.append(m.radius_mm)
    assert all(b > a for a, b in itertools.pairwise(silenced)), silenced
    assert radii[2] == pytest.approx(MUSCIMOL_R1_MM)
    assert radii[3] / radii[2] == pytest.approx(2 ** (1 / 3))
    assert (Muscimol("IT", at_mm=at, volume_ul=0).factor(model) == 1).all()


def test_microstimulation_depends_on_current_rate_and_duration(rig, grat):
    """1 µA used to add the full max_hz at the tip; now current sets the activated volume
    (Stoney: r = sqrt(I / K)), and effects grow with current, pulse rate and duration."""
    model = rig.model
    at = _unit_at(rig, "IT", _centre(rig, "IT"))
    max_hz = model.region("IT").max_hz
    sigma = unit_footprint_mm(model, "IT")

    def activated(current):  # neurons activated, in units' worth
        return float(Microstimulation("IT", at, current).activated_fraction(model).sum())

    assert Microstimulation("IT", at, 1.0).radius_mm == pytest.approx(np.sqrt(1 / 1292))
    # the activated area pi r^2 = pi I / K, counted in units' footprints (2 pi sigma^2)
    expected = np.pi * 40.0 / STONEY_K_UA_PER_MM2 / (2 * np.pi * np.median(sigma) ** 2)
    assert activated(40.0) == pytest.approx(expected, rel=0.5)
    counts = [activated(c) for c in (0.0, 1.0, 10.0, 40.0, 160.0)]
    assert counts[0] == 0 and all(b > a for a, b in itertools.pairwise(counts))
    assert counts[1] < 0.2  # 1 µA activates a fifth of one unit's neurons at most
    tip = Microstimulation("IT", at, 1.0).drive_hz(model).max()
    assert tip < 0.5 * max_hz
    # pulse rate and duration scale the added drive monotonically; zero of either: nothing
    for kw in ("pulse_hz", "duration_ms"):
        drives = [
            float(Microstimulation("IT", at, 40.0, **{kw: v}).drive_hz(model).sum())
            for v in (0.0, 25.0, 50.0, 100.0)
        ]
        assert drives[0] == 0 and all(b > a for a, b in itertools.pairwise(drives)), kw
    # recorded: more current, more spikes, never above max_hz
    t = rig.units("IT")
    d = np.hypot(t.tissue_x_mm - at[0], t.tissue_y_mm - at[1]).to_numpy()
    site = int(np.argmin(np.where(t.hemisphere == "left", d, np.inf)))
    ids = [model.region_units("IT").neuroid_ids([site])[0]]
    rates = []
    for current in (0.0, 10.0, 40.0, 400.0):
        with rig.perturb(Microstimulation("IT", at_mm=at, current_ua=current)):
            rates.append(rig.record(grat, ids, progress=False).values)
    means = [r.mean() for r in rates]
    assert all(b > a for a, b in itertools.pairwise(means)) and rates[-1].max() <= max_hz


def test_optogenetic_suppress_and_activate(rig, grat):
    at = _centre(rig, "IT")
    base = rig.record(grat, "IT", progress=False).values
    with rig.perturb(Optogenetic("IT", at_mm=at, power_mw=2.0)):
        down = rig.record(grat, "IT", progress=False).values
    with rig.perturb(Optogenetic("IT", at_mm=at, power_mw=1.0, mode="activate")):
        up = rig.record(grat, "IT", progress=False).values
    assert down.sum() < base.sum() < up.sum()
    # light power sets how far suppression reaches (irradiance of the light cone)
    at = _unit_at(rig, "IT", at)
    halved = [
        int((Optogenetic("IT", at, power_mw=p).unit_maps(rig.model).silencing <= 0.5).sum())
        for p in (0.1, 1.0, 10.0, 100.0)
    ]
    assert halved[0] >= 1 and all(b > a for a, b in itertools.pairwise(halved)), halved


def test_matched_controls_affect_as_much_tissue_drawn_by_area(rig):
    """Controls used to repeat the dose at a unit-uniform site; now they affect the same
    number of units (within 5 %) at sites drawn uniformly over the sheet's area, also when
    the real injection sits at the sheet's edge."""
    from perturb.sheet import MATCH_TOLERANCE, random_site

    model = rig.model
    ex, ey = model.region_units("V1").sheet_extent_mm
    for at in (_unit_at(rig, "V1", (ex / 2, ey / 2)), _unit_at(rig, "V1", (0.0, 0.0))):
        real = Muscimol("V1", at_mm=at, volume_ul=0.05)
        target = real.affected(model)
        rng = np.random.default_rng(0)
        for _ in range(4):
            c = real.random_control(model, rng)
            n = c.affected(model, 0.5)
            assert abs(n - target) <= max(1, MATCH_TOLERANCE * target), (n, target)
    # area-uniform: sites land on a unit in proportion to the area it covers
    sigma = unit_footprint_mm(model, "V1")
    t = rig.units("V1")
    xy = t[["tissue_x_mm", "tissue_y_mm"]].to_numpy()
    rng = np.random.default_rng(1)
    hit = []
    for _ in range(300):
        (x, y), hemi = random_site(model, "V1", rng)
        mine = np.flatnonzero(t.hemisphere.to_numpy() == hemi)
        hit.append(mine[np.argmin(np.hypot(xy[mine, 0] - x, xy[mine, 1] - y))])
    area = sigma**2
    assert area[hit].mean() > 1.3 * area.mean()  # big-footprint units are hit more often


def test_control_statistics_match_hand_computed_values():
    # real effect -0.3 among controls: |c| >= 0.3 for 2 of 5 -> p = (1 + 2) / 6
    c = np.array([0.1, -0.35, 0.3, -0.05, 0.2])
    s = control_statistics(-0.3, c)
    assert s["p_value"] == pytest.approx(3 / 6)
    assert s["rank"] == pytest.approx(3 / 5)  # 0.1, 0.05, 0.2 smaller in magnitude
    # directional (negative): controls <= -0.3: only -0.35 -> (1 + 1) / 6
    assert s["p_directional"] == pytest.approx(2 / 6)
    # no control as large: the smallest p a permutation test with 5 controls can give
    assert control_statistics(1.0, c)["p_value"] == pytest.approx(1 / 6)


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
    import insilico.analysis.effects as effects

    monkeypatch.setattr(effects, "acts_through_unit_maps", lambda p: False)
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
    with pytest.raises(ValueError, match="hemisphere must be 'left' or 'right', got 'both'"):
        Muscimol("IT", at_mm=(1, 1), hemisphere="both")
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
    from insilico.analysis import preferred_site

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


def test_unit_dprime_is_the_one_dprime_hand_computed():
    """One d' for the lab (category selectivity and preferred sites used different epsilons)."""
    from insilico.analysis import unit_dprime

    a = np.array([[1.0, 2.0], [3.0, 2.0]])  # unit 0: mean 2, var 1; unit 1: constant 2
    b = np.array([[0.0, 2.0], [0.0, 2.0]])  # unit 0: mean 0, var 0; unit 1: constant 2
    d = unit_dprime(a, b)
    assert d[0] == pytest.approx(2.0 / np.sqrt(0.5 + 1e-6))
    assert d[1] == 0.0  # silent difference, zero variance: 0, not NaN
    assert unit_dprime(b, a)[0] == pytest.approx(-d[0])  # signed
