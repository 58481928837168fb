"""Precision and device paths of recording and synthesis.

The bfloat16 option runs under ``torch.autocast``, which exists on the CPU too, so its
behaviour (rates close to float32, provenance, float32 unit tables) is tested everywhere.
The CUDA tests run only where a CUDA device exists and skip cleanly elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import insilico as lab
import stimuli

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def images():
    return stimuli.natural(12, size_deg=4, seed=5)


def test_bfloat16_recording_is_close_to_float32_and_says_so(tiny_rig, images):
    exact = tiny_rig.record(images, "V4", progress=False)
    half = tiny_rig.record(images, "V4", progress=False, precision="bfloat16")
    assert exact.attrs["precision"] == "float32" and half.attrs["precision"] == "bfloat16"
    a, b = exact.values, half.values
    assert not np.array_equal(a, b)  # the option does change the arithmetic
    # bfloat16 keeps 8 bits of mantissa: within 3 % of the population's peak rate
    assert np.abs(a - b).max() <= 0.03 * a.max()
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.999


def test_unit_tables_are_measured_in_float32_under_autocast(monkeypatch, tmp_path):
    """A region first touched inside a bfloat16 pass is still measured in float32 (its
    table is cached on disk and shared with float32 recordings)."""
    tables = []
    for k, precision in enumerate(("float32", "bfloat16")):
        monkeypatch.setenv("INSILICO_CACHE", str(tmp_path / str(k)))  # nothing cached
        model = lab.load_model("tiny")
        with model.autocast(precision):
            tables.append(model.region_units("V1"))
    assert tables[0].rate_scale == tables[1].rate_scale
    assert tables[0].table.equals(tables[1].table)


def test_bad_precision_is_one_line_and_writes_nothing(tiny_rig, images, tmp_path):
    out = tmp_path / "rec.zarr"
    with pytest.raises(ValueError, match=r"precision must be one of .*'float16'") as err:
        tiny_rig.record(images, "V1", progress=False, precision="float16", out=out)
    assert "\n" not in str(err.value)
    assert not out.exists()


@cuda
def test_cuda_recording_matches_cpu(images):
    cpu = lab.Rig(lab.load_model("tiny"))
    gpu = lab.Rig(lab.load_model("tiny", device="cuda"))
    a = cpu.record(images, "V4", progress=False).values
    b = gpu.record(images, "V4", progress=False).values
    np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3 * a.max())
    c = gpu.record(images, "V4", progress=False, precision="bfloat16").values
    assert np.abs(c - a).max() <= 0.03 * a.max()


@cuda
def test_cuda_synthesis_runs_on_the_device(images):
    rig = lab.Rig(lab.load_model("tiny", device="cuda"))
    sites = rig.implant("V4", n_sites=4, at_deg=(1, 1), seed=0)
    res = rig.synthesize(
        sites.sites[[0]],
        objective="drive",
        n_per_target=2,
        size_deg=4,
        position_deg=(1, 1),
        steps=20,
        reference=images,
        progress=False,
    )
    assert (res.trajectory[-1] > res.trajectory[0]).all()
