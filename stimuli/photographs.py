"""Natural photographs: square crops of the ``skimage.data`` sample images (offline), alone
(``natural``) or held to a synthesized image's display budget (``natural_equated``)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from skimage import data as sample_data

from stimuli.images import IMAGE_GAMMA, for_each_threaded
from stimuli.operations import equate
from stimuli.stimulus_set import (
    Rendered,
    StimulusSet,
    check_position_deg,
    check_seed,
    check_size_deg,
)
from stimuli.tables import DEFAULT_PPD, check_count, check_ppd, shape_for, stimulus_ids

NATURAL_IMAGES = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "moon",
    "rocket",
)
#: bump when natural() renders differently (unit calibrations cached on it depend on it)
NATURAL_VERSION = "natural-v2"


@cache
def _sample_image(name: str) -> torch.Tensor:
    """A skimage.data sample image as 8-bit pixel values, (1, 3, H, W) channels-last."""
    im = np.asarray(getattr(sample_data, name)())
    if im.ndim == 2:
        im = np.repeat(im[..., None], 3, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(im[..., :3], dtype=np.uint8)).permute(2, 0, 1)[
        None
    ]


def _natural_pool(sources: Sequence[str] | None, exclude: Sequence[str] | None) -> tuple:
    """The photographs to crop from: ``sources`` (default all) minus ``exclude``."""
    for arg, names in (("sources", sources), ("exclude", exclude)):
        if names is None:
            continue
        if isinstance(names, str):
            raise ValueError(f"{arg} must be a list of image names, got the string {names!r}")
        if arg == "sources" and len(names) == 0:
            raise ValueError(
                "sources=[] names no photograph; leave it out (None) for all of "
                f"{', '.join(NATURAL_IMAGES)}"
            )
        bad = [x for x in names if x not in NATURAL_IMAGES]
        if bad:
            raise ValueError(
                f"{arg}: unknown natural image {bad[0]!r}; expected names from "
                f"{', '.join(NATURAL_IMAGES)}"
            )
    pool = tuple(x for x in (sources or NATURAL_IMAGES) if x not in set(exclude or ()))
    if not pool:
        raise ValueError("sources and exclude leave no natural image to crop from")
    return pool


def natural(
    n: int,
    size_deg: float,
    seed: int = 0,
    position_deg: tuple[float, float] = (0.0, 0.0),
    ppd: float = DEFAULT_PPD,
    min_crop_px: int = 64,
    sources: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    half: str | None = None,
) -> StimulusSet:
    """``n`` square crops of the ``skimage.data`` photographs (offline), ``size_deg`` wide.

    Each crop's source image, location, side in source pixels and mirror flip are drawn from
    ``seed`` and kept in the table, so a crop re-renders identically. ``sources`` restricts
    the photographs to those names, ``exclude`` leaves names out (see ``NATURAL_IMAGES``).
    ``half="left"`` / ``"right"`` takes every crop wholly inside that half of each photograph
    (columns ``[0, w//2)`` / ``[w//2, w)``): two sets made with different halves share no
    source pixel, so a train/test split of them cannot overlap.
    """
    if half not in (None, "left", "right"):
        raise ValueError(f"half must be None, 'left' or 'right', got {half!r}")
    check_count(n)
    check_seed(seed)
    size_deg = check_size_deg(size_deg)
    x, y = check_position_deg(position_deg)
    shape = shape_for(size_deg, check_ppd(ppd))
    pool = _natural_pool(sources, exclude)
    rng = np.random.default_rng(seed)
    sizes = {name: tuple(_sample_image(name).shape[2:]) for name in pool}
    rows: dict[tuple, None] = {}  # insertion-ordered set: n distinct crops
    while len(rows) < n:
        name = pool[int(rng.integers(len(pool)))]
        h, w = sizes[name]
        x0, x1 = (0, w) if half is None else ((0, w // 2) if half == "left" else (w // 2, w))
        span = min(h, x1 - x0)
        side = int(rng.integers(min(min_crop_px, span), span + 1))
        top = int(rng.integers(0, h - side + 1))
        left = x0 + int(rng.integers(0, x1 - x0 - side + 1))
        rows[(name, top, left, side, bool(rng.integers(0, 2)))] = None
    table = pd.DataFrame(list(rows), columns=["source", "top", "left", "crop_px", "flip"])
    table.insert(0, "stimulus_id", stimulus_ids("natural", table))
    table.insert(1, "size_deg", size_deg)
    table.insert(2, "position_x_deg", x)
    table.insert(3, "position_y_deg", y)
    table["seed"] = int(seed)

    def render(rows: pd.DataFrame) -> Rendered:
        # crop, mirror and resize the 8-bit photograph (torch's fast uint8 antialiased path;
        # resizing in pixel values, as image pipelines do); they stay encoded until needed,
        # written channels-last like the resized crops (a transposing copy per crop costs a
        # third of the resize) and like the network's input; each worker converts its own
        # crops to float, so there is no separate pass over the batch
        out = torch.empty(len(rows), 3, *shape, memory_format=torch.channels_last)
        crops = list(rows[["source", "top", "left", "crop_px", "flip"]].itertuples(index=False))

        def cut(k: int) -> None:
            source, top, left, side, flip = crops[k]
            crop = _sample_image(source)[:, :, top : top + side, left : left + side]
            # a contiguous channels-last copy first: resizing a strided view is 100x slower
            crop = crop.contiguous(memory_format=torch.channels_last)
            small = F.interpolate(crop, size=shape, mode="bilinear", antialias=True)[0]
            out[k].copy_(small.flip(-1) if flip else small).div_(255.0)

        for_each_threaded(cut, len(crops))
        return Rendered(out, None, IMAGE_GAMMA, in_range=True)  # k / 255, k in 0..255

    return StimulusSet(table, shape, render, "natural", NATURAL_VERSION)


def natural_equated(
    n: int = 1000,
    size_deg: float = 6.0,
    seed: int = 0,
    position_deg: tuple[float, float] = (0.0, 0.0),
    rms_contrast: float = 0.25,
    edge_deg: float = 0.25,
    display: Any = None,
    low_contrast: str = "scale_up",
    **natural_kw: Any,
) -> StimulusSet:
    """``n`` (default 1,000) natural crops ``size_deg`` (deg) wide held to a synthesized
    image's display budget: :func:`natural` crops (same ``seed`` -> the same crops) passed
    through :func:`equate` (circular aperture with an ``edge_deg`` raised-cosine edge, mean
    luminance = the display background, RMS contrast = ``rms_contrast``, the display's gamma
    and bit depth). ``natural_kw`` go to :func:`natural` (``sources``, ``exclude``,
    ``half``, ``min_crop_px``)."""
    base = natural(n, size_deg=size_deg, seed=seed, position_deg=position_deg, **natural_kw)
    return equate(base, rms_contrast, edge_deg, display, low_contrast)
