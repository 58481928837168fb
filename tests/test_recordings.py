import json

import numpy as np
import pytest
import xarray as xr
import zarr

import recordings
import stimuli
from recordings.stream import StreamWriter


@pytest.fixture(scope="module")
def setup(tiny_rig):
    arr = tiny_rig.implant("V1", n_sites=12, at_deg=(1, 0))
    g = stimuli.gratings(
        size_deg=3, position_deg=(1, 0), orientation_deg=range(0, 180, 15), sf_cpd=[0.5, 1]
    )
    return arr, g


def test_save_open_round_trip_is_exact(tiny_rig, setup, tmp_path):
    arr, g = setup
    rec = tiny_rig.record(g, arr, repeats=2, noise="poisson", seed=1, progress=False)
    for value in rec.attrs.values():
        json.dumps(value)  # JSON-safe provenance
    path = recordings.save(rec, tmp_path / "r.zarr")
    back = recordings.open(path)
    assert not back.variable._in_memory  # lazy
    xr.testing.assert_identical(rec, back.load())
    # strings are stored variable-length, never fixed-width
    group = zarr.open_group(str(path), mode="r")
    assert "<U" not in str(group["neuroid_id"].dtype) and "<U" not in str(
        group["stimulus_id"].dtype
    )
    with pytest.raises(FileExistsError, match="overwrite"):
        recordings.save(rec, path)
    recordings.save(rec, path, overwrite=True)


def test_streamed_equals_in_memory_and_resumes_after_crash(tiny_rig, setup, tmp_path, monkeypatch):
    arr, g = setup
    kwargs = dict(repeats=3, noise="poisson", seed=5, batch_size=5, progress=False)
    full = tiny_rig.record(g, arr, **kwargs)
    out = tmp_path / "stream.zarr"

    # crash while the third batch is being committed: its data is on disk, not committed
    _crashed_store(tiny_rig, arr, g, out, monkeypatch, kwargs)
    partial = recordings.open(out)
    assert partial.sizes["presentation"] == 2 * 5 * 3  # two finished batches
    xr.testing.assert_equal(partial.load(), full.isel(presentation=slice(0, 30)))

    # rerun: resumes after the last committed batch (progress restarts at stimulus 10)
    seen = []
    real_present = type(tiny_rig).present

    def spy(self, stim, index=None):
        seen.append(int(np.asarray(index)[0]))
        return real_present(self, stim, index)

    monkeypatch.setattr(type(tiny_rig), "present", spy)
    done = tiny_rig.record(g, arr, out=out, **kwargs)
    assert seen[0] == 10
    xr.testing.assert_equal(done.load(), full)
    assert done.attrs["units"] == "spikes/s"
    # a third run of the completed job does no work
    seen.clear()
    again = tiny_rig.record(g, arr, out=out, **kwargs)
    assert not seen and again.sizes == full.sizes


def test_existing_output_of_another_job_is_refused(tiny_rig, setup, tmp_path):
    arr, g = setup
    out = tmp_path / "a.zarr"
    tiny_rig.record(g, arr, out=out, progress=False, seed=1, noise="poisson")
    with pytest.raises(FileExistsError, match="different job"):
        tiny_rig.record(g, arr, out=out, progress=False, seed=2, noise="poisson")
    other = tmp_path / "file.txt"
    other.write_text("hello")
    with pytest.raises(FileExistsError, match="overwrite"):
        tiny_rig.record(g, arr, out=other, progress=False)
    rec = tiny_rig.record(g, arr, out=out, progress=False, seed=2, noise="poisson", overwrite=True)
    assert rec.attrs["seed"] == 2


def test_open_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no recording"):
        recordings.open(tmp_path / "missing.zarr")
    xr.Dataset({"x": ("a", np.arange(3))}).to_zarr(tmp_path / "other.zarr", consolidated=False)
    with pytest.raises(ValueError, match="not an insilico-lab recording"):
        recordings.open(tmp_path / "other.zarr")
    (tmp_path / "junk.zarr").mkdir()
    with pytest.raises(ValueError, match="not a zarr store"):
        recordings.open(tmp_path / "junk.zarr")


