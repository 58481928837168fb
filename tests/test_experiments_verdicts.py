"""The statistics behind the verdicts: cross-validated metrics, exact intervals for 0/1
values, paired intervals, computed nulls and matched controls."""

import numpy as np
import pytest
import xarray as xr
from _experiments import BASE, fewer_resamples  # noqa: F401 (autouse fixture)

from insilico.analysis import Effect
from insilico.experiments.metrics import RECORD_METRICS, _category_dprime, _curves
from insilico.experiments.results import MeasureOutput
from insilico.experiments.spec import parse
from insilico.experiments.stats import clopper_pearson
from insilico.experiments.verdicts import evaluate, verdict


def _size_recording(suppress: float, reps: int = 4, sites: int = 40, seed: int = 0):
    """Size tuning of ``sites`` neuroids (7 sizes x 8 stimuli each, Poisson spikes in 100 ms):
    rate rises to 40 spikes/s at 1 deg and falls by ``suppress`` at the largest sizes."""
    rng = np.random.default_rng(seed)
    sizes = np.array([0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
    stim_size = np.repeat(sizes, 8)
    shape = np.minimum(stim_size / 1.0, 1.0) * 40 + 10
    shape = np.where(stim_size > 1.0, shape * (1 - suppress * (stim_size - 1.0) / 3.0), shape)
    rate = np.repeat(shape, reps)[:, None] * np.ones(sites)
    counts = rng.poisson(rate * 0.1) / 0.1
    n = len(stim_size)
    return xr.DataArray(
        counts[:, :, None],
        dims=("presentation", "neuroid", "time_bin"),
        coords={
            "stimulus_index": ("presentation", np.repeat(np.arange(n), reps)),
            "repetition": ("presentation", np.tile(np.arange(reps), n)),
            "size_deg": ("presentation", np.repeat(stim_size, reps)),
        },
    )


def _prediction(expect: str, metric: str = "suppression_index", **extra) -> dict:
    text = BASE + (
        f'\n[[prediction]]\nname = "p"\nmeasure = "tuning"\nmetric = "{metric}"\n'
        f'expect = "{expect}"\n'
    )
    p = parse(text, "t.toml").predictions[0]
    p.update(extra)
    return p


def _evaluate_recording(rec, expect: str, metric: str = "suppression_index"):
    mo = MeasureOutput(data=rec)
    mo.values[metric] = RECORD_METRICS[metric][0](rec)
    return evaluate(_prediction(expect, metric), {"tuning": {"control": mo}}, seed=0)


def test_size_tuning_noise_only_null_is_not_supported():
    """Flat size tuning + Poisson: choosing the peak on the same trials made a positive
    suppression index that could come out 'supported'; cross-validated, it cannot."""
    flat = _size_recording(suppress=0.0)
    flat = flat.copy(data=np.random.default_rng(1).poisson(25 * 0.1, flat.shape) / 0.1)
    out = _evaluate_recording(flat, ">= 0.1")
    assert out["verdict"] in ("falsified", "inconclusive")
    assert out["ci"][0] < 0.1 and abs(out["value"]) < 0.1
    # the old estimate (peak chosen and measured on the same trials) is biased upwards
    _, v = _curves(flat, "size_deg")
    naive = np.median(1 - v[-1] / v.max(axis=0))
    assert naive > out["value"] + 0.02
    # a real 40 % suppression is supported
    real = _evaluate_recording(_size_recording(suppress=0.4), ">= 0.1")
    assert real["verdict"] == "supported" and real["value"] > 0.25
    assert "hierarchical bootstrap" in real["interval"]


def test_clopper_pearson_matches_hand_computed_values():
    # 5/5: lower bound (alpha/2)^(1/n) = 0.025^(1/5); 0/5: upper 1 - 0.025^(1/5)
    assert clopper_pearson(5, 5) == pytest.approx((0.025 ** (1 / 5), 1.0))
    assert clopper_pearson(0, 5) == pytest.approx((0.0, 1 - 0.025 ** (1 / 5)))
    lo, hi = clopper_pearson(3, 10)  # textbook: 0.0667 .. 0.6525
    assert lo == pytest.approx(0.0667, abs=1e-4) and hi == pytest.approx(0.6525, abs=1e-4)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        clopper_pearson(6, 5)


def test_binary_metrics_get_an_exact_interval_not_a_degenerate_bootstrap():
    mo = MeasureOutput(values={"beats_natural": np.ones(5)})
    out = evaluate(_prediction("> 0.5", "beats_natural"), {"tuning": {"control": mo}})
    # a bootstrap of five 1s is [1, 1] and called 'supported'; 5/5 does not establish a
    # fraction above one half at 95 %: the exact lower bound is 0.025^(1/5) = 0.48
    assert out["ci"][0] == pytest.approx(0.025 ** (1 / 5)) and out["verdict"] == "inconclusive"
    assert "Clopper-Pearson, 5/5" in out["interval"]
    mo.values["beats_natural"] = np.ones(10)
    out = evaluate(_prediction("> 0.5", "beats_natural"), {"tuning": {"control": mo}})
    assert out["ci"][0] == pytest.approx(0.025 ** (1 / 10)) and out["verdict"] == "supported"


def test_versus_median_value_lies_in_its_own_interval():
    """The value median(a) - median(b) used to get the interval of median(a - b)."""
    rng = np.random.default_rng(0)
    a = rng.exponential(1.0, 200)
    b = rng.permutation(a) + 0.05  # medians nearly equal, paired differences wide
    results = {
        "tuning": {
            "control": MeasureOutput(values={"median_osi": a}),
            "lesion": MeasureOutput(values={"median_osi": b}),
        }
    }
    p = _prediction("< 0", "median_osi", versus="lesion", condition="control")
    out = evaluate(p, results)
    assert out["value"] == pytest.approx(np.median(a) - np.median(b))
    assert out["ci"][0] <= out["value"] <= out["ci"][1]


def test_shuffle_null_makes_a_chance_level_claim_inconclusive():
    """|d'| between random categories is > 0 by chance: a claim only that far above 0 is
    not supported once the shuffled-label null is computed; a real category effect is."""
    rng = np.random.default_rng(0)
    n, sites = 60, 30
    cat = np.repeat(["a", "b", "c"], n // 3)
    base = rng.normal(10, 3, size=(n, sites))
    for effect, expected in ((0.0, ("inconclusive", "falsified")), (2.0, ("supported",))):
        values = base + effect * (cat == "a")[:, None]
        rec = xr.DataArray(
            values[:, :, None],
            dims=("presentation", "neuroid", "time_bin"),
            coords={
                "stimulus_index": ("presentation", np.arange(n)),
                "repetition": ("presentation", np.zeros(n, dtype=int)),
                "source": ("presentation", cat),
            },
        )
        mo = MeasureOutput(data=rec, values={"category_dprime": _category_dprime(rec, "source")})
        out = evaluate(
            _prediction("> 0.1", "category_dprime"), {"tuning": {"control": mo}}, labels="source"
        )
        assert out["verdict"] in expected, (effect, out)
        assert out["null_value"] > 0.05  # chance |d'| is not 0
        assert out["value"] == pytest.approx(np.median(mo.values["category_dprime"]))


def test_beats_controls_and_inconclusive_branches():
    """A CI clear of the threshold is not enough: the effect must also beat its matched
    controls (directional p), else the verdict drops to inconclusive or falsified."""

    def effect(p_dir):
        return Effect(
            readout="choice",
            unit="probability",
            perturbation={"type": "Muscimol"},
            n_stimuli=10,
            baseline=0.5,
            perturbed=0.6,
            effect=0.1,
            ci=(0.05, 0.15),
            control_effects=np.array([0.0, 0.2]),
            p_value=p_dir,
            rank=0.5,
            p_directional=p_dir,
        )

    verdicts = {}
    for p_dir in (0.01, 0.2, 0.8):
        mo = MeasureOutput(data=effect(p_dir), values={"effect": np.array([0.1])})
        p = _prediction("> 0.01", "effect", beats_controls=0.95)
        verdicts[p_dir] = evaluate(p, {"tuning": {"control": mo}})["verdict"]
    assert verdicts == {0.01: "supported", 0.2: "inconclusive", 0.8: "falsified"}
    # an interval that straddles the threshold is inconclusive
    assert verdict(">", 0.1, 0.05, 0.2) == "inconclusive"
    assert verdict(">", 0.1, 0.0, 0.09) == "falsified"
    assert verdict("<", 0.1, 0.0, 0.09) == "supported"
