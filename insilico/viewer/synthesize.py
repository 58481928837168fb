"""The *Synthesize* dock: run ``rig.synthesize`` live in a worker thread.

A plain Qt widget (qtpy) taking the viewer as ``napari_viewer``, so npe2 can build it from
the Plugins menu and :func:`insilico.viewer.view` can dock it.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

import stimuli
from insilico.brain import REGIONS, load_model
from insilico.viewer._compat import camera, prepare_torch
from insilico.viewer.forms import model_names, parse_pair, parse_site_numbers, spin_box
from insilico.viewer.layers import META, SPATIAL_LABELS, live_frame, placement, synthesis_layers
from rigs import Rig

OBJECTIVES = ("drive", "silence", "one_hot")


class _Bridge(QObject):
    """Signals emitted from the synthesis thread, delivered in the GUI thread."""

    frame = Signal(object)  # (step, (B, H, W, 3) display frame, geometry dict)
    progress = Signal(int, int)  # done, total


class SynthesizeWidget(QWidget):
    """Run ``rig.synthesize`` in a worker thread with live images, progress and Cancel.

    Pick the model, the region, an implanted array (sites around ``at (deg)``) and the
    target sites, the objective, image size and position in degrees, and the number of
    steps; *Run* starts; the layer ``synthesis (live)`` updates every *update every* steps;
    *Cancel* stops after the current step and keeps the images so far; *Save* writes the
    result store (the same zarr as ``SynthesisResult.save``).
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.result = None
        self.worker = None
        self.live_layer = None
        self.frames_shown = 0
        self._models: dict[str, Any] = {}
        self._cancel = threading.Event()
        prepare_torch()  # a synthesis must not import triton after OpenGL (see _compat)
        self._bridge = _Bridge()
        self._bridge.frame.connect(self._show_frame)
        self._bridge.progress.connect(self._show_progress)

        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.addItems(model_names())
        self.model.setCurrentText("efficientnet_lite0")
        self.region = QComboBox()
        self.region.addItems(REGIONS)
        self.region.setCurrentText("V4")
        self.n_sites = spin_box(1, 4096, 16)
        self.at_deg = QLineEdit("1, 1")
        self.sites = QLineEdit("0, 1, 2")
        self.objective = QComboBox()
        self.objective.addItems(OBJECTIVES)
        self.n_per_target = spin_box(1, 64, 1)
        self.size_deg = QDoubleSpinBox()
        self.size_deg.setRange(0.1, 180.0)
        self.size_deg.setDecimals(2)
        self.size_deg.setValue(4.0)
        self.size_deg.setSuffix(" deg")
        self.position = QLineEdit("1, 1")
        self.steps = spin_box(1, 100000, 64)
        self.update_every = spin_box(1, 10000, 4)
        self.reference = spin_box(1, 100000, 64)
        self.seed = spin_box(0, 2**31 - 1, 0)
        form = QFormLayout()
        for label, field in (
            ("model", self.model),
            ("region", self.region),
            ("array sites", self.n_sites),
            ("array at (deg x, y)", self.at_deg),
            ("target sites", self.sites),
            ("objective", self.objective),
            ("images per target", self.n_per_target),
            ("size", self.size_deg),
            ("position (deg x, y)", self.position),
            ("steps", self.steps),
            ("update every", self.update_every),
            ("natural references", self.reference),
            ("seed", self.seed),
        ):
            form.addRow(label, field)
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.save_button = QPushButton("Save…")
        self.cancel_button.setEnabled(False)
        self.save_button.setEnabled(False)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.save_button.clicked.connect(lambda: self.save())
        buttons = QHBoxLayout()
        for b in (self.run_button, self.cancel_button, self.save_button):
            buttons.addWidget(b)
        self.progress = QProgressBar()
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

    # parameters --------------------------------------------------------------------------
    def parameters(self) -> dict[str, Any]:
        """The form as keyword arguments (``ValueError`` naming a bad field)."""
        return {
            "model": self.model.currentText().strip(),
            "region": self.region.currentText(),
            "n_sites": self.n_sites.value(),
            "at_deg": parse_pair(self.at_deg.text(), "array at"),
            "sites": parse_site_numbers(self.sites.text(), "target sites"),
            "objective": self.objective.currentText(),
            "n_per_target": self.n_per_target.value(),
            "size_deg": float(self.size_deg.value()),
            "position_deg": parse_pair(self.position.text(), "position"),
            "steps": self.steps.value(),
            "update_every": self.update_every.value(),
            "reference": self.reference.value(),
            "seed": self.seed.value(),
        }

    # run ---------------------------------------------------------------------------------
    def run(self) -> None:
        """Start a synthesis in a worker thread (the UI stays live)."""
        if self.worker is not None:
            return
        try:
            params = self.parameters()
        except ValueError as err:
            show_error(str(err))
            return
        self._cancel.clear()
        self.frames_shown = 0
        self.progress.setRange(0, 0)  # busy until the first step
        self.status.setText(f"loading {params['model']} and measuring natural references…")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.save_button.setEnabled(False)
        self._t0 = time.perf_counter()
        worker = create_worker(self._job, params)
        worker.returned.connect(self._done)
        worker.errored.connect(self._failed)
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()

    def cancel(self) -> None:
        """Stop after the current step; the images so far become the result."""
        self._cancel.set()
        self.status.setText("cancelling…")

    def _job(self, p: dict[str, Any]):
        model = self._models.get(p["model"])
        if model is None:
            model = self._models[p["model"]] = load_model(p["model"])
        rig = Rig(model)
        array = rig.implant(p["region"], p["n_sites"], at_deg=p["at_deg"], seed=p["seed"])
        missing = sorted(set(p["sites"]) - set(int(s) for s in array.table["site"]))
        if missing:
            raise ValueError(f"target sites {missing} are not on the {len(array)}-site array")
        targets = array.sites[p["sites"]]
        reference = stimuli.natural(p["reference"], size_deg=p["size_deg"], seed=p["seed"] + 1)
        per_batch = max(1, 32 // p["n_per_target"])
        total = math.ceil(len(p["sites"]) / per_batch) * p["steps"]
        bg = float(rig.display.background)
        geometry = {
            "size_deg": p["size_deg"],
            "position_deg": p["position_deg"],
            "background": bg,
            "gamma": float(rig.display.gamma),
            "steps": p["steps"],
        }
        calls = [0]

        def callback(step: int, deviations, values) -> bool:
            calls[0] += 1
            self._bridge.progress.emit(calls[0], total)
            if step % p["update_every"] == 0 or step == p["steps"] - 1:
                frame = live_frame(deviations.detach().cpu().numpy(), bg, geometry["gamma"])
                self._bridge.frame.emit((step, frame, geometry))
            return self._cancel.is_set()

        self._bridge.progress.emit(0, total)
        return rig.synthesize(
            targets,
            objective=p["objective"],
            n_per_target=p["n_per_target"],
            size_deg=p["size_deg"],
            position_deg=p["position_deg"],
            steps=p["steps"],
            seed=p["seed"],
            reference=reference,
            progress=False,
            callback=callback,
        )

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)
        if done and not self._cancel.is_set():
            rate = done / max(time.perf_counter() - self._t0, 1e-9)
            self.status.setText(f"step {done}/{total} ({rate:.1f} steps/s)")

    def _show_frame(self, payload: tuple) -> None:
        step, frame, geo = payload
        layer = self.live_layer
        if layer is None or layer not in self.viewer.layers:
            place = placement(geo["size_deg"], geo["position_deg"], frame.shape[2])
            layer = self.viewer.add_image(
                frame,
                name="synthesis (live)",
                rgb=True,
                contrast_limits=(0.0, 1.0),
                scale=(1.0, *place["scale"]),
                translate=(0.0, *place["translate"]),
                units=(None, "degree", "degree"),
                axis_labels=("image", *SPATIAL_LABELS),
                interpolation2d="nearest",
                metadata={META: {"kind": "synthesis-live"}},
            )
            camera(self.viewer).orientation2d = ("up", "right")
            self.viewer.reset_view()
            self.live_layer = layer
        else:
            layer.data = frame
        layer.metadata[META]["step"] = step
        self.frames_shown += 1

    def _done(self, res: Any) -> None:
        self.result = res
        self._remove_live()
        name = f"{res.attrs.get('objective_kind', 'synthesis')} {res.attrs.get('model', '')}"
        added = [
            getattr(self.viewer, f"add_{kind}")(data, **kwargs)
            for data, kwargs, kind in synthesis_layers(res, name=name.strip())
        ]
        self.viewer.layers.selection.active = added[0]
        done = len(res.trajectory)
        cancelled = done < int(res.attrs.get("steps", done))
        t = res.targets
        verdict = ""
        if len(t):
            verdict = f"; beats natural for {int(t['beats_natural'].sum())}/{len(t)} targets"
        self.status.setText(
            f"{'cancelled after' if cancelled else 'done:'} {done} steps, {len(res)} images in "
            f"{time.perf_counter() - self._t0:.1f} s{verdict}. Save… writes the zarr store."
        )
        self.save_button.setEnabled(True)

    def _failed(self, err: Exception) -> None:
        self._remove_live()
        self.status.setText(f"failed: {err}")
        show_error(f"Synthesis failed: {err}")

    def _finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setRange(0, max(self.progress.maximum(), 1))

    def _remove_live(self) -> None:
        if self.live_layer is not None and self.live_layer in self.viewer.layers:
            self.viewer.layers.remove(self.live_layer)
        self.live_layer = None

    # save --------------------------------------------------------------------------------
    def save(self, path: str | Path | None = None, overwrite: bool = False) -> Path | None:
        """Write the result to a zarr store (asks for a path when none is given)."""
        if self.result is None:
            show_error("Nothing to save yet: run a synthesis first.")
            return None
        if path is None:
            chosen, _ = QFileDialog.getSaveFileName(
                self, "Save synthesis", "synthesis.zarr", "zarr store (*.zarr)"
            )
            if not chosen:
                return None
            path = chosen if chosen.endswith(".zarr") else f"{chosen}.zarr"
            overwrite = True  # the dialog asked
        try:
            written = self.result.save(path, overwrite=overwrite)
        except (OSError, ValueError) as err:
            show_error(f"Cannot save: {err}")
            return None
        show_info(f"saved {written}")
        self.status.setText(f"saved {written}")
        return written
