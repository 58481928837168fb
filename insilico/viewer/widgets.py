"""Dock widgets: *Responses* (plots beside the images) and *Synthesize* (run a synthesis live).

Both are plain Qt widgets (qtpy) taking the viewer as ``napari_viewer``, so npe2 can build
them from the Plugins menu and :func:`insilico.viewer.view` can dock them.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Qt, Signal
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
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from insilico.viewer._compat import camera, prepare_torch, text_overlay
from insilico.viewer.layers import META, SPATIAL_LABELS, live_frame, placement, synthesis_layers

REGIONS = ("V1", "V2", "V4", "IT")
OBJECTIVES = ("drive", "silence", "one_hot")


def _meta(layer: Any) -> dict | None:
    meta = getattr(layer, "metadata", {}).get(META)
    return meta if isinstance(meta, dict) else None


# Responses ------------------------------------------------------------------------------
class ResponsesWidget(QWidget):
    """Responses beside the images, following the selected lab layer and the sliders.

    Synthesis: per target, the synthesized vs the best natural image's response (bars; the
    shown image's target highlighted) and the shown image's objective over the steps (the
    shown step marked); the viewer's text overlay names the image, step and response.
    Recording: a neuroid selector (or click a column of the response matrix) and that
    neuroid's mean response (± s.d. over repetitions) against the stimuli or a parameter.
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.layer = None
        self.summary_text = ""
        self.info = QLabel("Open a synthesis or recording store (File ▸ Open).")
        self.info.setWordWrap(True)
        self.neuroid = QComboBox()
        self.neuroid.setMaxVisibleItems(30)
        self.xaxis = QComboBox()
        self.selectors = QWidget()
        form = QFormLayout(self.selectors)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("neuroid", self.neuroid)
        form.addRow("against", self.xaxis)
        self.figure = Figure(figsize=(4, 5), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumSize(280, 320)
        layout = QVBoxLayout(self)
        layout.addWidget(self.info)
        layout.addWidget(self.selectors)
        layout.addWidget(self.canvas, stretch=1)
        self.selectors.setVisible(False)
        self._markers: list[Any] = []
        self.neuroid.currentIndexChanged.connect(self._replot)
        self.xaxis.currentIndexChanged.connect(self._replot)
        self.viewer.layers.events.inserted.connect(self._follow)
        self.viewer.layers.events.removed.connect(self._follow)
        self.viewer.layers.selection.events.active.connect(self._follow)
        self.viewer.dims.events.current_step.connect(self._on_step)
        self._follow()

    # which layer -------------------------------------------------------------------------
    def _candidates(self) -> list[Any]:
        return [
            layer
            for layer in self.viewer.layers
            if (_meta(layer) or {}).get("kind") in ("synthesis", "recording")
        ]

    def _follow(self, event: Any = None) -> None:
        active = self.viewer.layers.selection.active
        layers = self._candidates()
        layer = active if active in layers else (layers[-1] if layers else None)
        if layer is self.layer and layer is not None:
            return
        self.layer = layer
        meta = _meta(layer) if layer is not None else None
        if meta is None:
            self.selectors.setVisible(False)
            self.figure.clear()
            self.canvas.draw_idle()
            self.info.setText("Open a synthesis or recording store (File ▸ Open).")
            return
        if meta["kind"] == "synthesis":
            self.selectors.setVisible(False)
        else:
            self._fill_selectors(meta)
            self._connect_matrix_clicks(layer, meta)
        self._replot()

    def _index(self, label: str) -> int:
        """Current slider position of the followed layer's axis ``label`` (0 if none)."""
        labels = tuple(self.layer.axis_labels)
        if label not in labels:
            return 0
        axis = self.viewer.dims.ndim - self.layer.ndim + labels.index(label)
        return int(self.viewer.dims.current_step[axis])

    # synthesis ---------------------------------------------------------------------------
    def _plot_synthesis(self, meta: dict) -> None:
        res = meta["result"]
        targets = res.targets
        fig = self.figure
        fig.clear()
        ax1, ax2 = fig.subplots(2, 1)
        n = len(targets)
        x = np.arange(n)
        short = [_short(t) for t in targets["target"].astype(str)]
        if n:
            ax1.bar(x - 0.2, targets["synthesized"], 0.4, label="synthesized", color="C1")
            ax1.bar(x + 0.2, targets["best_natural"], 0.4, label="best natural", color="C0")
            ax1.set_xticks(x, short, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
        kind = res.attrs.get("objective_kind", res.attrs.get("objective"))
        ax1.set_ylabel("score" if kind == "one_hot" else "response (spikes/s)")
        ax1.set_title(f"{kind}: synthesized vs best natural", fontsize=9)
        top = float(np.nanmax(targets[["synthesized", "best_natural"]].to_numpy())) if n else 1.0
        ax1.set_ylim(0, top * 1.25 if np.isfinite(top) and top > 0 else 1.0)
        ax1.legend(fontsize=7, loc="upper center", ncols=2, frameon=False)
        traj = np.asarray(res.trajectory)
        self._traj = traj
        ax2.set_xlabel("step")
        ax2.set_ylabel("objective")
        self._axes = (ax1, ax2)
        self._update_synthesis(meta)

    def _update_synthesis(self, meta: dict) -> None:
        res = meta["result"]
        ax1, ax2 = self._axes
        for m in self._markers:
            m.remove()
        self._markers = []
        b = min(self._index("image"), len(res.table) - 1)
        k = min(self._index("step"), len(meta["steps"]) - 1)
        step = meta["steps"][k]
        row = res.table.iloc[b]
        targets = list(res.targets["target"].astype(str))
        t = targets.index(str(row["target"])) if str(row["target"]) in targets else None
        if t is not None:
            self._markers.append(ax1.axvspan(t - 0.5, t + 0.5, color="yellow", alpha=0.3))
        for line in list(ax2.lines):
            line.remove()
        if self._traj.size:
            ax2.plot(np.arange(len(self._traj)), self._traj[:, b], color="C1", lw=1)
        self._markers.append(ax2.axvline(step, color="k", lw=0.8, ls="--"))
        ax2.set_title(f"image {b} ({_short(str(row['target']))}), step {step}", fontsize=9)
        natural = res.targets.iloc[t]["best_natural"] if t is not None else math.nan
        value = row.get("score", row.get("response", math.nan))
        unit = "" if "score" in row else " spikes/s"
        self.summary_text = (
            f"image {b + 1}/{len(res.table)}  target {row['target']}  replicate "
            f"{row.get('replicate', 0)}  step {step}/{meta['steps'][-1]}  "
            f"final {'score' if unit == '' else 'response'} {value:.3g}{unit}  "
            f"(best natural {natural:.3g}{unit})"
        )
        self.overlay_text = (
            f"image {b + 1}/{len(res.table)}  {_short(str(row['target']))}  step {step}  "
            f"{value:.3g}{unit} (natural {natural:.3g})"
        )
        self.info.setText(self.summary_text)
        overlay = text_overlay(self.viewer)
        overlay.text = self.overlay_text
        overlay.visible = True
        self.canvas.draw_idle()

    # recording ---------------------------------------------------------------------------
    def _fill_selectors(self, meta: dict) -> None:
        self.selectors.setVisible(True)
        self.neuroid.blockSignals(True)
        self.xaxis.blockSignals(True)
        self.neuroid.clear()
        neuroids = meta["neuroids"]
        for k, nid in enumerate(neuroids["neuroid_id"].astype(str)):
            extra = ""
            if "rf_x_deg" in neuroids and "rf_y_deg" in neuroids:
                extra = (
                    f"  RF ({neuroids['rf_x_deg'].iloc[k]:+.1f}, "
                    f"{neuroids['rf_y_deg'].iloc[k]:+.1f})°"
                )
            self.neuroid.addItem(f"{nid}{extra}", k)
        best = int(np.nanargmax(meta["mean"].max(axis=0))) if meta["mean"].size else 0
        self.neuroid.setCurrentIndex(best)
        self.xaxis.clear()
        self.xaxis.addItem("stimulus")
        stim = meta["stimuli"]
        for col in stim.columns:
            if col in ("stimulus_id", "repetition", "presentation"):
                continue
            if np.issubdtype(stim[col].dtype, np.number) and stim[col].nunique() > 1:
                self.xaxis.addItem(col)
        self.neuroid.blockSignals(False)
        self.xaxis.blockSignals(False)

    def _connect_matrix_clicks(self, layer: Any, meta: dict) -> None:
        if meta.get("axis") != "matrix" or getattr(layer, "_insilico_clicks", False):
            return

        def click(layer, event):
            _, col = (round(float(v)) for v in layer.world_to_data(event.position)[-2:])
            if 0 <= col < self.neuroid.count():
                self.neuroid.setCurrentIndex(col)

        layer.mouse_drag_callbacks.append(click)

    def _plot_recording(self, meta: dict) -> None:
        fig = self.figure
        fig.clear()
        ax = fig.subplots(1, 1)
        k = self.neuroid.currentData()
        k = 0 if k is None else int(k)
        nid = str(meta["neuroids"]["neuroid_id"].iloc[k])
        mean, sd = meta["mean"][:, k], meta["sd"][:, k]
        stim = meta["stimuli"]
        against = self.xaxis.currentText() or "stimulus"
        if against == "stimulus":
            x = np.arange(len(mean))
            ax.errorbar(x, mean, yerr=sd, fmt="o-", ms=3, lw=1, capsize=0, color="C0")
            ax.set_xlabel("stimulus (first shown order)")
        else:
            values = stim[against].to_numpy(dtype=float)
            levels = np.unique(values)
            m = np.array([mean[values == v].mean() for v in levels])
            se = np.array(
                [mean[values == v].std() / max(math.sqrt((values == v).sum()), 1) for v in levels]
            )
            ax.errorbar(levels, m, yerr=se, fmt="o-", ms=3, lw=1, capsize=2, color="C0")
            ax.set_xlabel(f"{against} (mean ± s.e.m. over the others)")
        ax.set_ylabel(f"response ({meta.get('units', 'spikes/s')})")
        ax.set_title(nid, fontsize=9)
        self._axes = (ax,)
        self._against = against
        self.summary_text = f"neuroid {nid}: peak {np.nanmax(mean):.3g} {meta.get('units', '')}"
        self.info.setText(self.summary_text)
        self._update_recording(meta)

    def _update_recording(self, meta: dict) -> None:
        for m in self._markers:
            m.remove()
        self._markers = []
        if meta.get("axis") == "stimulus":  # mark the stimulus the slider shows
            s = min(self._index("stimulus"), len(meta["stimuli"]) - 1)
            x = s if self._against == "stimulus" else meta["stimuli"][self._against].iloc[s]
            self._markers.append(self._axes[0].axvline(float(x), color="k", lw=0.8, ls="--"))
        self.canvas.draw_idle()

    # events ------------------------------------------------------------------------------
    def _replot(self, *args: Any) -> None:
        meta = _meta(self.layer) if self.layer is not None else None
        if meta is None:
            return
        self._markers = []
        if meta["kind"] == "synthesis":
            self._plot_synthesis(meta)
        else:
            self._plot_recording(meta)

    def _on_step(self, event: Any = None) -> None:
        meta = _meta(self.layer) if self.layer is not None else None
        if meta is None or self.layer not in self.viewer.layers:
            return
        if meta["kind"] == "synthesis":
            self._update_synthesis(meta)
        else:
            self._update_recording(meta)


def _short(neuroid_id: str) -> str:
    """'V4.12.3.4' stays; long ids are cut for tick labels."""
    return neuroid_id if len(neuroid_id) <= 14 else neuroid_id[:13] + "…"


# Synthesize -----------------------------------------------------------------------------
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
        self.model.addItems(_model_names())
        self.model.setCurrentText("efficientnet_lite0")
        self.region = QComboBox()
        self.region.addItems(REGIONS)
        self.region.setCurrentText("V4")
        self.n_sites = _spin(1, 4096, 16)
        self.at_deg = QLineEdit("1, 1")
        self.sites = QLineEdit("0, 1, 2")
        self.objective = QComboBox()
        self.objective.addItems(OBJECTIVES)
        self.n_per_target = _spin(1, 64, 1)
        self.size_deg = QDoubleSpinBox()
        self.size_deg.setRange(0.1, 180.0)
        self.size_deg.setDecimals(2)
        self.size_deg.setValue(4.0)
        self.size_deg.setSuffix(" deg")
        self.position = QLineEdit("1, 1")
        self.steps = _spin(1, 100000, 64)
        self.update_every = _spin(1, 10000, 4)
        self.reference = _spin(1, 100000, 64)
        self.seed = _spin(0, 2**31 - 1, 0)
        form = QFormLayout()
        form.addRow("model", self.model)
        form.addRow("region", self.region)
        form.addRow("array sites", self.n_sites)
        form.addRow("array at (deg x, y)", self.at_deg)
        form.addRow("target sites", self.sites)
        form.addRow("objective", self.objective)
        form.addRow("images per target", self.n_per_target)
        form.addRow("size", self.size_deg)
        form.addRow("position (deg x, y)", self.position)
        form.addRow("steps", self.steps)
        form.addRow("update every", self.update_every)
        form.addRow("natural references", self.reference)
        form.addRow("seed", self.seed)
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
            "at_deg": _pair(self.at_deg.text(), "array at"),
            "sites": _ints(self.sites.text(), "target sites"),
            "objective": self.objective.currentText(),
            "n_per_target": self.n_per_target.value(),
            "size_deg": float(self.size_deg.value()),
            "position_deg": _pair(self.position.text(), "position"),
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
        import insilico as lab

        model = self._models.get(p["model"])
        if model is None:
            model = self._models[p["model"]] = lab.load_model(p["model"])
        rig = lab.Rig(model)
        array = rig.implant(p["region"], p["n_sites"], at_deg=p["at_deg"], seed=p["seed"])
        missing = sorted(set(p["sites"]) - set(int(s) for s in array.table["site"]))
        if missing:
            raise ValueError(f"target sites {missing} are not on the {len(array)}-site array")
        targets = array.sites[p["sites"]]
        reference = lab.stimuli.natural(p["reference"], size_deg=p["size_deg"], seed=p["seed"] + 1)
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


def _model_names() -> list[str]:
    try:
        import insilico as lab

        return [str(n) for n in lab.models()["name"]]
    except Exception:  # the zoo table is optional here: the field is editable
        return ["efficientnet_lite0", "tiny"]


def _spin(lo: int, hi: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    box.setAlignment(Qt.AlignmentFlag.AlignRight)
    return box


def _pair(text: str, name: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.replace(";", ",").split(","))
    except ValueError:
        raise ValueError(f"{name} must be two numbers 'x, y' in degrees, got {text!r}") from None
    return x, y


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(";", ",").split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name} must be site numbers like '3, 17, 22', got {text!r}") from None
    if not values:
        raise ValueError(f"{name}: give at least one site number")
    return values
