"""The napari viewer: reader, rendering, the Synthesize dock, bad stores.

Needs the ``view`` extra and a real X server: run under Xvfb (``pytest-xvfb`` starts one),
not ``QT_QPA_PLATFORM=offscreen`` (no GL context). Skipped without napari.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import time

import pytest

# napari's settings go to a throw-away file, never the user's home (set before napari loads)
os.environ.setdefault(
    "NAPARI_CONFIG", os.path.join(tempfile.mkdtemp(prefix="insilico-napari-"), "settings.yaml")
)

napari = pytest.importorskip("napari")
pytest.importorskip("pytestqt")
if not os.environ.get("DISPLAY"):  # pytest-xvfb sets it when Xvfb is installed
    pytest.skip("napari needs an X server: install xvfb (see .ci/run)", allow_module_level=True)

import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402
from qtpy.QtCore import QTimer  # noqa: E402

import insilico as lab  # noqa: E402
from insilico.viewer import add_synthesize_dock, prepare_torch, view  # noqa: E402
from insilico.viewer._compat import camera, text_overlay  # noqa: E402
from insilico.viewer.reader import get_reader  # noqa: E402
from stimuli.synthesis import open_result  # noqa: E402

prepare_torch()  # torch's triton must load before OpenGL does (else it segfaults)

SIZE_DEG = 4.25  # 17 px on the tiny model (32 px for 8 deg): an odd width has a centre pixel
POSITION = (1.0, 1.0)


@pytest.fixture(scope="module")
def synthesis_store(tiny, tmp_path_factory):
    """A saved synthesis of two V4 sites of the tiny model, 2 images each, 10 steps."""
    rig = lab.Rig(tiny)
    array = rig.implant("V4", n_sites=16, at_deg=POSITION, seed=0)
    res = rig.synthesize(
        array.sites[[3, 5]],
        objective="drive",
        n_per_target=2,
        size_deg=SIZE_DEG,
        position_deg=POSITION,
        steps=10,
        seed=0,
        reference=lab.stimuli.natural(16, size_deg=SIZE_DEG, seed=1),
        snapshot_every=3,
        progress=False,
    )
    return res.save(tmp_path_factory.mktemp("synth") / "drive.zarr")


@pytest.fixture
def not_ours(tmp_path):
    path = tmp_path / "other.zarr"
    xr.Dataset({"x": ("a", [1, 2])}).to_zarr(path, consolidated=False)
    return path


@pytest.fixture
def corrupt(synthesis_store, tmp_path):
    """One of ours (its attrs say so) whose image array metadata is garbage."""
    path = tmp_path / "corrupt.zarr"
    shutil.copytree(synthesis_store, path)
    (path / "images" / "zarr.json").write_text("{ this is not json")
    return path


def _synthesis_layer(viewer):
    return next(layer for layer in viewer.layers if layer.metadata.get("insilico"))


# 1. the reader --------------------------------------------------------------------------
def test_reader_opens_synthesis_in_degrees(make_napari_viewer, synthesis_store):
    res = open_result(synthesis_store)
    viewer = make_napari_viewer(show=True)
    assert get_reader(str(synthesis_store)) is not None
    layers = viewer.open(synthesis_store, plugin="insilico-lab")
    assert len(layers) == 2 == len(viewer.layers)
    image, aperture = layers
    assert (image._type_string, aperture._type_string) == ("image", "shapes")
    b, _, h, w = res.images.shape
    n_frames = len(image.metadata["insilico"]["steps"])
    assert image.data.shape == (b, n_frames, h, w, 3) and image.rgb
    assert n_frames >= 4  # snapshots every 3 steps + the final image
    dpp = SIZE_DEG / w
    np.testing.assert_allclose(image.scale, [1, 1, -dpp, dpp])
    assert [str(u) for u in image.units[-2:]] == ["degree", "degree"]
    assert tuple(image.axis_labels) == ("image", "step", "elevation", "azimuth")
    assert [str(u) for u in aperture.units] == ["degree", "degree"]
    # the image covers size_deg around its position, in degrees relative to fixation
    half = SIZE_DEG / 2 - dpp / 2  # pixel centres
    corners = image.data_to_world((0, 0, 0, 0))[-2:], image.data_to_world((0, 0, h - 1, w - 1))[-2:]
    np.testing.assert_allclose(corners[0], [POSITION[1] + half, POSITION[0] - half])  # top left
    np.testing.assert_allclose(corners[1], [POSITION[1] - half, POSITION[0] + half])
    # one slider per image and per step; the step slider starts at the final image
    assert viewer.dims.nsteps[:2] == (b, n_frames)
    assert viewer.dims.current_step[1] == n_frames - 1
    assert "Responses" in viewer.window.dock_widgets
    # non-lab paths are refused by metadata alone
    assert get_reader(str(synthesis_store.parent)) is None


# 2. rendering ---------------------------------------------------------------------------
def test_screenshot_shows_the_stored_pixels(make_napari_viewer, synthesis_store):
    res = open_result(synthesis_store)
    viewer = view(synthesis_store, viewer=make_napari_viewer(show=True))
    image = _synthesis_layer(viewer)
    viewer.dims.set_current_step(0, 1)  # second image, final step
    text_overlay(viewer).visible = False
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.std() > 5, "the canvas is blank"
    # centre the camera on the image's centre pixel, zoomed so one pixel spans ~20 screen px
    _, _, h, w = res.images.shape
    row, col = h // 2, w // 2
    centre_world = image.data_to_world((0, 0, row, col))[-2:]
    camera(viewer).center = tuple(centre_world)
    camera(viewer).zoom = 20 / abs(image.scale[-1])
    shot = viewer.screenshot(canvas_only=True, flash=False)
    cy, cx = shot.shape[0] // 2, shot.shape[1] // 2
    shown = shot[cy - 2 : cy + 3, cx - 2 : cx + 3, :3].reshape(-1, 3).astype(float).mean(0)
    gamma = float(res.attrs["display"]["gamma"])
    lum = res.images[1, :, row, col].numpy()
    expected = 255 * np.clip(lum, 0, 1) ** (1 / gamma)  # contrast limits (0, 1)
    np.testing.assert_allclose(shown, expected, atol=4)


# 3. the Synthesize dock -----------------------------------------------------------------
def test_synthesize_widget_live_cancel_save(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer(show=True)
    widget = add_synthesize_dock(viewer)
    widget.model.setCurrentText("tiny")
    widget.region.setCurrentText("V4")
    widget.n_sites.setValue(16)
    widget.at_deg.setText("1, 1")
    widget.sites.setText("3, 5")
    widget.size_deg.setValue(4.0)
    widget.position.setText("1, 1")
    widget.steps.setValue(5000)
    widget.update_every.setValue(4)
    widget.reference.setValue(8)

    shown, shown_at = [], []

    def grab(payload):
        layer = widget.live_layer
        if layer is not None:
            shown.append(np.array(layer.data, copy=True))
            shown_at.append(time.perf_counter())

    widget._bridge.frame.connect(grab)  # connected after the widget's own slot: runs after it
    ticks = []
    heartbeat = QTimer()
    heartbeat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    heartbeat.start(20)
    widget.run()
    assert not widget.run_button.isEnabled() and widget.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: len(shown) >= 25 and shown_at[-1] - shown_at[0] > 1.5, timeout=120_000)
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    heartbeat.stop()
    # the GUI thread kept running while the worker optimised: no long gap between its 20 ms
    # heartbeats from the first live frame to the last (a synthesis run in the GUI thread
    # would block it throughout; creating the live layer once, before, may take a while
    # with software OpenGL)
    first, last = shown_at[0], shown_at[-1]
    beats = [t for t in ticks if first <= t <= last]
    gaps = np.diff([first, *beats, last])
    print(f"live for {last - first:.2f} s, {len(beats)} heartbeats, longest gap {gaps.max():.2f} s")
    assert gaps.max() < 1.0, f"the event loop stalled {gaps.max():.2f} s"
    assert any(np.abs(a - b).max() > 1e-3 for a, b in itertools.pairwise(shown)), (
        "the live layer did not change between updates"
    )
    res = widget.result
    assert res is not None and len(res.trajectory) < 5000  # cancelled mid-run
    assert widget.live_layer is None and widget.save_button.isEnabled()
    assert any(
        layer.metadata.get("insilico", {}).get("kind") == "synthesis" for layer in viewer.layers
    )
    assert widget.progress.value() == len(res.trajectory)  # one batch of targets
    path = widget.save(tmp_path / "ui.zarr")
    back = open_result(path)
    assert back.images.shape == res.images.shape
    np.testing.assert_allclose(back.images.numpy(), res.images.numpy())
    assert list(back.targets["target"]) == list(res.targets["target"])


# 4. stores that are not ours, or damaged --------------------------------------------------
def test_not_a_lab_store_gives_a_clear_message(make_napari_viewer, not_ours, monkeypatch):
    assert get_reader(str(not_ours)) is None
    with pytest.raises(ValueError, match="not one written by insilico-lab"):
        view(not_ours, show=False)
    viewer = make_napari_viewer(show=True)
    with pytest.raises(ValueError, match="insilico-lab"):
        viewer.open(not_ours, plugin="insilico-lab")
    assert len(viewer.layers) == 0
    # File > Open with the lab reader preferred: napari offers its other readers, saying why
    from napari._qt.dialogs.qt_reader_dialog import QtReaderDialog
    from napari.settings import get_settings
    from qtpy.QtWidgets import QLabel

    get_settings().plugins.extension2reader = {
        "*.zarr/": "insilico-lab"
    }  # folders end with a separator
    seen = []

    def choose_nothing(dialog):
        seen.append(" ".join(label.text() for label in dialog.findChildren(QLabel)))
        return None, False

    monkeypatch.setattr(QtReaderDialog, "get_user_choices", choose_nothing)
    viewer.window._qt_viewer._qt_open([str(not_ours)], stack=False)
    assert seen and "insilico-lab" in seen[0]
    assert len(viewer.layers) == 0


def test_damaged_lab_store_gives_a_clear_message(make_napari_viewer, corrupt, monkeypatch):
    with pytest.raises(ValueError, match=r"cannot read .*corrupt\.zarr.*synthesis store"):
        view(corrupt, show=False)
    viewer = make_napari_viewer(show=True)
    errors = []
    monkeypatch.setattr("insilico.viewer.reader._show_error", errors.append)
    with pytest.raises(ValueError) as info:
        viewer.open(corrupt, plugin="insilico-lab")
    chain = []
    err = info.value
    while err is not None:
        chain.append(str(err))
        err = err.__cause__ or getattr(err, "original_error", None)
        if err is not None and str(err) in chain:
            break
    assert any("cannot read" in text and "damaged" in text for text in chain), chain
    assert errors and "cannot read" in errors[0]
    assert len(viewer.layers) == 0


# recordings -----------------------------------------------------------------------------
def test_recording_store_shows_stimuli_and_responses(make_napari_viewer, tiny_rig, tmp_path):
    array = tiny_rig.implant("V1", n_sites=8, at_deg=(1.0, 1.0), seed=0)
    grat = lab.stimuli.gratings(
        size_deg=3, position_deg=(1.0, 1.0), orientation_deg=range(0, 180, 30), sf_cpd=[1, 2]
    )
    rec = tiny_rig.record(grat, array, repeats=2, noise="poisson", seed=0)
    path = lab.recordings.save(rec, tmp_path / "v1.zarr")
    viewer = view(path, viewer=make_napari_viewer(show=True))
    image = _synthesis_layer(viewer)
    meta = image.metadata["insilico"]
    assert meta["axis"] == "stimulus" and image.data.shape[0] == len(grat)
    assert tuple(image.axis_labels) == ("stimulus", "elevation", "azimuth")
    assert [str(u) for u in image.units[-2:]] == ["degree", "degree"]
    panel = viewer.window.dock_widgets["Responses"]
    assert panel.neuroid.count() == 8
    assert [panel.xaxis.itemText(i) for i in range(panel.xaxis.count())][:1] == ["stimulus"]
    assert "orientation_deg" in [panel.xaxis.itemText(i) for i in range(panel.xaxis.count())]
    panel.xaxis.setCurrentText("orientation_deg")
    panel.neuroid.setCurrentIndex(3)
    assert str(rec.neuroid_id.values[3]) in panel.summary_text
    np.testing.assert_allclose(
        meta["mean"][:, 3].max(),
        float(rec.isel(neuroid=3).mean("time_bin").groupby("stimulus_id").mean().max()),
    )


def test_manifest_commands_name_existing_callables():
    """Every command of insilico/napari.yaml points at a callable napari can import."""
    import importlib
    from pathlib import Path

    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(Path(lab.__file__).parent / "napari.yaml")
    commands = manifest.contributions.commands
    assert len(commands) == 3
    for command in commands:
        module, name = command.python_name.split(":")
        assert callable(getattr(importlib.import_module(module), name)), command.id
