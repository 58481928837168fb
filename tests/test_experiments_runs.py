"""Running experiments: verdicts that follow from their numbers, the stored results and
report, the CLI, and a run folder that never loses a user's files."""

import json
import re

import numpy as np
import pytest
import xarray as xr
from _experiments import BASE, fewer_resamples  # noqa: F401 (autouse fixture)

from insilico import experiments
from insilico.cli import main
from insilico.experiments import Experiment, ExperimentError


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
