"""The virtual animal: seeded, opaque, over-dispersed, on a budget, and mappable."""

import numpy as np
import pytest

import insilico as lab
import recordings
from insilico.animals import FANO, VirtualAnimal

N_SITES = 24


@pytest.fixture(scope="module")
def animal():
    return VirtualAnimal(model="tiny", region="V4", n_sites=N_SITES, seed=3, trial_budget=5000)


@pytest.fixture(scope="module")
def stim():
    return lab.stimuli.natural(160, size_deg=8, seed=1)


@pytest.fixture(scope="module")
def rec(animal, stim):
    return animal.show(stim, repeats=4, seed=0)


def test_recording_is_in_the_lab_format_with_opaque_sites(animal, rec, stim):
    recordings.format.check_recording(rec)
    assert rec.shape == (len(stim) * 4, N_SITES, 1)
    ids = [str(v) for v in rec.neuroid_id.values]
    assert ids == [f"site_{k:03d}" for k in range(N_SITES)] == animal.site_ids
    assert np.isnan(rec.rf_x_deg.values).all() and (rec.channel.values == -1).all()
    assert rec.attrs["model"] == "tiny" and "virtual animal" in rec.attrs["source"]
    assert list(rec.repetition.values[:4]) == [0, 1, 2, 3]
    assert "seed" in rec.coords  # the stimulus parameters ride along
    assert (rec.values >= 0).all() and np.isfinite(rec.values).all()


def test_the_insides_are_hidden(animal):
    public = [a for a in dir(animal) if not a.startswith("_")]
    assert not any(isinstance(getattr(animal, a), lab.BrainModel) for a in public)
    assert not any("mix" in a or "unit" in a or a == "model" for a in public)
    text = repr(animal)
    assert "tiny" in text and "V4" in text and f"{N_SITES} sites" in text and "left" in text
    insides = animal.reveal()
    assert len(insides.units) == N_SITES
    assert all(1 <= len(u) <= 5 and all(i.startswith("V4.") for i in u) for u in insides.units)
    assert all(np.isclose(w.sum(), 1) and (w >= 0).all() for w in insides.weights)


def test_same_seed_same_animal_and_same_responses(animal, stim, rec):
    twin = VirtualAnimal(model="tiny", region="V4", n_sites=N_SITES, seed=3)
    assert twin.reveal().units == animal.reveal().units
    again = twin.show(stim[:20], repeats=4, seed=0)
    np.testing.assert_array_equal(again.values, rec.values[:80])
    other = VirtualAnimal(model="tiny", region="V4", n_sites=N_SITES, seed=4)
    assert other.reveal().units != animal.reveal().units
    assert not np.array_equal(twin.show(stim[:20], repeats=4, seed=1).values, again.values)


def test_counts_are_over_dispersed(animal, stim, rec):
    """Variance / mean of repeated counts matches the sites' Fano factors (> 1, not Poisson's
    1); the means match the ground-truth rates."""
    window = float(rec.time_bin_end[0] - rec.time_bin_start[0]) / 1000
    counts = rec.values[:, :, 0].reshape(len(stim), 4, N_SITES) * window
    mean, var = counts.mean(1), counts.var(1, ddof=1)
    ok = mean > 0.5
    fano = var[ok].sum() / mean[ok].sum()
    insides = animal.reveal()
    assert FANO[0] <= insides.fano.min() and insides.fano.max() <= FANO[1]
    assert 1.2 < fano < 2.1 and abs(fano - insides.fano.mean()) < 0.25
    truth = insides.rates(stim) * window
    assert abs(counts.mean() / truth.mean() - 1) < 0.05


def test_trial_budget_is_enforced_before_recording(stim):
    small = VirtualAnimal(model="tiny", region="V4", n_sites=4, seed=0, trial_budget=100)
    small.show(stim[:30], repeats=2)
    assert small.trials_used == 60 and small.trials_left == 40
    with pytest.raises(ValueError, match="needs 60 trials; the animal has 40") as err:
        small.show(stim[:30], repeats=2)
    assert "\n" not in str(err.value)
    assert small.trials_left == 40
    small.show(stim[:40])
    assert small.trials_left == 0 and "0 left" in repr(small)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"region": "MT"}, "has no region 'MT'; its regions are V1, V2, V4, IT"),
        ({"n_sites": 0}, "n_sites must be a positive integer"),
        ({"trial_budget": 0}, "trial_budget must be a positive integer"),
        ({"model": "nope"}, "unknown model 'nope'"),
    ],
)
def test_bad_input_is_one_line(kwargs, message):
    with pytest.raises(ValueError, match=message) as err:
        VirtualAnimal(**{"model": "tiny", **kwargs})
    assert "\n" not in str(err.value)


def test_mapping_onto_a_model_end_to_end(animal, rec, stim):
    """Day 1 mapped onto a rig (here the tiny model itself; Lite0 in the README)."""
    rig = lab.Rig(lab.load_model("tiny"))
    mapped = rig.map_neurons(rec, "V4", stimuli_set=stim, cv=5, progress=False)
    assert list(mapped.neuroid_ids) == animal.site_ids
    assert np.isfinite(mapped.predictivity).all()
    assert (mapped.noise_ceiling > 0).mean() > 0.8
    assert np.median(mapped.predictivity) > 0.1
    # day 2: images synthesized for the mapped sites, shown to the animal
    ref = stim[:16]  # a small reference set keeps the synthesis quick
    res = rig.synthesize(mapped.sites[:2], size_deg=6, steps=2, reference=ref, progress=False)
    left = animal.trials_left
    day2 = animal.show(res, repeats=2, seed=5)
    assert day2.sizes["presentation"] == 2 * len(res.table) and animal.trials_left == left - 4
    assert set(map(str, day2.stimulus_id.values)) == set(res.table["stimulus_id"].astype(str))
