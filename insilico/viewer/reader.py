"""npe2 reader: napari's File ▸ Open on a lab zarr store (synthesis result or recording).

``get_reader`` reads only the store's metadata and returns None for paths that are not the
lab's stores, so napari's other readers (or its "no reader" message) take over. A store that
is the lab's but cannot be read raises a ``ValueError`` that says why; napari shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from insilico.viewer._compat import prepare_torch
from insilico.viewer.docks import attach
from insilico.viewer.layers import identify, read_store


def get_reader(path: str | list[str]) -> Callable[[Any], list] | None:
    """The reader function for a lab store, else None."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    path = str(path).rstrip("/\\")
    if not path.endswith(".zarr"):
        return None
    kind, _ = identify(path)
    if kind is None:
        return None
    return read


def read(path: str | list[str], stack: bool = False) -> list:
    """Layer data for one lab store (the viewer is prepared for it when there is one)."""
    if isinstance(path, list | tuple):
        path = path[0]
    path = str(path).rstrip("/\\")
    prepare_torch()
    try:
        layers = read_store(path)
    except ValueError as err:
        _show_error(str(err))  # the reason, beside napari's "Tried opening ... failed"
        raise
    _prepare_current_viewer()
    return layers


def _show_error(message: str) -> None:
    try:
        from napari.utils.notifications import show_error
    except ImportError:  # pragma: no cover - the reader runs inside napari
        return
    show_error(message)


def _prepare_current_viewer() -> None:
    """Point the current viewer's camera up and add the Responses dock (see ``attach``)."""
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # no napari, or no viewer yet: layers are still returned
        return
    if viewer is not None:
        attach(viewer)
