"""Sweeps: parallel equals serial, killed sweeps resume, stores of other sweeps are refused,
and sweep figures show effects with their controls."""

import numpy as np
import pytest
import xarray as xr
from _experiments import BASE, SWEEP, fewer_resamples  # noqa: F401 (autouse fixture)

from insilico.experiments import Experiment, ExperimentError
from insilico.experiments import sweep as sweep_mod


def test_sweep_on_two_workers_equals_serial_and_resumes(tmp_path, monkeypatch):
    exp = Experiment.from_text(SWEEP)
    serial = sweep_mod.run_sweep(exp.spec, tmp_path / "serial.zarr", progress=False)
    assert serial.attrs["tasks_run"] == 4
    parallel = sweep_mod.run_sweep(exp.spec, tmp_path / "parallel.zarr", workers=2, progress=False)
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
        sweep_mod.run_sweep(exp.spec, tmp_path / "resumed.zarr", progress=False)
    monkeypatch.setattr(sweep_mod, "run_task", real)
    resumed = sweep_mod.run_sweep(exp.spec, tmp_path / "resumed.zarr", progress=False)
    assert resumed.attrs["tasks_run"] == 2
    c = xr.open_dataset(tmp_path / "resumed.zarr", engine="zarr", consolidated=False)["value"]
    assert np.array_equal(a.values, c.values)


def test_sweep_store_of_another_sweep_is_refused_and_overwrite_starts_afresh(tmp_path):
    exp = Experiment.from_text(SWEEP)
    sweep_mod.run_sweep(exp.spec, tmp_path / "s.zarr", progress=False)
    other = Experiment.from_text(SWEEP.replace("[0.5, 1.0]", "[0.25, 1.0]"))
    with pytest.raises(ExperimentError, match="was written for another sweep"):
        sweep_mod.run_sweep(other.spec, tmp_path / "s.zarr", progress=False)
    # run() resumes its sweep.zarr, and with overwrite=True runs every task again
    out = tmp_path / "run"
    exp.run(out, progress=False)
    again_res = exp.run(out, progress=False)
    assert [p["name"] for p in again_res.predictions] == [p["name"] for p in exp.spec.predictions]
    resumed = sweep_mod.run_sweep(exp.spec, out / "sweep.zarr", progress=False)
    assert resumed.attrs["tasks_run"] == 0
    other.run(out, overwrite=True, progress=False)
    again = sweep_mod.run_sweep(other.spec, out / "sweep.zarr", progress=False)
    assert again.attrs["tasks_run"] == 0 and "0.25" in " ".join(map(str, again.iloc[:, 1]))


def test_sweep_template_needs_no_dask_and_workers_without_dask_fail_early(tmp_path, monkeypatch):
    import sys

    for name in ("dask", "distributed"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    exp = Experiment.from_text(SWEEP)
    table = sweep_mod.run_sweep(exp.spec, tmp_path / "s.zarr", progress=False)
    assert table.attrs["tasks_run"] == 4 and table.iloc[:, -1].notna().all()
    with pytest.raises(ExperimentError, match=r"need Dask distributed; install it with"):
        exp.run(tmp_path / "out", workers=2, progress=False)
    assert not (tmp_path / "out").exists()  # failed before running anything
    with pytest.raises(ExperimentError, match="has no \\[sweep\\]"):
        Experiment.from_text(BASE).run(tmp_path / "out2", workers=2, progress=False)


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
    table = sweep_mod.run_sweep(Experiment.from_text(text).spec, tmp_path / "out" / "sweep.zarr")
    assert (
        table["controls sd (lesion)"].notna().all()
        and table["directional p (lesion)"].between(0, 1).all()
    )
    assert res.figures and any(f.endswith("sweep.png") for f in res.figures)


def test_figures_label_units_and_map_site_sweeps(tmp_path):
    import pandas as pd

    from insilico.experiments.figures import parameter_label, sweep_map_figure

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
    assert sweep_map_figure(table, tmp_path / "map.png")  # one panel per volume
    assert (tmp_path / "map.png").stat().st_size > 10_000
    no_site = table.drop(columns="inject.0.at_mm")
    assert not sweep_map_figure(no_site, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
