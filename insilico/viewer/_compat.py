"""Small shims: napari API moves across versions, and torch's triton next to Mesa's GL."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any


def prepare_torch() -> str:
    """Make torch safe to run in a process that draws with napari; returns what it did.

    torch imports ``triton`` (when installed) the first time an optimiser steps. triton
    bundles its own LLVM, and importing it after Mesa's OpenGL (llvmpipe, which loads the
    system's libLLVM) has been loaded crashes the process (segmentation fault). So: before
    OpenGL is up, import torch's compiler stack now ("imported"); once it is up, hide
    triton from torch ("blocked": torch runs eagerly without it, as it does on CPU anyway).
    """
    if "triton" in sys.modules:
        return "already imported" if sys.modules["triton"] is not None else "blocked"
    if importlib.util.find_spec("triton") is None:
        return "not installed"
    if _llvm_loaded():
        sys.modules["triton"] = None  # `import triton` now raises ImportError
        return "blocked"
    import torch._dynamo  # noqa: F401  (imports triton while that is still safe)

    return "imported"


def _llvm_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return any("libLLVM" in line for line in maps)
    except OSError:  # not Linux: Mesa/LLVM clash not seen there
        return False


def camera(viewer: Any) -> Any:
    """``viewer.scene.camera`` (napari >= 0.9) or ``viewer.camera``."""
    try:
        return viewer.scene.camera
    except AttributeError:
        return viewer.camera


def text_overlay(viewer: Any) -> Any:
    """``viewer.canvas.overlays.text`` (napari >= 0.9) or ``viewer.text_overlay``."""
    try:
        return viewer.canvas.overlays.text
    except AttributeError:
        return viewer.text_overlay
