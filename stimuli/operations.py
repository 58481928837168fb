"""Operations that make a stimulus set from other sets: ``equate`` (hold images to the
display budget a synthesized image is held to), ``concat`` (several sets as one, labelled)
and ``blend`` (pairwise mixtures)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from stimuli.apertures import circular_window
from stimuli.display import Display
from stimuli.stimulus_set import Rendered, StimulusSet
from stimuli.tables import stimulus_ids

#: how a crop with less RMS contrast than the budget is treated by :func:`equate`
LOW_CONTRAST = ("scale_up", "keep")


def equate(
    base: StimulusSet,
    rms_contrast: float = 0.25,
    edge_deg: float = 0.25,
    display: Any = None,
    low_contrast: str = "scale_up",
    gamut_margin: float = 1e-6,
) -> StimulusSet:
    """``base``'s images held to the display budget a synthesized image is held to.

    Each image (linear luminance) is, in this order: resampled to the display's pixels
    (``display``, a :class:`stimuli.Display`; default ``Display()``) at its size and place;
    windowed by the synthesis aperture (circle ``size_deg`` wide, raised-cosine edge
    ``edge_deg`` deg wide, background outside); re-centred so its mean luminance equals the
    display background **per colour channel**; scaled so its RMS contrast
    ``sqrt(sum(w d^2) / (3 sum(w))) / background`` (``w`` the window, ``d`` the deviation
    from the background) equals ``rms_contrast`` (dimensionless); scaled down further where
    that would leave the gamut [0, 1], exactly as ``DisplayConstraints`` does (such an image
    ends below the budget); then gamma-encoded for the display, quantised to its
    ``bit_depth`` and decoded to the luminance the monitor shows.

    ``low_contrast="scale_up"`` (default) scales an image with less contrast than the budget
    *up* to it, so every image spends the budget a synthesized image may spend;
    ``"keep"`` leaves such images at their own contrast (only scaling down).
    """
    if not isinstance(base, StimulusSet):
        raise ValueError(f"equate needs a StimulusSet, got {type(base).__name__}")
    if not isinstance(rms_contrast, int | float) or not 0 < rms_contrast <= 1:
        raise ValueError(f"rms_contrast must be in (0, 1], got {rms_contrast!r}")
    if not isinstance(edge_deg, int | float) or not math.isfinite(edge_deg) or edge_deg < 0:
        raise ValueError(f"edge_deg must be a finite number of degrees >= 0, got {edge_deg!r}")
    if low_contrast not in LOW_CONTRAST:
        raise ValueError(f"low_contrast must be one of {LOW_CONTRAST}, got {low_contrast!r}")
    display = Display() if display is None else display
    if not isinstance(display, Display):
        raise ValueError(f"display must be a stimuli.Display, got {type(display).__name__}")
    bg = float(display.background)
    if not 0 < bg < 1:
        raise ValueError(f"the display background must be in (0, 1), got {bg!r}")
    sizes = base.meta["size_deg"].unique()
    if len(sizes) != 1:
        raise ValueError(f"equate needs stimuli of one size, got sizes {sorted(sizes)} deg")
    size = float(sizes[0])
    x0 = float(base.meta["position_x_deg"].iloc[0])
    side = max(8, round(display.size_px(size, at_deg=x0)))
    shape = (side, side)
    window = circular_window(shape, size, float(edge_deg))
    w_sum = window.sum()
    top = 2**display.bit_depth - 1
    table = base.meta.copy()
    table["_base_row"] = np.arange(len(table))
    table["stimulus_id"] = [f"eq_{i}" for i in base.meta["stimulus_id"]]
    table["equated_rms_contrast"] = float(rms_contrast)
    table["equated_edge_deg"] = float(edge_deg)
    table["equated_background"] = bg
    table["equated_bit_depth"] = int(display.bit_depth)
    table["equated_gamma"] = float(display.gamma)
    table["equated_low_contrast"] = low_contrast

    def render(rows: pd.DataFrame) -> Rendered:
        lum = base.images(rows["_base_row"].to_numpy())[0]
        if tuple(lum.shape[-2:]) != shape:
            lum = F.interpolate(lum, size=shape, mode="bilinear", antialias=True)
        mean = (lum * window).sum(dim=(-2, -1), keepdim=True) / w_sum
        d = (lum - mean) * window
        rms = torch.sqrt((window * d**2).sum(dim=(1, 2, 3)) / (3 * w_sum) + 1e-20) / bg
        scale = rms_contrast / rms
        if low_contrast == "keep":
            scale = scale.clamp(max=1.0)
        gamut = torch.stack(
            [
                (1 - bg) * (1 - gamut_margin) / d.amax(dim=(1, 2, 3)).clamp(min=1e-12),
                bg * (1 - gamut_margin) / (-d).amax(dim=(1, 2, 3)).clamp(min=1e-12),
            ]
        ).amin(dim=0)
        out = (bg + d * torch.minimum(scale, gamut).view(-1, 1, 1, 1)).clamp(0.0, 1.0)
        coded = (out.pow(1.0 / display.gamma) * top).round() / top  # what the monitor gets
        return Rendered(coded.pow(display.gamma), None, None)

    fp = (
        f"equated:{base.fingerprint()}:{rms_contrast}:{edge_deg}:{low_contrast}:"
        f"{bg}:{display.gamma}:{display.bit_depth}:{side}"
    )
    return StimulusSet(table, shape, render, "natural_equated", fp)


def _same_geometry(sets: Sequence[StimulusSet], what: str) -> tuple[int, int]:
    shapes = {st.shape_px for st in sets}
    if len(shapes) != 1:
        raise ValueError(
            f"{what} needs stimulus sets of one pixel shape, got {sorted(shapes)}; "
            "make them with the same size_deg and ppd"
        )
    return shapes.pop()


def concat(sets: dict[str, StimulusSet] | Sequence[StimulusSet]) -> StimulusSet:
    """The stimuli of several sets, in order, as one set with a ``set`` column naming each
    stimulus's set (the dict key, else its position) — e.g. labels for a decoder.

    The sets must have one pixel shape; stimulus ids must be distinct across sets.
    """
    named = dict(sets) if isinstance(sets, dict) else {str(i): st for i, st in enumerate(sets)}
    if not named or not all(isinstance(st, StimulusSet) for st in named.values()):
        raise ValueError("concat needs a non-empty dict or list of StimulusSets")
    parts = list(named.items())
    shape = _same_geometry([st for _, st in parts], "concat")
    tables = []
    for k, (name, st) in enumerate(parts):
        t = st.meta.copy()
        t["set"] = name
        t["_set"] = k
        t["_set_row"] = np.arange(len(t))
        tables.append(t)
    table = pd.concat(tables, ignore_index=True)

    def render(rows: pd.DataFrame) -> Rendered:
        which = rows["_set"].to_numpy()
        pieces = []
        for k in np.unique(which):
            where = torch.as_tensor(np.flatnonzero(which == k))
            pieces.append((where, parts[k][1].render(rows["_set_row"].to_numpy()[where.numpy()])))
        gammas = {r.gamma for _, r in pieces}
        gamma = gammas.pop() if len(gammas) == 1 else None  # mixed encodings: go linear
        h, w = shape
        values = torch.empty(len(rows), 3, h, w)
        has_alpha = any(r.alpha is not None for _, r in pieces)
        alpha = torch.ones(len(rows), 1, h, w) if has_alpha else None
        for where, r in pieces:
            values[where] = r.values.float() if gamma is not None or r.gamma is None else r.linear()
            if alpha is not None and r.alpha is not None:
                alpha[where] = r.alpha.float()
        return Rendered(values, alpha, gamma)

    fp = "concat:" + ",".join(f"{name}={st.fingerprint()}" for name, st in parts)
    return StimulusSet(table, shape, render, "concat", fp)


def blend(a: StimulusSet, b: StimulusSet, weight: float = 0.5) -> StimulusSet:
    """Pairwise mixtures ``weight * a[i] + (1 - weight) * b[i]`` in linear luminance (ambiguous
    images, e.g. 50/50 cat/other blends); shown at ``a``'s size and position.

    The sets must have the same length and pixel shape; a stimulus's alpha is the larger of
    its two sources'. Parameters of the sources are kept as ``a_*`` and ``b_*`` columns.
    """
    if not isinstance(a, StimulusSet) or not isinstance(b, StimulusSet):
        raise ValueError("blend needs two StimulusSets")
    if len(a) != len(b):
        raise ValueError(f"blend needs sets of equal length, got {len(a)} and {len(b)}")
    if not isinstance(weight, int | float) or not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be a number in [0, 1], got {weight!r}")
    shape = _same_geometry([a, b], "blend")
    pa, pb = a.parameters, b.parameters
    table = pd.DataFrame(
        {
            "size_deg": pa["size_deg"].to_numpy(),
            "position_x_deg": pa["position_x_deg"].to_numpy(),
            "position_y_deg": pa["position_y_deg"].to_numpy(),
            "weight": float(weight),
        }
    )
    for prefix, p in (("a_", pa), ("b_", pb)):
        for col in p.columns:
            if col not in ("size_deg", "position_x_deg", "position_y_deg"):
                table[prefix + col] = p[col].to_numpy()
    table.insert(0, "stimulus_id", stimulus_ids("blend", table))
    table["_row"] = np.arange(len(table))

    def render(rows: pd.DataFrame) -> Rendered:
        idx = rows["_row"].to_numpy()
        ra, rb = a.render(idx), b.render(idx)
        values = weight * ra.linear() + (1.0 - weight) * rb.linear()
        if ra.alpha is None and rb.alpha is None:
            return Rendered(values, None, None)
        ones = torch.ones_like(values[:, :1])
        alpha = torch.maximum(
            ra.alpha.float() if ra.alpha is not None else ones,
            rb.alpha.float() if rb.alpha is not None else ones,
        )
        return Rendered(values, alpha, None)

    fp = f"blend:{a.fingerprint()}:{b.fingerprint()}:{weight!r}"
    return StimulusSet(table, shape, render, "blend", fp)