def test_check_recording_names_missing_coordinate(tiny_rig, setup):
    arr, g = setup
    rec = tiny_rig.record(g[:2], arr, progress=False)
    with pytest.raises(ValueError, match="tissue_x_mm"):
        recordings.check_recording(rec.drop_vars("tissue_x_mm"))
    with pytest.raises(ValueError, match="dims"):
        recordings.check_recording(rec.transpose("neuroid", "presentation", "time_bin"))


def _crashed_store(tiny_rig, arr, g, out, monkeypatch, kwargs):
    """Two committed batches, a third on disk but not committed (crash while committing)."""
    real_commit = StreamWriter._commit
    calls = {"n": 0}

    def crashing_commit(self, done):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("power cut")
        real_commit(self, done)

    monkeypatch.setattr(StreamWriter, "_commit", crashing_commit)
    with pytest.raises(KeyboardInterrupt):
        tiny_rig.record(g, arr, out=out, **kwargs)
    monkeypatch.setattr(StreamWriter, "_commit", real_commit)


def test_store_cut_off_mid_batch_opens_and_resumes(tiny_rig, setup, tmp_path, monkeypatch):
    """A kill during a batch's write leaves arrays of unequal lengths; the store still opens
    with its committed presentations (it used to fail with 'conflicting sizes')."""
    arr, g = setup
    kwargs = dict(repeats=3, noise="poisson", seed=5, batch_size=5, progress=False)
    full = tiny_rig.record(g, arr, **kwargs)
    out = tmp_path / "cut.zarr"
    _crashed_store(tiny_rig, arr, g, out, monkeypatch, kwargs)
    group = zarr.open_group(str(out), mode="r+")
    group["response"].resize((38, *group["response"].shape[1:]))  # half-written batch
    group["stimulus_id"].resize((41,))
    partial = recordings.open(out)
    assert partial.sizes["presentation"] == 30
    xr.testing.assert_equal(partial.load(), full.isel(presentation=slice(0, 30)))
    assert not (tmp_path / "cut.zarr.lock").exists()  # the crashed writer let go
    xr.testing.assert_equal(tiny_rig.record(g, arr, out=out, **kwargs).load(), full)


def test_damaged_store_is_named_not_read(tiny_rig, setup, tmp_path, monkeypatch):
    arr, g = setup
    kwargs = dict(repeats=3, noise="poisson", seed=5, batch_size=5, progress=False)
    out = tmp_path / "bad.zarr"
    _crashed_store(tiny_rig, arr, g, out, monkeypatch, kwargs)
    group = zarr.open_group(str(out), mode="r+")
    group["response"].resize((20, *group["response"].shape[1:]))  # lost committed data
    with pytest.raises(ValueError, match="damaged: response"):
        recordings.open(out)
    with pytest.raises(ValueError, match="damaged store"):
        tiny_rig.record(g, arr, out=out, **kwargs)


def test_overwrite_never_deletes_what_the_lab_did_not_write(tiny_rig, setup, tmp_path, monkeypatch):
    arr, g = setup
    mine = tmp_path / "data"
    mine.mkdir()
    (mine / "notes.txt").write_text("a year of work")
    for out in (mine, tmp_path / "notes.csv"):
        if out.suffix:
            out.write_text("x")
        with pytest.raises(FileExistsError, match="not a store written by insilico-lab"):
            tiny_rig.record(g, arr, out=out, overwrite=True, progress=False)
    rec = tiny_rig.record(g, arr, progress=False)
    with pytest.raises(FileExistsError, match="not a store written by insilico-lab"):
        recordings.save(rec, mine, overwrite=True)
    assert (mine / "notes.txt").read_text() == "a year of work"
    monkeypatch.chdir(mine)
    for out in ("", ".", str(mine), str(tmp_path)):
        with pytest.raises(ValueError, match="working directory"):
            tiny_rig.record(g, arr, out=out, overwrite=True, progress=False)
        with pytest.raises(ValueError, match="working directory"):
            recordings.save(rec, out, overwrite=True)
    assert (mine / "notes.txt").read_text() == "a year of work"
    # a store the lab wrote is replaced
    recordings.save(rec, tmp_path / "r.zarr")
    recordings.save(rec, tmp_path / "r.zarr", overwrite=True)


