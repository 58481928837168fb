import json
import re

import numpy as np
import pytest
import xarray as xr

from insilico import experiments
from insilico.cli import main
from insilico.experiments import Experiment, ExperimentError
from insilico.experiments import sweep as sweep_mod


@pytest.fixture(autouse=True)
def _fewer_resamples(monkeypatch):
    """The machinery, not the precision, is under test here: fewer bootstrap resamples and
    shuffles keep the suite fast (the shipped defaults are 400 and 40)."""
    from insilico.experiments import stats

    monkeypatch.setattr(stats, "N_BOOT_RECORD", 100)
    monkeypatch.setattr(stats, "N_SHUFFLES", 12)


BASE = """
name = "test"
seed = 0

[model]
name = "tiny"

[[implant]]
name = "v1"
region = "V1"
n_sites = 16
at_deg = [1.0, -1.0]

[[stimuli]]
name = "gratings"
kind = "gratings"
size_deg = 3.0
position_deg = [1.0, -1.0]
orientation_deg = { start = 0, stop = 180, step = 30 }

[[condition]]
name = "lesion"
perturbations = [{ type = "Lesion", region = "V1" }]

[[measure]]
name = "tuning"
kind = "record"
stimuli = "gratings"
targets = "v1"
conditions = ["control", "lesion"]
"""


def test_every_shipped_experiment_validates():
    shipped = experiments.library()
    assert {
        "v1_orientation_tuning",
        "rf_mapping",
        "size_tuning",
        "it_category",
        "microstim_decision",
        "muscimol_deficit",
        "population_control",
    } <= set(shipped)
    for path in shipped.values():
        spec = experiments.load(path)
        assert spec.predictions, f"{path.name} states no prediction"
        for p in spec.predictions:  # every claim names the null it is checked against
            assert len(p.get("null", "")) > 20, f"{path.name}: {p['name']} states no null"


@pytest.mark.parametrize("name", ["v1_orientation_tuning", "rf_mapping", "microstim_decision"])
def test_shipped_experiment_runs_on_tiny(name, tmp_path):
    exp = Experiment.from_toml(experiments.resolve(name)).with_model("tiny")
    res = exp.run(tmp_path / name, progress=False)
    for p in res.predictions:  # each verdict follows from its own interval, null and controls
        assert_verdict_follows(p)
    report = (tmp_path / name / "report.md").read_text()
    assert "## Predictions" in report and res.figures
    for fig in res.figures:
        assert (tmp_path / name / "figures").exists() and fig.endswith(".png")
    m = exp.spec.measures[0]
    stored = xr.open_dataset(
        tmp_path / name / "results.zarr",
        engine="zarr",
        group=f"{m['name']}/{m.get('perturbation', 'control')}",
        consolidated=False,
    )
    assert any(v.startswith("metric__") for v in stored.data_vars)
    verdicts = json.loads((tmp_path / name / "predictions.json").read_text())
    assert [v["name"] for v in verdicts] == [p["name"] for p in res.predictions]


def assert_verdict_follows(p: dict) -> None:
    """Re-derive a verdict from the numbers it reports: the value lies inside its interval; a
    supported claim's interval clears the threshold (and the computed null's 95th percentile,
    and the matched controls); a falsified one's lies wholly on the wrong side."""
    lo, hi = p["ci"]
    assert lo - 1e-9 <= p["value"] <= hi + 1e-9, p
    op, thr = re.match(r"\s*(<=|>=|<|>)\s*(\S+)", p["expect"]).groups()
    thr = float(thr)
    above = op in (">", ">=")
    clears = lo > thr if above else hi < thr
    wrong_side = hi < thr if above else lo > thr
    if p["verdict"] == "supported":
        assert clears, p
        if "null_95" in p:
            assert lo > p["null_95"] if above else hi < p["null_value"], p
        if "controls_criterion" in p:  # "directional p <= 0.05"
            assert p["p_directional"] <= float(p["controls_criterion"].split("<=")[1]) + 1e-9
    elif p["verdict"] == "falsified":
        assert wrong_side or p.get("p_directional", 0) >= 0.5, p
    else:
        assert p["verdict"] == "inconclusive", p
        assert not wrong_side, p


