"""Noise stimuli: Gaussian white noise and 1/f^exponent (pink) noise, reproducible per seed.

Each stimulus draws from its own generator, seeded by ``(seed, index)``, so any subset of a
set renders exactly as it does inside the whole set.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from stimuli.stimulus_set import (
    Rendered,
    StimulusSet,
    check_position_deg,
    check_seed,
    check_size_deg,
)
from stimuli.tables import (
    DEFAULT_PPD,
    check_count,
    check_ppd,
    check_unit_interval,
    column,
    shape_for,
    stimulus_ids,
)


def _noise_table(
    kind: str, n: int, size_deg: float, position_deg, seed: int, **params
) -> pd.DataFrame:
    check_count(n)
    check_seed(seed)
    x, y = check_position_deg(position_deg)
    table = pd.DataFrame(
        {
            "size_deg": check_size_deg(size_deg),
            "position_x_deg": x,
            "position_y_deg": y,
            "seed": int(seed),
            "index": np.arange(n),
            **params,
        }
    )
    table.insert(0, "stimulus_id", stimulus_ids(kind, table))
    return table


def _check_contrast(mean: Any, contrast: Any) -> None:
    check_unit_interval("mean", mean)
    if not 0 <= contrast <= 1:
        raise ValueError(f"contrast (RMS) must be in [0, 1], got {contrast!r}")


def _white(rows: pd.DataFrame, shape: tuple[int, int], channels: int) -> torch.Tensor:
    """Standard normal noise, one generator per stimulus so a subset renders identically."""
    out = np.empty((len(rows), channels, *shape), dtype=np.float32)
    for k, (seed, index) in enumerate(zip(rows["seed"], rows["index"])):
        rng = np.random.default_rng([int(seed), int(index)])
        out[k] = rng.standard_normal((channels, *shape), dtype=np.float32)
    return torch.from_numpy(out)


def _luminance(rows: pd.DataFrame, z: torch.Tensor) -> Rendered:
    """``mean * (1 + contrast * z)`` per stimulus, as three channels."""
    lum = column(rows, "mean")[:, None] * (1 + column(rows, "contrast")[:, None] * z)
    return Rendered(lum.expand(-1, 3, -1, -1).contiguous())


def white_noise(
    n: int,
    size_deg: float,
    seed: int = 0,
    grain_deg: float | None = None,
    contrast: float = 0.25,
    mean: float = 0.5,
    color: bool = False,
    position_deg: tuple[float, float] = (0.0, 0.0),
    ppd: float = DEFAULT_PPD,
) -> StimulusSet:
    """Gaussian white noise: ``contrast`` is the RMS contrast (s.d. / mean), clipped to gamut.

    ``grain_deg`` sets the size of a noise check in degrees (default one pixel).
    """
    _check_contrast(mean, contrast)
    size_deg = check_size_deg(size_deg)
    ppd = check_ppd(ppd)
    grain = 1.0 / ppd if grain_deg is None else check_size_deg(grain_deg, "grain_deg")
    shape = shape_for(size_deg, ppd)
    table = _noise_table(
        "white",
        n,
        size_deg,
        position_deg,
        seed,
        grain_deg=grain,
        contrast=contrast,
        mean=mean,
        color=bool(color),
    )

    def render(rows: pd.DataFrame) -> Rendered:
        checks = max(1, round(size_deg / grain))
        z = _white(rows, (checks, checks), 3 if color else 1)
        if checks != shape[1]:
            z = F.interpolate(z, size=shape, mode="nearest")
        return _luminance(rows, z)

    return StimulusSet(table, shape, render, "white_noise", "white-v1")


def pink_noise(
    n: int,
    size_deg: float,
    seed: int = 0,
    exponent: float = 1.0,
    contrast: float = 0.25,
    mean: float = 0.5,
    position_deg: tuple[float, float] = (0.0, 0.0),
    ppd: float = DEFAULT_PPD,
) -> StimulusSet:
    """1/f^exponent noise (amplitude spectrum), scaled to RMS ``contrast``, clipped to gamut."""
    _check_contrast(mean, contrast)
    size_deg = check_size_deg(size_deg)
    shape = shape_for(size_deg, check_ppd(ppd))
    table = _noise_table(
        "pink",
        n,
        size_deg,
        position_deg,
        seed,
        exponent=float(exponent),
        contrast=contrast,
        mean=mean,
    )

    def render(rows: pd.DataFrame) -> Rendered:
        z = _white(rows, shape, 1)
        fy = torch.fft.fftfreq(shape[0])[:, None]
        fx = torch.fft.rfftfreq(shape[1])[None, :]
        f = torch.sqrt(fx**2 + fy**2)
        f[0, 0] = 1.0
        spec = torch.fft.rfft2(z) / f ** column(rows, "exponent")[:, None]
        spec[..., 0, 0] = 0
        img = torch.fft.irfft2(spec, s=shape)
        img = img / img.std(dim=(-2, -1), keepdim=True).clamp(min=1e-8)
        return _luminance(rows, img)

    return StimulusSet(table, shape, render, "pink_noise", "pink-v1")
