"""Benchmarks in quick smoke mode: they run and report numbers (no timing assertions)."""

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).parent


def _load(name: str):
    sys.path.insert(0, str(HERE))
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_record_quick(tmp_path):
    result = _load("bench_record").main(["--quick", "--json", str(tmp_path / "r.json")])
    for region in ("V1", "V2", "V4", "IT"):
        r = result["regions"][region]
        assert r["record_img_per_s"] > 0 and r["raw_torch_img_per_s"] > 0
        assert r["render_ms_per_img"] > 0 and r["render_pct_of_raw_forward"] > 0
    assert (tmp_path / "r.json").exists()


def test_bench_memory_quick():
    result = _load("bench_memory").main(["--quick"])
    assert result["small"]["peak_rss_mb"] > 0 and result["large"]["n"] == 500
    assert set(result["first_run"]) == {"V1", "V2", "V4", "IT"}


def test_bench_perturb_quick():
    result = _load("bench_perturb").main(["--quick", "--serial"])
    assert result["compare"]["serial_equals_batched"]
    assert set(result["record_overhead"]) == {"muscimol_IT", "microstim_V4"}


def test_bench_synthesis_quick():
    result = _load("bench_synthesis").main(["--quick"])
    assert result["synthesize_image_steps_per_s"] > 0 and result["raw_torch_image_steps_per_s"] > 0
    assert result["naive_unfolded_image_steps_per_s"] > 0


def test_bench_synthesis_efficacy_quick():
    result = _load("bench_synthesis_efficacy").main(["--quick"])
    for key in ("V4_drive", "V4_silence", "V4_one_hot", "IT_drive", "IT_silence", "IT_one_hot"):
        assert 0 <= result[key]["beats_natural"] <= 1


def test_bench_mapping_quick():
    result = _load("bench_mapping").main(["--quick"])
    assert [r["layers"] for r in result["runs"]] == ["commitment", "v4,it", "v2,v4,it"]
    assert all(r["peak_rss_mb"] > 0 for r in result["runs"])


def test_bench_sweep_quick():
    result = _load("bench_sweep").main(["--quick"])
    assert result["identical"] and result["tasks"] == 2 and result["speedup"] > 0


def test_bench_gpu_quick():
    import torch

    result = _load("bench_gpu").main(["--quick"])
    if torch.cuda.is_available():
        assert result["regions"]["V1"]["record_bf16_img_per_s"] > 0
    else:
        assert result == {"cuda": False, "note": "no CUDA device: nothing measured"}


def test_bench_readouts_quick():
    result = _load("bench_readouts").main(["--quick"])
    assert set(result["methods"]) == {"ridge", "factorized", "gaussian"}
    for method in ("factorized", "gaussian"):
        assert result["methods"][method]["fit_s"] > 0
        assert 0 <= result["methods"][method]["improved_share"] <= 1


def test_bench_mapping_curve_quick():
    result = _load("bench_mapping_curve").main(["--quick"])
    assert set(result["curve"]) == {
        "ridge", "pls", "factorized", "gaussian", "gaussian_x2", "null_shuffled_ridge"
    }  # fmt: skip
    for sizes in result["curve"].values():
        assert set(sizes) == {100, 200}
        for point in sizes.values():
            assert -1 <= point["median_r"] <= 1 and point["fit_s"] >= 0
    (session,) = result["session"]
    assert session["n_models"] == 2 and session["seconds"] > 0


def test_bench_mapping_curve_cores_row():
    """The cross-network row's path; with the lab's own network as the second core (the only
    other quick network is the animal's) the mean of two identical predictions scores the same."""
    args = ["--quick", "--readouts", "gaussian_x2", "--cores", "tiny"]
    result = _load("bench_mapping_curve").main(args)
    curve = result["curve"]
    one, two = result["session"]
    assert (one["cores"], two["cores"]) == ("tiny", "tiny+tiny")
    assert one["median_r"] == two["median_r"]
    assert set(curve) == {
        "gaussian_x2",
        "null_shuffled_ridge",
        "tiny:gaussian_x2",
        "tiny+tiny:gaussian_x2",
    }
    for n in (100, 200):
        same = [curve[k][n]["median_r"] for k in ("gaussian_x2", "tiny+tiny:gaussian_x2")]
        assert same[0] == same[1]


def test_compare_closed_loops_pairs_sites(tmp_path, capsys):
    """The paired comparison reads both runs' per-site lines and pairs the shared sites."""
    line = "{s}: r 0.60  synthesized {v:6.1f}  best natural   50.0 (day 1:   55.0) spikes/s  x"
    free = "{s} noise-free: synthesized {v:6.1f} best natural   48.0 spikes/s; "
    free += "one-hot share 0.2 vs 0.1"
    runs = []
    for k, shift in enumerate((0.0, 5.0)):
        text = [line.format(s=f"site_{i:03d}", v=40.0 + i + shift) for i in range(8)]
        text += [free.format(s=f"site_{i:03d}", v=40.0 + i + shift) for i in range(8)]
        runs.append(tmp_path / f"run{k}.log")
        runs[-1].write_text("\n".join(text))
    _load("compare_closed_loops").main(str(runs[0]), str(runs[1]))
    out = capsys.readouterr().out
    assert "8 / 8 sites selected, 8 in both" in out
    assert (
        "measured: synthesized B > A at 8/8" in out
        and "noise-free: synthesized B > A at 8/8" in out
    )
