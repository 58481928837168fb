"""The IT perturbation suite: nine benchmarks in one table, its null (every dose zero) passes
only the benchmark that predicts no change, and bad input is one line."""

from __future__ import annotations

import pandas as pd
import pytest

from insilico.cli import main
from insilico.experiments.perturbation_suite import references, run_suite

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
    assert main([*argv, "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "on tiny-similarity-null: 1 of 9 benchmarks predicted" in text
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
