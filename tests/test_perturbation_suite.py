"""The IT perturbation suite: nine benchmarks in one table, its null (every dose zero) passes
only the benchmark that predicts no change, and bad input is one line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from insilico.analysis.topography import shuffled_places
from insilico.brain.units import with_places
from insilico.cli import main
from insilico.experiments.perturbation_suite import references, run_suite
from insilico.experiments.suite_verdicts import run_draws, verdicts

NAMES = [r["name"] for r in references()]
NO_CHANGE = "Afraz2015.optogenetics-ipsi_accuracy_insignificant"


@pytest.fixture(scope="module")
def tiny_table(tiny_rig):
    return run_suite(tiny_rig, progress=False)


def test_nine_benchmarks_from_four_papers():
    assert len(NAMES) == 9 and len(set(NAMES)) == 9
    papers = {r["paper"].rsplit(",", 1)[0] for r in references()}
    assert len(papers) == 4
    assert all(r["in_vivo"] and r["prediction"] for r in references())


def test_suite_table_on_the_tiny_model(tiny_table):
    t = tiny_table
    assert list(t["benchmark"]) == NAMES
    assert set(t["verdict"]) <= {"pass", "fail"}
    assert t["p"].between(0, 1).all()
    assert (t["model"] == "tiny").all() and (t["arrangement"] == "similarity").all()
    assert t["in_vivo"].str.len().gt(10).all()


def test_null_suite_passes_only_the_no_change_benchmark(tmp_path, capsys):
    out = tmp_path / "null"
    argv = ["run", "--suite", "perturbation", "--model", "tiny", "--null", "--quiet"]
    assert main([*argv, "--draws", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "on tiny-similarity-null: 1 of 9 benchmarks pass on one draw" in text
    table = pd.read_csv(out / "table.csv")
    assert list(table.loc[table["verdict"] == "pass", "benchmark"]) == [NO_CHANGE]
    assert (out / "table.md").read_text().count("\n") == 11


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("run --suite behaviour --model tiny", "unknown suite 'behaviour'; expected one of"),
        ("run --suite perturbation --model tiny --arrangement spiral", "must be one of"),
        ("run it_category --null", "--arrangement and --null go with --suite"),
        ("run --suite perturbation --model tiny --seed -1", "--seed must be a non-negative"),
        ("run --suite perturbation --model tiny --draws 0", "--draws must be a positive whole"),
        ("run --suite perturbation --model tiny --nulls channel", "unknown null 'channel'"),
    ],
)
def test_bad_suite_input_is_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv.split()) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_suite_refuses_a_model_without_it(tmp_path, tiny_rig):
    with pytest.raises(ValueError, match="unknown benchmark 'Afraz2020'; expected one of"):
        run_suite(tiny_rig, only=["Afraz2020"])
    spec = tmp_path / "v1only.toml"
    spec.write_text(
        'name = "v1only"\narchitecture = "tiny"\nweights = "builtin:gabor-v1+random(seed=0)"\n'
        'input_size = 32\nnum_classes = 10\n[regions.V1]\nlayer = "v1"\n'
    )
    import insilico as lab

    rig = lab.Rig(lab.load_model(str(spec)))
    with pytest.raises(ValueError, match="model 'v1only' has no IT sheet; the suite perturbs IT"):
        run_suite(rig)


def _long(counts: dict[str, tuple[int, int]], draws: int = 10) -> pd.DataFrame:
    """A run_draws-shaped table with the given (model, null) pass counts per benchmark."""
    rows = []
    for bench, (m, n) in counts.items():
        for sheet, k in (("model", m), ("null: channels shuffled", n)):
            for d in range(draws):
                verdict = "pass" if d < k else "fail"
                rows.append(
                    dict(
                        sheet=sheet,
                        draw=d + 1,
                        benchmark=bench,
                        verdict=verdict,
                        model_effect="x",
                        in_vivo="y",
                    )
                )
    return pd.DataFrame(rows)


def test_verdict_needs_most_draws_and_more_passes_than_the_null():
    t = verdicts(
        _long({"A-sig": (10, 2), "B-sig": (10, 9), "C-sig": (4, 0), "D_insignificant": (6, 10)})
    ).set_index("benchmark")
    assert t.loc["A-sig", "verdict"] == "predicted" and t.loc["A-sig", "p vs null"] < 0.01
    assert t.loc["B-sig", "verdict"] == "not beyond null"
    assert t.loc["C-sig", "verdict"] == "fail"  # beats the null but passes in < half the draws
    assert t.loc["D_insignificant", "verdict"] == "predicted"  # a control: majority only
    assert t.loc["A-sig", "model passes"] == "10/10"
    assert t.loc["A-sig", "null: channels shuffled passes"] == "2/10"


def test_null_sheets_move_places_only(tiny):
    table = tiny.units("IT")
    for level in ("channel", "unit"):
        moved = shuffled_places(table, seed=3, level=level)
        assert (moved["hemisphere"] == table["hemisphere"]).all()
        for hemi in ("left", "right"):
            k = (table["hemisphere"] == hemi).to_numpy()
            a = np.sort(table.loc[k, "tissue_x_mm"].to_numpy() * 1e3 + table.loc[k, "tissue_y_mm"])
            b = np.sort(moved.loc[k, "tissue_x_mm"].to_numpy() * 1e3 + moved.loc[k, "tissue_y_mm"])
            assert np.allclose(a, b)  # the same places, dealt to other units
        assert (moved["tissue_x_mm"] != table["tissue_x_mm"]).mean() > 0.5
    view = with_places(tiny, "IT", moved, "units shuffled")
    assert view.region_units("IT").arrangement == "units shuffled"
    assert view.network is tiny.network
    assert (tiny.units("IT")["tissue_x_mm"] == table["tissue_x_mm"]).all()  # original kept
    with pytest.raises(ValueError, match=r"must list its .* units in order"):
        with_places(tiny, "IT", moved.iloc[::-1], "bad")


def test_draws_run_the_model_and_its_null_at_the_same_seeds(tiny_rig):
    long = run_draws(tiny_rig, draws=2, nulls=("units",), only=["Afraz2006"], progress=False)
    assert list(dict.fromkeys(long["sheet"])) == ["model", "null: units shuffled"]
    assert sorted(long["draw"].unique()) == [1, 2]
    null = long[long["sheet"] != "model"]
    assert null["arrangement"].str.startswith("units shuffled (seed").all()
    # the same sites, other units under them: the effects differ
    assert set(long.loc[long["sheet"] == "model", "model_effect"]) != set(null["model_effect"])
    table = verdicts(long)
    assert list(table["benchmark"]) == ["Afraz2006-shift_significant"]
    assert table.loc[0, "verdict"] in {"predicted", "not beyond null", "fail"}
    with pytest.raises(ValueError, match="unknown null 'rows'"):
        run_draws(tiny_rig, draws=1, nulls=("rows",))


def test_a_unit_level_sheet_is_compared_with_units_shuffled():
    import insilico as lab

    rig = lab.Rig(lab.load_model("tiny", arrangement={"IT": "unit-swap"}))
    long = run_draws(rig, draws=1, only=["Moeller2017"], progress=False)
    assert list(dict.fromkeys(long["sheet"])) == ["model", "null: units shuffled"]
