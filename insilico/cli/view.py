"""``insilico view``: a synthesis or recording store in napari."""

from __future__ import annotations

import argparse
import os
import sys

from insilico.cli.values import CLIError

# command functions import their dependencies lazily so that `insilico --help` starts fast


def _has_display() -> bool:
    """Whether Qt can open a window here (an X or Wayland display, or not Linux)."""
    if not sys.platform.startswith("linux"):
        return True
    if os.environ.get("QT_QPA_PLATFORM", "").split(":")[0] in ("offscreen", "minimal"):
        return False  # napari cannot draw there; say so rather than abort inside Qt
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cmd_view(args: argparse.Namespace) -> None:
    from insilico.viewer import view

    if not _has_display():
        raise CLIError(
            "no display: insilico view opens a napari window; run it under xvfb-run "
            "(xvfb-run insilico view ...) or set DISPLAY"
        )
    try:
        view(args.path, synthesize=args.synthesize or None)  # bad store: ValueError, exit 2
        import napari
    except ImportError as err:
        raise CLIError(
            f"insilico view needs napari and Qt ({err.name} is missing): "
            "pip install 'insilico-lab[view]'"
        ) from None
    napari.run()