def test_true_prediction_supported_false_one_falsified(tmp_path):
    text = (
        BASE
        + """
[[prediction]]
name = "gratings drive the sites"
measure = "tuning"
metric = "mean_rate"
expect = "> 1"

[[prediction]]
name = "deliberately false: the lesion raises rates"
measure = "tuning"
metric = "mean_rate"
condition = "lesion"
versus = "control"
expect = ">= 10"

[[prediction]]
name = "the lesion silences the sites"
measure = "tuning"
metric = "mean_rate"
condition = "lesion"
versus = "control"
expect = "< -1"
"""
    )
    res = Experiment.from_text(text).run(tmp_path / "out", progress=False)
    verdicts = res.verdicts()
    assert verdicts["gratings drive the sites"] == "supported"
    assert verdicts["deliberately false: the lesion raises rates"] == "falsified"
    assert verdicts["the lesion silences the sites"] == "supported"
    diff = res.predictions[1]
    assert diff["value_condition"] == 0 and diff["value_versus"] > 1  # effect with its control


SWEEP = (
    BASE
    + """
[sweep]
measure = "tuning"

[sweep.parameters]
"implant.v1.at_deg" = [[1.0, -1.0], [-1.0, 1.0]]
"stimuli.gratings.contrast" = [0.5, 1.0]
"""
)


def test_sweep_on_two_workers_equals_serial_and_resumes(tmp_path, monkeypatch):
    exp = Experiment.from_text(SWEEP)
    serial = sweep_mod.run_sweep(exp, tmp_path / "serial.zarr", progress=False)
    assert serial.attrs["tasks_run"] == 4
    parallel = sweep_mod.run_sweep(exp, tmp_path / "parallel.zarr", workers=2, progress=False)
    a = xr.open_dataset(tmp_path / "serial.zarr", engine="zarr", consolidated=False)["value"]
    b = xr.open_dataset(tmp_path / "parallel.zarr", engine="zarr", consolidated=False)["value"]
    assert np.array_equal(a.values, b.values)  # bit for bit
    assert serial.equals(parallel)
    # a sweep killed after two tasks resumes with only the missing ones
    real = sweep_mod.run_task
    calls = {"n": 0}

    def dying(*args, **kwargs):
        if calls["n"] == 2:
            raise KeyboardInterrupt("killed")
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep_mod, "run_task", dying)
    with pytest.raises(KeyboardInterrupt):
        sweep_mod.run_sweep(exp, tmp_path / "resumed.zarr", progress=False)
    monkeypatch.setattr(sweep_mod, "run_task", real)
    resumed = sweep_mod.run_sweep(exp, tmp_path / "resumed.zarr", progress=False)
    assert resumed.attrs["tasks_run"] == 2
    c = xr.open_dataset(tmp_path / "resumed.zarr", engine="zarr", consolidated=False)["value"]
    assert np.array_equal(a.values, c.values)


@pytest.mark.parametrize(
    "edit, message",
    [
        (("n_sites = 16", "n_sites = 16\ncolour = 3"), r":12: implant.colour: unknown key"),
        (("n_sites = 16", 'n_sites = "many"'), r":11: implant.n_sites: must be an integer"),
        (
            ('conditions = ["control", "lesion"]', 'conditions = ["control", "muscimol"]'),
            r":30: measure.conditions: refers to condition 'muscimol', which is not defined",
        ),
        (
            ("size_deg = 3.0", 'size_deg = "64px"'),
            r":17: stimuli.size_deg: must be a number of degrees, got '64px' \(pixels",
        ),
        (("size_deg = 3.0", "size_px = 64"), r":17: stimuli.size_px: sizes are in degrees"),
        (("size_deg = 3.0", "size_deg = -3.0"), r":17: stimuli.size_deg: must be positive"),
        (
            ('stimuli = "gratings"\ntargets', 'stimuli = "bars"\ntargets'),
            r":28: measure.stimuli: refers to stimuli 'bars', which is not defined",
        ),
        (
            (
                "[[condition]]",
                '[[stimuli]]\nname = "mix"\nkind = "blend"\na = "gratings"\nb = "bars"\n'
                "\n[[condition]]",
            ),
            r":25: stimuli.b: refers to stimuli 'bars', which is not defined above it",
        ),
        (
            ('region = "V1" }]', 'region = "V1", at_mm = { prefer = "cat" } }]'),
            r"condition.perturbations: at_mm as a table chooses the site preferring a label",
        ),
        # wrong types: one line naming the key (volume_ul = [1] was a TypeError from '<')
        (
            ('type = "Lesion", region = "V1"', 'type = "Muscimol", region = "V1", volume_ul = [1]'),
            r":23: condition.perturbations: volume_ul must be a number >= 0, got \[1\]",
        ),
        (("seed = 0", "seed = 0\ndisplay = 5"), r":4: display: must be a table \[display\]"),
        (
            ("seed = 0", "seed = 0\n[display]\nbit_depth = 8.7"),
            r":5: display.bit_depth: must be an integer: 8, 10, 12 or 16, got 8.7",
        ),
        (
            ("seed = 0", "seed = 0\n[display]\nresolution = [1920]"),
            r"display.resolution: must be two integers",
        ),
    ],
)
def test_bad_experiment_files(edit, message):
    old, new = edit
    assert old in BASE
    with pytest.raises(ExperimentError, match=message):
        experiments.parse(BASE.replace(old, new, 1), "bad.toml")


