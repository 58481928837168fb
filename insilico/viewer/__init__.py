"""View synthesized images and recordings in napari, in degrees of visual angle.

``insilico.viewer.view(result_or_path)`` opens napari with a synthesis result (a
:class:`~stimuli.synthesis.SynthesisResult` or its zarr store) or a recording (an
``xarray.DataArray`` or its store). napari (and Qt) load only when a viewer opens:
``import insilico`` and ``import insilico.viewer`` stay cheap.

The npe2 manifest ``insilico/napari.yaml`` declares the same reader for napari's File ▸ Open
and the dock widgets *Synthesize* and *Responses* (Plugins menu).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from insilico.viewer._compat import prepare_torch
from insilico.viewer.docks import add_responses_dock, add_synthesize_dock, attach
from insilico.viewer.layers import identify, read_store, recording_layers, synthesis_layers

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = [
    "add_responses_dock",
    "add_synthesize_dock",
    "attach",
    "identify",
    "layer_data",
    "prepare_torch",
    "view",
]


def layer_data(obj: Any, name: str | None = None) -> list[tuple]:
    """napari layer data tuples for a result, a recording or a store path (``ValueError`` with
    a readable message for anything else)."""
    if isinstance(obj, str | os.PathLike):
        return read_store(obj)
    if hasattr(obj, "snapshots") and hasattr(obj, "images") and hasattr(obj, "table"):
        return synthesis_layers(obj, name=name)
    if hasattr(obj, "dims") and "presentation" in getattr(obj, "dims", ()):
        return recording_layers(obj, name=name)
    raise TypeError(
        "view() takes a SynthesisResult, a recording (xarray.DataArray) or the path of a zarr "
        f"store written by insilico-lab, got {type(obj).__name__}"
    )


def view(
    result_or_path: Any = None,
    show: bool = True,
    viewer: napari.Viewer | None = None,
    synthesize: bool | None = None,
) -> napari.Viewer:
    """Open napari on a synthesis result, a recording, or a lab zarr store.

    Synthesized images form a stack (image, step, elevation, azimuth): one slider picks the
    image (target x replicate), one the optimisation step (snapshots); the spatial axes are
    in degrees relative to fixation. The aperture is a shapes layer and the *Responses*
    dock plots synthesized vs best natural responses. A recording shows its stimuli when
    their parameters allow re-rendering them (gratings, Gabors), else its response matrix,
    and the *Responses* dock plots a chosen neuroid's responses against the stimuli.

    ``result_or_path=None`` opens an empty viewer with the *Synthesize* dock (also added
    when ``synthesize=True``). Pass ``viewer=`` to add to an existing viewer. Returns the
    viewer; call ``napari.run()`` to block in a script.
    """
    layers = [] if result_or_path is None else layer_data(result_or_path)  # errors before Qt
    prepare_torch()  # before OpenGL loads (see _compat.prepare_torch)
    import napari  # napari and Qt load only when a viewer opens

    if viewer is None:
        title = "insilico-lab"
        if isinstance(result_or_path, str | os.PathLike):
            title = f"insilico-lab: {os.fspath(result_or_path)}"
        viewer = napari.Viewer(show=show, title=title)
    attach(viewer)
    added = [getattr(viewer, f"add_{kind}")(data, **kwargs) for data, kwargs, kind in layers]
    if added:
        viewer.layers.selection.active = added[0]  # the images, not the aperture outline
    if synthesize or (synthesize is None and result_or_path is None):
        add_synthesize_dock(viewer)
    if layers:
        viewer.reset_view()
    return viewer
