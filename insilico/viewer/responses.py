"""The *Responses* dock: plots beside the images, following the selected lab layer.

A plain Qt widget (qtpy) taking the viewer as ``napari_viewer``, so npe2 can build it from
the Plugins menu and :func:`insilico.viewer.view` can dock it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from insilico.viewer._compat import text_overlay
from insilico.viewer.layers import META


def _meta(layer: Any) -> dict | None:
    meta = getattr(layer, "metadata", {}).get(META)
    return meta if isinstance(meta, dict) else None


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
