"""Ensembles over networks: one recording mapped onto two cores, predicted and synthesized
by the mean of their mapped rates."""

import numpy as np
import pytest
import torch

import insilico as lab
from insilico.animals import VirtualAnimal
from rigs.cores import ensemble_predictivity
from rigs.scoring import population_drive
from rigs.targets import resolve_targets


@pytest.fixture(scope="module")
def session():
    animal = VirtualAnimal(model="tiny", region="V4", n_sites=12, seed=3, trial_budget=2000)
    stim = lab.stimuli.natural(120, size_deg=8, seed=1)
    rec = animal.show(stim, repeats=2, seed=0)
    a, b = lab.Rig(lab.load_model("tiny")), lab.Rig(lab.load_model("tiny_b"))
    ma = a.map_neurons(rec, "V4", stimuli_set=stim, cv=4, progress=False)
    mb = b.map_neurons(rec, "V4", stimuli_set=stim, cv=4, progress=False)
    return a, b, ma, mb, stim, rec


def test_one_mapping_reproduces_its_own_predictivity(session):
    _, _, ma, mb, _, _ = session
    np.testing.assert_allclose(ensemble_predictivity([ma]), ma.predictivity, atol=1e-5)
    sub = ma.sites[[5, 2]]
    np.testing.assert_allclose(ensemble_predictivity([sub]), ma.predictivity[[5, 2]], atol=1e-5)
    # the other core's sites are matched by recorded id, not by position
    both = ensemble_predictivity([sub, mb])
    full = ensemble_predictivity([ma, mb])
    np.testing.assert_allclose(both, full[[5, 2]], atol=1e-6)


def test_two_cores_predict_at_least_as_well_as_the_worse_and_a_null_does_not(session):
    a, b, ma, mb, stim, rec = session
    r = ensemble_predictivity([ma, mb])
    assert np.median(r) >= min(np.median(ma.predictivity), np.median(mb.predictivity)) - 0.02
    # null: responses shuffled across stimuli (the same permutation for both cores)
    perm = np.random.default_rng(0).permutation(len(stim))
    ids = np.asarray(stim.ids)
    shuffled = rec.assign_coords(stimulus_id=("presentation", _permuted(rec, ids, perm)))
    na = a.map_neurons(shuffled, "V4", stimuli_set=stim, cv=4, progress=False)
    nb = b.map_neurons(shuffled, "V4", stimuli_set=stim, cv=4, progress=False)
    assert abs(np.median(ensemble_predictivity([na, nb]))) < 0.15 < np.median(r)


def _permuted(rec, ids: np.ndarray, perm: np.ndarray) -> np.ndarray:
    new = dict(zip(ids, ids[perm], strict=True))
    return np.array([new[str(s)] for s in rec.stimulus_id.values])


def test_synthesis_optimises_and_reports_the_mean_over_cores(session):
    a, b, ma, mb, stim, _ = session
    common = dict(size_deg=6, steps=24, reference=stim[:16], progress=False, seed=0)
    res = a.synthesize(ma.sites[:3], cores=[(b, mb)], **common)
    assert res.attrs["cores"] == ["tiny", "tiny_b"]
    shown = lab.stimuli.from_arrays(
        res.displayed_luminance(a.display), size_deg=6, encoding="linear"
    )
    da = population_drive(a, shown, resolve_targets(a.model, ma))
    db = population_drive(b, shown, resolve_targets(b.model, mb))
    mean = ((da + db) / 2)[torch.arange(3), torch.arange(3)]
    np.testing.assert_allclose(res.table["drive"].to_numpy(), mean.numpy(), rtol=1e-4, atol=1e-4)
    # images synthesized on one core drive the two-core mean less than those made for it
    alone = a.synthesize(ma.sites[:3], **common)
    shown_a = lab.stimuli.from_arrays(
        alone.displayed_luminance(a.display), size_deg=6, encoding="linear"
    )
    da = population_drive(a, shown_a, resolve_targets(a.model, ma))
    db = population_drive(b, shown_a, resolve_targets(b.model, mb))
    mean_alone = ((da + db) / 2)[torch.arange(3), torch.arange(3)]
    assert mean.sum() > mean_alone.sum()


def test_bad_cores_are_one_line_errors(session):
    a, b, ma, mb, stim, rec = session
    common = dict(size_deg=6, steps=1, reference=stim[:8], progress=False)
    cases = [
        (dict(targets="V4", cores=[(b, mb)]), "targets must be MappedSites"),
        (dict(targets=ma.sites[:1], cores=[mb]), "(Rig, MappedSites) pairs"),
        (dict(targets=ma.sites[:1], cores=b), "(Rig, MappedSites) pairs"),
        (dict(targets=ma.sites[:1], cores=[(a, mb)]), "mapped onto 'tiny_b', their rig holds"),
    ]
    few = b.map_neurons(rec.isel(neuroid=slice(0, 6)), "V4", stimuli_set=stim, cv=4, progress=False)
    cases.append((dict(targets=ma.sites[:1], cores=[(b, few)]), "lack recorded neuroid 'site_006'"))
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
            a.synthesize(**kwargs, **common)
        assert "\n" not in str(e.value)
    other = b.map_neurons(rec, "V4", stimuli_set=stim, cv=3, progress=False)
    with pytest.raises(ValueError, match="mappings differ in cv"):
        ensemble_predictivity([ma, other])
