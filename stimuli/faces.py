"""Faces and non-faces from ``skimage.data.lfw_subset`` (offline): the category set of the
face-patch experiments (face localisers, Afraz et al. 2006 noisy faces).

``lfw_subset`` holds 200 greyscale 25 x 25 px images: 100 faces (Labeled Faces in the Wild)
and 100 non-face patches of natural images. The lab splits both in halves: ``half="train"``
(faces 0-49, non-faces 100-149: the images ``tools/finetune_topographic.py`` trained on) and
``half="test"`` (faces 50-99, non-faces 150-199, never seen in training).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

from stimuli.images import from_arrays
from stimuli.stimulus_set import StimulusSet, check_seed, check_size_deg

HALVES = {"train": (np.r_[0:50], np.r_[100:150]), "test": (np.r_[50:100], np.r_[150:200])}


@cache
def _lfw() -> np.ndarray:
    import skimage.data

    return np.asarray(skimage.data.lfw_subset(), dtype=np.float32)


def faces(
    half: str = "test",
    size_deg: float = 4.0,
    signal: float | list[float] = 1.0,
    position_deg: tuple[float, float] = (0.0, 0.0),
    seed: int = 0,
) -> StimulusSet:
    """The 50 faces and 50 non-faces of one ``half`` of lfw_subset, ``size_deg`` wide.

    ``signal`` (one level or a list; each image is shown at every level): the fraction of
    pixels kept; the others are replaced by uniform grey-level noise drawn from ``seed``
    (the visual-noise morphs of Afraz, Kiani & Esteky 2006). Table columns: ``category``
    ("face" / "nonface"), ``lfw_index``, ``signal``.
    """
    if half not in HALVES:
        raise ValueError(f"half must be 'train' or 'test', got {half!r}")
    size_deg = check_size_deg(size_deg)
    check_seed(seed)
    levels = [signal] if isinstance(signal, int | float) else list(signal)
    for s in levels:
        if isinstance(s, bool) or not isinstance(s, int | float) or not 0.0 <= s <= 1.0:
            raise ValueError(f"signal must be fractions of pixels kept in [0, 1], got {s!r}")
    lfw = _lfw()
    face_ids, other_ids = HALVES[half]
    index = np.r_[face_ids, other_ids]
    rng = np.random.default_rng(seed)
    images, rows = [], []
    for level in levels:
        for k in index:
            keep = rng.random(lfw[k].shape) < level
            noisy = np.where(keep, lfw[k], rng.random(lfw[k].shape, dtype=np.float32))
            images.append(noisy)
            category = "face" if k < 100 else "nonface"
            rows.append((category, int(k), float(level)))
    meta = pd.DataFrame(rows, columns=["category", "lfw_index", "signal"])
    ids = [f"lfw_{half}_{k:03d}_s{level:.2f}_seed{seed}" for _, k, level in rows]
    return from_arrays(
        np.stack(images), size_deg, position_deg=position_deg, ids=ids, metadata=meta
    )