def test_cli_run_and_list(tmp_path, capsys):
    assert main(["run", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "muscimol_deficit" in listing and "population_control" in listing
    assert "Bashivan-style population control on V4 sites, scored on a held-out network" in listing
    path = tmp_path / "exp.toml"
    path.write_text(
        BASE + '\n[[prediction]]\nname = "p"\nmeasure = "tuning"\n'
        'metric = "mean_rate"\nexpect = "> 1"\n'
    )
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "supported" in capsys.readouterr().out
    path.write_text(BASE.replace("n_sites = 16", "n_sites = 16\ncolour = 3"))
    assert main(["run", str(path), "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("insilico: error:")
        and "implant.colour" in err
        and len(err.splitlines()) == 1
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        # values only the library can judge: still one line with the file, line and table
        (("[model]", "[display]\ngamma = -2\n\n[model]"), r"^bad.toml:5: display: gamma must be"),
        (
            ('region = "V1" }]', 'region = "V1", at_mm = "a", radius_mm = 1.0 }]'),
            r"^bad.toml:21: condition.lesion: at_mm must be \(x_mm, y_mm\)",
        ),
        (
            ("orientation_deg = {", "phase_deg = nan\norientation_deg = {"),
            r"^bad.toml:14: stimuli.gratings: .*phase_deg must be a finite number",
        ),
    ],
)
def test_runtime_errors_name_file_and_line(edit, message, tmp_path):
    old, new = edit
    assert old in BASE
    exp = Experiment(experiments.parse(BASE.replace(old, new, 1), "bad.toml"))
    with pytest.raises(ExperimentError, match=message):
        exp.run(tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "results.zarr").exists()


def test_experiment_is_public_and_with_parameters_names_bad_paths():
    import insilico as lab

    exp = lab.Experiment.from_text(BASE)
    changed = exp.with_parameters({"stimuli.gratings.size_deg": 2.0})
    assert changed.spec.stimuli[0]["size_deg"] == 2.0 and exp.spec.stimuli[0]["size_deg"] == 3.0
    with pytest.raises(ExperimentError, match="refers to stimuli 'nope', which is not defined"):
        exp.with_parameters({"stimuli.nope.size_deg": 2.0})
    with pytest.raises(ExperimentError, match="KIND one of"):
        exp.with_parameters({"bogus.x.y": 1})
    with pytest.raises(ExperimentError, match=r"perturbation index '3' is not in 0\.\.0"):
        exp.with_parameters({"condition.lesion.3.region": "V2"})


def test_sweep_store_of_another_sweep_is_refused_and_overwrite_starts_afresh(tmp_path):
    exp = Experiment.from_text(SWEEP)
    sweep_mod.run_sweep(exp, tmp_path / "s.zarr", progress=False)
    other = Experiment.from_text(SWEEP.replace("[0.5, 1.0]", "[0.25, 1.0]"))
    with pytest.raises(ExperimentError, match="was written for another sweep"):
        sweep_mod.run_sweep(other, tmp_path / "s.zarr", progress=False)
    # run() resumes its sweep.zarr, and with overwrite=True runs every task again
    out = tmp_path / "run"
    exp.run(out, progress=False)
    again_res = exp.run(out, progress=False)
    assert [p["name"] for p in again_res.predictions] == [p["name"] for p in exp.spec.predictions]
    resumed = sweep_mod.run_sweep(exp, out / "sweep.zarr", progress=False)
    assert resumed.attrs["tasks_run"] == 0
    other.run(out, overwrite=True, progress=False)
    again = sweep_mod.run_sweep(other, out / "sweep.zarr", progress=False)
    assert again.attrs["tasks_run"] == 0 and "0.25" in " ".join(map(str, again.iloc[:, 1]))


def test_sweep_template_needs_no_dask_and_workers_without_dask_fail_early(tmp_path, monkeypatch):
    import sys

    for name in ("dask", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    exp = Experiment.from_text(SWEEP)
    table = sweep_mod.run_sweep(exp, tmp_path / "s.zarr", progress=False)
    assert table.attrs["tasks_run"] == 4 and table.iloc[:, -1].notna().all()
    with pytest.raises(ExperimentError, match=r"need Dask distributed; install it with"):
        exp.run(tmp_path / "out", workers=2, progress=False)
    assert not (tmp_path / "out").exists()  # failed before running anything
    with pytest.raises(ExperimentError, match="has no \\[sweep\\]"):
        Experiment.from_text(BASE).run(tmp_path / "out2", workers=2, progress=False)


def test_run_defaults_to_runs_name_and_reports_sf_tuning(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = BASE.replace(
        "step = 30 }", "step = 30 }\nsf_cpd = [0.5, 1, 2, 4]\nphase_deg = [0, 90, 180, 270]"
    )
    text += (
        '\n[[prediction]]\nname = "sf"\nmeasure = "tuning"\n'
        'metric = "sf_selectivity"\nexpect = "> 0.1"\n'
    )
    res = Experiment.from_text(text).run(progress=False)
    assert res.out.resolve() == tmp_path / "runs" / "test" and (res.out / "report.md").exists()
    assert res.verdicts()["sf"] == "supported"
    pref = res.measures["tuning"]["control"].values["preferred_sf_cpd"]
    assert set(np.unique(pref)) <= {0.5, 1.0, 2.0, 4.0} and len(pref)


def test_compare_sweep_reports_effects_with_their_controls(tmp_path):
    text = BASE.replace(
        'perturbations = [{ type = "Lesion", region = "V1" }]',
        'perturbations = [{ type = "Muscimol", region = "V1", at_mm = [1.0, 1.0] }]',
    ).replace(
        'conditions = ["control", "lesion"]',
        'kind = "compare"\nperturbation = "lesion"\nreadout = "neural"\ncontrols = 3',
    )
    text = text.replace('kind = "record"\n', "", 1)
    text += (
        '\n[sweep]\nmeasure = "tuning"\n[sweep.parameters]\n'
        '"condition.lesion.0.volume_ul" = [0.5, 2.0]\n'
    )
    res = Experiment.from_text(text).run(tmp_path / "out", progress=False)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "controls mean (lesion)" in report and "figures/sweep.png" in report
    table = sweep_mod.run_sweep(Experiment.from_text(text), tmp_path / "out" / "sweep.zarr")
    assert (
        table["controls sd (lesion)"].notna().all()
        and table["directional p (lesion)"].between(0, 1).all()
    )
    assert res.figures and any(f.endswith("sweep.png") for f in res.figures)


def test_sweep_parameters_take_ranges_and_name_bad_steps():
    text = SWEEP.replace("[0.5, 1.0]", "{ start = 0.5, stop = 1.5, step = 0.5 }")
    assert text != SWEEP
    spec = experiments.parse(text, "s.toml")
    assert spec.sweep["parameters"]["stimuli.gratings.contrast"] == [0.5, 1.0]
    bad = SWEEP.replace("[0.5, 1.0]", '{ start = 0.5, stop = 1.5, step = "a" }')
    with pytest.raises(ExperimentError, match=r"s.toml:\d+: sweep.parameters: .*step must be a"):
        experiments.parse(bad, "s.toml")


def test_figures_label_units_and_map_site_sweeps(tmp_path):
    import pandas as pd

    from insilico.experiments.report import _sweep_map_figure, parameter_label

    assert parameter_label("sf_cpd") == "spatial frequency (cycles/deg)"
    assert parameter_label("inject.0.volume_ul") == "inject: muscimol volume (µl)"
    assert "0 = vertical bars" in parameter_label("orientation_deg")
    sites = [[x, y] for y in (2.0, 5.0) for x in (2.0, 5.0)]
    table = pd.DataFrame(
        {
            "inject.0.at_mm": [str(s) for s in sites] * 2,
            "inject.0.volume_ul": [0.5] * 4 + [1.0] * 4,
            "effect (inject)": np.linspace(-0.02, 0.0, 8),
            "directional p (inject)": np.linspace(0.01, 1.0, 8),
        }
    )
    assert _sweep_map_figure(table, tmp_path / "map.png")  # one panel per volume
    assert (tmp_path / "map.png").stat().st_size > 10_000
    no_site = table.drop(columns="inject.0.at_mm")
    assert not _sweep_map_figure(no_site, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_synthesize_measure_stores_its_images_as_a_synthesis_store(tmp_path):
    from insilico.viewer.layers import identify
    from stimuli.synthesis.result import SynthesisResult

    exp = (
        Experiment.from_toml(experiments.resolve("population_control"))
        .with_model("tiny")
        .with_parameters(
            {"measure.drive.steps": 4, "measure.one_hot.steps": 4, "stimuli.natural.n": 20}
        )
    )
    res = exp.run(tmp_path / "pc", progress=False)
    group = tmp_path / "pc" / "results.zarr" / "drive" / "control"
    stored = SynthesisResult.open(group)
    original = res.measures["drive"]["control"].data
    assert np.array_equal(stored.images.numpy(), original.images.numpy())
    assert identify(group)[0] == "synthesis"


# --- statistics behind the verdicts ---------------------------------------------------------
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
    from insilico.experiments.spec import parse

    text = BASE + (
        f'\n[[prediction]]\nname = "p"\nmeasure = "tuning"\nmetric = "{metric}"\n'
        f'expect = "{expect}"\n'
    )
    p = parse(text, "t.toml").predictions[0]
    p.update(extra)
    return p


def _evaluate_recording(rec, expect: str, metric: str = "suppression_index"):
    from insilico.experiments.run import RECORD_METRICS, MeasureOutput, evaluate

    mo = MeasureOutput(data=rec)
    mo.values[metric] = RECORD_METRICS[metric][0](rec)
    return evaluate(_prediction(expect, metric), {"tuning": {"control": mo}}, seed=0)


def test_size_tuning_noise_only_null_is_not_supported():
    """Flat size tuning + Poisson: choosing the peak on the same trials made a positive
    suppression index that could come out 'supported'; cross-validated, it cannot."""
    from insilico.experiments.run import _curves

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
    from insilico.experiments.stats import clopper_pearson

    # 5/5: lower bound (alpha/2)^(1/n) = 0.025^(1/5); 0/5: upper 1 - 0.025^(1/5)
    assert clopper_pearson(5, 5) == pytest.approx((0.025 ** (1 / 5), 1.0))
    assert clopper_pearson(0, 5) == pytest.approx((0.0, 1 - 0.025 ** (1 / 5)))
    lo, hi = clopper_pearson(3, 10)  # textbook: 0.0667 .. 0.6525
    assert lo == pytest.approx(0.0667, abs=1e-4) and hi == pytest.approx(0.6525, abs=1e-4)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        clopper_pearson(6, 5)


def test_binary_metrics_get_an_exact_interval_not_a_degenerate_bootstrap():
    from insilico.experiments.run import MeasureOutput, evaluate

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
    from insilico.experiments.run import MeasureOutput, evaluate

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
    from insilico.experiments.run import MeasureOutput, _category_dprime, evaluate

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
    from insilico.analysis import Effect
    from insilico.experiments.run import MeasureOutput, evaluate

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
    from insilico.experiments.run import _verdict

    assert _verdict(">", 0.1, 0.05, 0.2) == "inconclusive"
    assert _verdict(">", 0.1, 0.0, 0.09) == "falsified"
    assert _verdict("<", 0.1, 0.0, 0.09) == "supported"


def test_run_folder_safety_and_bad_ranges(tmp_path):
    """`insilico run` into a folder of a user's files deleted them; a sweep replaced another
    run's results.zarr before refusing; {start, stop, step = 0} hung the parser."""
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    pred = '\n[[prediction]]\nname = "p"\nmeasure = "tuning"\nmetric = "mean_rate"\n'
    pred += 'expect = "> 0"\n'
    exp = Experiment.from_text(BASE + pred)
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="holds files a run did not write"):
            exp.run(user, overwrite=overwrite, progress=False)
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    out = tmp_path / "run"
    exp.run(out, progress=False)
    before = (out / "predictions.json").read_text()
    other = Experiment.from_text(BASE.replace('name = "test"', 'name = "other"') + pred)
    with pytest.raises(FileExistsError, match="holds a run of 'test'"):
        other.run(out, progress=False)
    assert (out / "predictions.json").read_text() == before  # untouched
    for bad, message in (
        ("step = 30", "step = 0"),
        ("step = 30", 'step = "a"'),
        ("step = 30", "step = -30"),
    ):
        text = BASE.replace(bad, message)
        with pytest.raises(ExperimentError, match=r"bad.toml:\d+: stimuli.orientation_deg: range"):
            experiments.parse(text, "bad.toml")