def test_second_writer_of_a_store_is_refused(tiny_rig, setup, tmp_path):
    import os
    import socket
    import subprocess
    import sys

    arr, g = setup
    out = tmp_path / "busy.zarr"
    first = StreamWriter(out, {"job": 1})
    with pytest.raises(BlockingIOError, match="being written by another process"):
        tiny_rig.record(g, arr, out=out, progress=False)
    with pytest.raises(BlockingIOError, match=f"pid {os.getpid()} on"):
        StreamWriter(out, {"job": 1})
    first.close()
    tiny_rig.record(g, arr, out=out, progress=False)  # free again: writes and completes
    assert not out.with_name("busy.zarr.lock").exists()
    # a lock left by a process that died (kill -9) on this host is stale and taken over
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    lock = out.with_name("busy.zarr.lock")
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    rec = tiny_rig.record(g, arr, out=out, progress=False)
    assert rec.sizes["presentation"] == len(g) and not lock.exists()
    # a live holder on another host cannot be checked: refused
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(BlockingIOError, match="elsewhere"):
        tiny_rig.record(g, arr, out=out, progress=False)


def test_load_responses_stacks_a_repetition_dim_and_names_bad_input(tmp_path):
    """A (presentation, repetition, neuroid) array used to be refused; a numpy array gave a
    traceback; inf values passed; a corrupt .nc gave a backend traceback."""
    rng = np.random.default_rng(0)
    values = rng.poisson(5, size=(4, 3, 2)).astype(float)
    arr = xr.DataArray(
        values,
        dims=("presentation", "repetition", "neuroid"),
        coords={
            "stimulus_id": ("presentation", list("abcd")),
            "neuroid_id": ("neuroid", ["n0", "n1"]),
        },
    )
    rec = recordings.load_responses(arr)
    assert rec.dims == ("presentation", "neuroid")
    assert list(rec.stimulus_id.values) == list("aaabbbcccddd")
    assert list(rec.repetition.values) == [0, 1, 2] * 4
    np.testing.assert_array_equal(rec.values[4], values[1, 1])
    with pytest.raises(TypeError, match=r"must be a path .* or an xarray"):
        recordings.load_responses(values)
    bad = arr.copy()
    bad[0, 0, 1] = np.inf
    with pytest.raises(ValueError, match=r"NaN or inf \(neuroids \['n1'\]\)"):
        recordings.load_responses(bad)
    broken = tmp_path / "broken.nc"
    broken.write_bytes(b"not a netcdf file at all")
    with pytest.raises(ValueError, match="cannot be read as responses"):
        recordings.load_responses(broken)
    broken_nwb = tmp_path / "broken.nwb"  # h5py's OSError used to escape as a traceback
    broken_nwb.write_bytes(b"not an HDF5 file")
    pytest.importorskip("pynwb")
    with pytest.raises(ValueError, match="cannot be read as NWB"):
        recordings.load_responses(broken_nwb)


def test_missing_or_corrupt_chunks_are_named(tiny_rig, setup, tmp_path):
    """A deleted chunk used to read back as NaN; a corrupt one gave a codec traceback."""
    arr, g = setup
    rec = tiny_rig.record(g, arr, repeats=2, noise="poisson", seed=1, progress=False)
    path = recordings.save(rec, tmp_path / "r.zarr")
    chunk = next((path / "response" / "c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    data = chunk.read_bytes()
    chunk.unlink()
    with pytest.raises(ValueError, match=r"damaged: response/c/0/0/0 is missing"):
        recordings.open(path)
    chunk.write_bytes(b"garbage" + data[7:])
    with pytest.raises(ValueError, match=r"response/c/0/0/0 cannot be decoded"):
        recordings.open(path)
    recordings.open(path, verify=False)  # lazy open of a big store skips decoding
    with pytest.raises(ValueError, match="cannot be decoded"):
        recordings.store.verify(path)
    chunk.write_bytes(data)
    xr.testing.assert_identical(recordings.open(path).load(), rec)
