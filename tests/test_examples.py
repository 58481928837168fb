"""The example scripts run end to end (on the tiny model, few controls)."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.mark.parametrize(
    "script, args, expect",
    [
        ("microstim_afraz.py", ["--model", "tiny", "--controls", "3"], "shift in P('cat')"),
        ("muscimol_tasks.py", ["--model", "tiny", "--controls", "2"], "Spearman rho"),
        ("scripted_experiment.py", ["--model", "tiny", "--out", "sx"], "sf 4 cpd  surround"),
        ("topographic_models.py", ["--model", "tiny"], "face-d' r(1-3 mm)"),
        (
            "perturbation_suite.py",
            ["--model", "tiny", "--draws", "2", "--only", "Afraz2006"],
            "predicted beyond the null: ",
        ),
    ],
)
def test_example_runs(script, args, expect, tmp_path):
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert expect in out.stdout
    check_numbers(script, out.stdout)


def check_numbers(script: str, text: str) -> None:
    """What each example prints is consistent: an effect inside its own interval, a
    permutation p-value that 1 + controls allows, the tissue match reported."""
    import re

    if script == "microstim_afraz.py":
        m = re.search(
            r"shift in P\('cat'\): ([-+\d.]+) points \(95% CI ([-+\d.]+) to ([-+\d.]+)\)", text
        )
        value, lo, hi = (float(v) for v in m.groups())
        assert lo <= value <= hi
        p = float(re.search(r"directional p = ([\d.]+)", text).group(1))
        assert p >= 1 / (1 + 3) - 1e-9  # 3 controls: the smallest p a permutation test gives
        assert "tissue match:" in text
    if script == "muscimol_tasks.py":
        rows = re.findall(
            r"accuracy change ([-+\d.]+) points \(95% CI ([-+\d.]+)\.\.([-+\d.]+)\)", text
        )
        assert len(rows) == 6
        for value, lo, hi in rows:
            assert float(lo) <= float(value) <= float(hi)
        rho = float(re.search(r"Spearman rho\(.*\) = ([-+\d.]+)", text).group(1))
        assert -1 <= rho <= 1


def test_closed_loop_reports_numbers_with_intervals(tmp_path):
    """The closed-loop claims are numbers with 95 % intervals (lo <= value <= hi), measured on
    a virtual animal of a different network (tiny_b: other random stages than the lab's tiny;
    the default animal, Lite2, is too slow for a test), not verdict strings."""
    import re

    args = ["--model", "tiny", "--animal", "tiny_b", "--sites", "16", "--steps", "48"]
    args += ["--images", "400", "--method", "factorized", "--n-models", "1", "--min-r", "0.2"]
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / "closed_loop.py"), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "CLAIM" not in out.stdout
    found = dict(
        (m[0], tuple(float(v) for v in m[1:]))
        for m in re.findall(r"RESULT (\w+) = ([-\d.]+) \[([-\d.]+), ([-\d.]+)\]", out.stdout)
    )
    assert set(found) == {
        "beats_equated",
        "median_ratio_equated",
        "beats_equated_top1",
        "median_ratio_equated_top1",
        "one_hot_beats_equated",
        "one_hot_median_ratio",
        "beats_equated_expected",
        "median_ratio_expected",
        "one_hot_beats_expected",
        "one_hot_ratio_expected",
        "ratio_cap_expected",
        "headroom_share_expected",
    }, out.stdout[-2000:]
    # saturation: no site's best natural rate reaches its maximum, no image passes it
    assert found["ratio_cap_expected"][1] > 1 and found["headroom_share_expected"][2] <= 1
    for name, (value, lo, hi) in found.items():
        assert lo <= value <= hi, (name, value, lo, hi)
        if "beats" in name:
            assert 0 <= lo and hi <= 1 and hi - lo > 0.05  # 16 sites at most: not a point
    k, n = map(int, re.search(r"beats_equated = .*\((\d+)/(\d+) sites", out.stdout).groups())
    assert abs(found["beats_equated"][0] - k / n) < 1e-3
    again, trials = map(
        int, re.search(r"(\d+) re-shown on day 2; (\d+) trials", out.stdout).groups()
    )
    assert n <= again <= 6 * n  # each site's 3 favourites by response and by one-hot share
    assert trials == 4 * (400 + 2 * n + again)  # day 1, day 2's synthesized and re-shown images
