"""Topographic arrangements: the spatial-correlation objective, the swap optimisation, the
arrangement a commitment names, and the fine-tuned topographic model's weight change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import insilico as lab
from insilico.brain.layout import arrange
from insilico.brain.topography import (
    cell_distances,
    channel_correlations,
    grid_size,
    spatial_correlation,
    swap_arrangement,
    swap_units,
)


def _grid_cells(c: int) -> np.ndarray:
    g = grid_size(c)
    return np.array([(i // g, i % g) for i in range(c)])


def _smooth_responses(c: int, seed: int = 0) -> tuple[torch.Tensor, np.ndarray]:
    """Activations whose correlation falls with distance on a hidden arrangement."""
    rng = np.random.default_rng(seed)
    hidden = _grid_cells(c)[rng.permutation(c)]
    basis = rng.normal(size=(400, 6))
    ang = hidden[:, 1:2] * 0.6 + hidden[:, 0:1] * 0.3
    weights = np.c_[np.cos(ang), np.sin(ang), np.cos(2 * ang), np.sin(2 * ang), hidden / 10]
    acts = basis @ weights.T + 0.3 * rng.normal(size=(400, c))
    return torch.as_tensor(acts, dtype=torch.float32)[:, :, None, None], hidden


def test_spatial_correlation_of_a_known_arrangement():
    acts, hidden = _smooth_responses(30)
    r = channel_correlations(acts)
    assert torch.allclose(r, r.T) and torch.allclose(r.diag(), torch.ones(30), atol=1e-5)
    d = torch.as_tensor(cell_distances(hidden, 1.0))
    true = float(spatial_correlation(r, d))
    shuffled = [
        float(spatial_correlation(r, torch.as_tensor(cell_distances(hidden[p], 1.0))))
        for p in (np.random.default_rng(k).permutation(30) for k in range(20))
    ]
    assert true > 0.3 and max(shuffled) < true  # the null (shuffled places) stays below


def test_swap_gain_matches_the_objective_and_beats_the_start():
    acts, _ = _smooth_responses(30, seed=1)
    r = channel_correlations(acts).double().numpy()
    start = _grid_cells(30)  # arbitrary: unrelated to the hidden arrangement
    cells, info = swap_arrangement(r, start, cell_mm=1.0)
    assert info["swaps"] > 0
    assert info["objective_after"] > info["objective_before"] + 0.2
    assert len({tuple(x) for x in cells}) == 30  # one cell per channel
    # the swaps stop at a local optimum: no single swap of two channels raises the objective
    d0 = cell_distances(cells, 1.0)
    w = 1 / (d0 + 1)
    a = r - np.eye(30)
    base = (a * w).sum()
    for p, q in [(0, 1), (3, 17), (5, 29)]:
        s = np.arange(30)
        s[[p, q]] = s[[q, p]]
        assert (a * w[np.ix_(s, s)]).sum() <= base + 1e-9


def test_unit_swaps_raise_the_objective_from_a_shuffled_start():
    acts, _ = _smooth_responses(36, seed=2)  # 36 "units" with a hidden 6 x 6 layout
    r = channel_correlations(acts).numpy()
    start = np.random.default_rng(0).permutation(36)
    slot, info = swap_units(r, start, 6, cell_mm=1.0, radius_mm=3.0, batches=400)
    assert sorted(slot) == list(range(36))  # every unit its own cell
    assert info["swaps"] > 0 and info["objective_after"] > info["objective_before"]
    cells = np.c_[slot // 6, slot % 6]
    got = float(spatial_correlation(torch.as_tensor(r), torch.as_tensor(cell_distances(cells, 1))))
    began = np.c_[start // 6, start % 6]
    was = float(spatial_correlation(torch.as_tensor(r), torch.as_tensor(cell_distances(began, 1))))
    assert got > was + 0.2
    with pytest.raises(ValueError, match="its own cell"):
        swap_units(r, np.zeros(36, dtype=int), 6, 1.0)


def test_unit_swap_places_it_units_one_by_one():
    model = lab.load_model("tiny", arrangement={"IT": "unit-swap"})
    ru = model.region_units("IT")
    t = ru.table
    assert ru.arrangement == "unit-swap" and ru.spatial_correlation > 0.1
    for hemi in ("left", "right"):
        xy = t.loc[t["hemisphere"] == hemi, ["tissue_x_mm", "tissue_y_mm"]].round(6)
        assert len(xy.drop_duplicates()) == len(xy)  # one place per unit
    # a channel's units are no longer one patch: they spread over the sheet
    spread = t.groupby("channel")["tissue_x_mm"].agg(np.ptp).median()
    patch = lab.load_model("tiny").units("IT").groupby("channel")["tissue_x_mm"].agg(np.ptp)
    assert spread > 2 * patch.median()


def test_arrangements_on_the_tiny_model(tiny):
    layer = tiny.region("IT").layer
    from insilico.brain.units import calibration_images

    acts = tiny.activations(calibration_images(tiny), [layer])[layer]
    sim, sim_info = arrange("similarity", acts, 1.0)
    swap, swap_info = arrange("swap", acts, 1.0)
    assert swap_info["spatial_correlation"] >= sim_info["spatial_correlation"]
    assert not np.array_equal(sim, swap)
    rand, rand_info = arrange("random", acts, 1.0)
    assert rand_info["spatial_correlation"] < sim_info["spatial_correlation"]
    assert sorted(map(tuple, rand)) == sorted(map(tuple, sim))
    with pytest.raises(ValueError, match="trained"):
        arrange("trained", acts, 1.0)


def test_load_model_with_an_arrangement(tiny):
    swapped = lab.load_model("tiny", arrangement="swap")
    assert swapped.region("IT").arrangement == "swap"
    assert swapped.identity()["commitment"]["arrangements"]["IT"] == "swap"
    a, b = tiny.region_units("IT"), swapped.region_units("IT")
    assert a.arrangement == "similarity" and b.arrangement == "swap"
    assert b.spatial_correlation >= a.spatial_correlation
    # the retinotopic frame is kept: same RFs, different tissue positions
    assert np.allclose(a.table["rf_x_deg"], b.table["rf_x_deg"])
    assert not np.allclose(a.table["tissue_x_mm"], b.table["tissue_x_mm"])
    only_it = lab.load_model("tiny", arrangement={"IT": "swap"})
    assert only_it.region("V1").arrangement == "similarity"


@pytest.mark.parametrize(
    ("arrangement", "message"),
    [
        ("spiral", "for V1 must be one of similarity, swap, trained, random, unit-swap, got"),
        ("unit-swap", "V1: arrangement 'unit-swap' places the units of a non-retinotopic"),
        ({"V9": "swap"}, "has no region 'V9'"),
        ("trained", "no trained arrangement for V1"),
    ],
)
def test_bad_arrangement_is_one_line(arrangement, message):
    with pytest.raises(ValueError, match=message) as err:
        lab.load_model("tiny", arrangement=arrangement)
    assert "\n" not in str(err.value)


def test_rates_through_maps_equal_a_perturbed_recording(tiny_rig):
    from perturb import Microstimulation, Muscimol
    from perturb.conditions import rates_through_maps

    model = tiny_rig.model
    stim = lab.stimuli.natural(6, 8.0, seed=3)
    layer = model.region("IT").layer
    acts = model.activations(tiny_rig.present(stim, np.arange(6)), [layer])[layer]
    flat = acts.reshape(6, -1)
    for p in (
        Muscimol("IT", (3.0, 4.0), volume_ul=1.0),
        Microstimulation("IT", (6.0, 5.0), current_ua=100.0, hemisphere="right"),
    ):
        with tiny_rig.perturb(p):
            want = tiny_rig.region_rates(stim, "IT")
        got = rates_through_maps(model, "IT", flat, p.unit_maps(model))
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-3)
        assert not torch.allclose(got, model.rates("IT", flat), atol=1e-2)


def test_topographic_model_is_lite0_plus_a_shipped_change(effnet):
    topo = lab.load_model("efficientnet_lite0_topo")
    assert "+delta-sha256:" in topo.weights_id
    assert topo.region("IT").arrangement == "trained"
    cells = topo.trained_cells["_blocks.14"]
    assert cells.shape == (192, 2) and len({tuple(x) for x in cells}) == 192
    base = dict(effnet.network.named_parameters())
    changed = {
        name.split(".")[1]
        for name, p in topo.network.named_parameters()
        if name.startswith("_blocks.") and not torch.allclose(p, base[name])
    }
    assert changed and {int(b) for b in changed} <= set(range(8, 15))
    images = torch.rand(2, 3, 224, 224)
    v4 = "_blocks.7"
    assert torch.allclose(
        topo.activations(images, [v4])[v4], effnet.activations(images, [v4])[v4], atol=1e-4
    )
