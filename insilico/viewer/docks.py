"""Preparing a napari viewer for the lab's layers, and adding the lab's dock widgets once.

Used by :func:`insilico.viewer.view` and by the npe2 reader (File ▸ Open). The dock widget
modules import napari and Qt, so they load only when a dock is added: ``import
insilico.viewer`` stays cheap.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from insilico.viewer._compat import camera
from insilico.viewer.layers import META

if TYPE_CHECKING:  # pragma: no cover
    import napari

_ATTACHED: dict[int, weakref.ref] = {}


def attach(viewer: napari.Viewer) -> None:
    """Prepare a viewer for the lab's layers (idempotent): point the camera up when a layer
    in degrees arrives (elevation grows upwards), start synthesis stacks at their final
    step, and add the *Responses* dock."""
    key = id(viewer)
    ref = _ATTACHED.get(key)
    if ref is not None and ref() is viewer:
        return
    _ATTACHED[key] = weakref.ref(viewer)

    def inserted(event) -> None:
        _prepare_layer(viewer, event.value)

    viewer.layers.events.inserted.connect(inserted)
    for layer in list(viewer.layers):
        _prepare_layer(viewer, layer)


def _prepare_layer(viewer: napari.Viewer, layer: Any) -> None:
    meta = layer.metadata.get(META) if hasattr(layer, "metadata") else None
    if not meta:
        return
    if "elevation" in tuple(getattr(layer, "axis_labels", ())):
        camera(viewer).orientation2d = ("up", "right")
    labels = tuple(layer.axis_labels)
    first = viewer.dims.ndim - layer.ndim
    if meta.get("kind") in ("synthesis", "recording") and labels[0] in ("image", "stimulus"):
        viewer.dims.set_current_step(first, 0)
    if meta.get("kind") == "synthesis" and "step" in labels:
        viewer.dims.set_current_step(first + labels.index("step"), len(meta["steps"]) - 1)
    if meta.get("kind") in ("synthesis", "recording"):
        add_responses_dock(viewer)


def _docks(viewer: napari.Viewer) -> dict:
    """Dock name -> inner widget (napari >= 0.6.2 ``window.dock_widgets``)."""
    window = getattr(viewer, "window", None)
    if window is None:
        return {}
    docks = getattr(window, "dock_widgets", None)
    if docks is not None:
        return dict(docks)
    wrapped = getattr(window, "_wrapped_dock_widgets", None) or {}
    return {name: dock.widget() for name, dock in wrapped.items()}


def add_responses_dock(viewer: napari.Viewer):
    """The *Responses* dock of this viewer (added once)."""
    from insilico.viewer.responses import ResponsesWidget  # Qt: only when a dock is added

    return _add_dock(viewer, "Responses", ResponsesWidget)


def add_synthesize_dock(viewer: napari.Viewer):
    """The *Synthesize* dock of this viewer (added once)."""
    from insilico.viewer.synthesize import SynthesizeWidget  # Qt and torch: only when added

    return _add_dock(viewer, "Synthesize", SynthesizeWidget)


def _add_dock(viewer: napari.Viewer, name: str, cls: type):
    for widget in _docks(viewer).values():
        if isinstance(widget, cls):
            return widget
    widget = cls(viewer)
    viewer.window.add_dock_widget(widget, name=name, area="right")
    return widget
