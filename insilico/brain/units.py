"""Units of a region: receptive fields in degrees, rate scale, cortical-sheet layout in mm.

Measured once per model, region and weights, then cached on disk (``$INSILICO_CACHE``,
default ``~/.cache/insilico-lab``):

* **Receptive fields** by gradient probing (the gradient of a unit's activation with
  respect to the input image, magnitude summed over colour, averaged over white-noise
  images). Each channel is probed at the feature map's central position; the centre of the
  unit at (row, col) is that measurement translated by the layer's stride, exact for
  convolutional networks away from the image border. ``rf_size_deg`` is the diameter
  2.355 sigma (full width at half maximum of the Gaussian with the same second moment).
  Channels whose gradient is zero everywhere (dead units) get the mean field of the others.
  Layers with more than ``MAX_CHANNELS_PER_CHANNEL_PROBE`` channels are probed with the
  channel-summed activation instead (``rf_method="pooled"``), to bound the cost.
* **Rate scale**: the 99th percentile of the layer's activations over 64 natural crops
  (``stimuli.natural``, seed 0) filling the field of view; see the region commitment.
* **Cortical sheets**: one per hemisphere, see :func:`insilico.brain.layout.sheet_layout`;
  channels are placed on their grid by the region's ``arrangement``
  (:func:`insilico.brain.layout.arrange`), measured on the same calibration images.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from insilico.brain.commitments import RegionCommitment
from insilico.brain.layout import (
    UNIT_SWAP_IMAGES,
    arrange,
    arrange_units,
    arrangement_cell_mm,
    sheet_layout,
    unit_hemispheres,
)
from recordings.format import as_string_array
from stimuli import natural
from stimuli.photographs import NATURAL_VERSION

if TYPE_CHECKING:
    from insilico.brain.model import BrainModel

METHOD_VERSION = "units-v1"
MAX_CHANNELS_PER_CHANNEL_PROBE = 512
PROBE_IMAGES_PER_CHANNEL = 2
#: images per backward pass when probing RFs: 8 keeps the first-run peak of Lite0's IT at
#: 2.0 GB (64 took 6.5 GB; tests/benchmarks/bench_memory.py --first-run), same speed on CPU
PROBE_BATCH = 8
CALIBRATION_IMAGES = 64
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass
class RegionUnits:
    """The measured units of one region.

    ``table`` has one row per unit, in the flat order of the layer's feature map
    (``unit = channel * rows * cols + row * cols + col``), with columns ``unit``, ``channel``,
    ``row``, ``col``, ``rf_x_deg``, ``rf_y_deg``, ``rf_size_deg``, ``tissue_x_mm``,
    ``tissue_y_mm``, ``hemisphere``. Degrees are relative to fixation (x right, y up).
    ``hemisphere`` ("left" / "right") names the sheet a unit lies on: the hemisphere
    representing its feature-map position's visual hemifield (right field, x >= 0 ->
    "left"). Tissue positions are in mm on that hemisphere's sheet; both sheets share one
    frame spanning ``[0, sheet_extent_mm[0]] x [0, sheet_extent_mm[1]]`` (see
    :func:`insilico.brain.layout.sheet_layout`), so a distance between units is only
    meaningful within one hemisphere.
    """

    region: str
    layer: str
    shape: tuple[int, int, int]
    table: pd.DataFrame
    rate_scale: float
    rf_method: str
    sheet_extent_mm: tuple[float, float]
    #: how channels were placed on the channel grid (``insilico.brain.layout.arrange``) and the
    #: spatial correlation of that arrangement on the calibration images (Lee et al. 2020)
    arrangement: str = "similarity"
    spatial_correlation: float = float("nan")
    _ids: np.ndarray | None = field(default=None, repr=False, compare=False)

    def neuroid_ids(self, units: np.ndarray) -> np.ndarray:
        """Ids ``REGION.channel.row.col`` for flat unit indices (variable-length strings)."""
        if self._ids is None:  # formatted once per region, then indexed
            t = self.table
            self._ids = as_string_array(
                [
                    f"{self.region}.{a}.{b}.{d}"
                    for a, b, d in zip(t["channel"].tolist(), t["row"].tolist(), t["col"].tolist())
                ]
            )
        return self._ids[np.asarray(units, dtype=np.int64)]

    def units_of(self, neuroid_ids: np.ndarray | list[str]) -> np.ndarray:
        """Flat unit indices of ``REGION.channel.row.col`` ids (clear error on a bad id)."""
        c, h, w = self.shape
        out = np.empty(len(neuroid_ids), dtype=np.int64)
        for k, nid in enumerate(neuroid_ids):
            parts = str(nid).split(".")
            try:
                if parts[0] != self.region or len(parts) != 4:
                    raise ValueError
                ch, r, col = (int(p) for p in parts[1:])
                if not (0 <= ch < c and 0 <= r < h and 0 <= col < w):
                    raise ValueError
            except ValueError:
                raise ValueError(
                    f"neuroid id {nid!r} is not a unit of {self.region}; expected "
                    f"'{self.region}.channel.row.col' with channel < {c}, row < {h}, col < {w}"
                ) from None
            out[k] = ch * h * w + r * w + col
        return out


def cache_dir() -> Path:
    return Path(os.environ.get("INSILICO_CACHE", Path.home() / ".cache" / "insilico-lab"))


def _cache_key(model: BrainModel, rc: RegionCommitment) -> str:
    blob = json.dumps(
        {
            "v": METHOD_VERSION,
            "calibration": NATURAL_VERSION,
            "model": model.identity(),
            "region": rc.__dict__,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _field_stats(maps: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid (x, y) in input pixels (col, row) and sigma in pixels of each map."""
    maps = maps.double()
    _n, h, w = maps.shape
    total = maps.sum(dim=(1, 2))
    rows = torch.arange(h, dtype=torch.float64)[None, :, None]
    cols = torch.arange(w, dtype=torch.float64)[None, None, :]
    p = maps / total.clamp(min=1e-300)[:, None, None]
    cy = (p * rows).sum(dim=(1, 2))
    cx = (p * cols).sum(dim=(1, 2))
    var = (p * ((rows - cy[:, None, None]) ** 2 + (cols - cx[:, None, None]) ** 2)).sum(dim=(1, 2))
    dead = ~(total > 0)
    cx[dead], cy[dead], var[dead] = float("nan"), float("nan"), float("nan")
    return cx.numpy(), cy.numpy(), np.sqrt(var.numpy() / 2.0)


def probe_receptive_fields(
    model: BrainModel, layer: str, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Per-channel RF centre (input px, col/row) and sigma (px) at the central map position."""
    c, h, w = model.layer_shape(layer)
    r0, c0 = h // 2, w // 2
    size = model.input_size
    gen = torch.Generator().manual_seed(0)
    pooled = c > MAX_CHANNELS_PER_CHANNEL_PROBE
    targets = np.zeros(1, dtype=np.int64) if pooled else np.arange(c)
    jobs = np.repeat(targets, PROBE_IMAGES_PER_CHANNEL)
    maps = torch.zeros(len(targets), size, size, dtype=torch.float64)
    chunks = range(0, len(jobs), PROBE_BATCH)
    bar = tqdm(chunks, desc=f"probing {layer} receptive fields", disable=not progress, leave=False)
    for start in bar:
        job = jobs[start : start + PROBE_BATCH]
        x = torch.rand(len(job), 3, size, size, generator=gen).to(model.device).requires_grad_(True)
        out = model.activations(x, [layer], grad=True)[layer]
        if pooled:
            loss = out[:, :, r0, c0].sum()
        else:
            loss = out[torch.arange(len(job)), torch.as_tensor(job), r0, c0].sum()
        (grad,) = torch.autograd.grad(loss, x)
        g = grad.abs().sum(dim=1).double().cpu()
        index = torch.as_tensor(job if not pooled else np.zeros(len(job), dtype=np.int64))
        maps.index_add_(0, index, g)
    cx, cy, sigma = _field_stats(maps)
    if pooled:
        cx, cy, sigma = (np.full(c, v[0]) for v in (cx, cy, sigma))
    dead = np.isnan(cx)
    if dead.all():
        raise RuntimeError(
            f"layer {layer!r}: every unit has zero gradient; cannot map receptive fields"
        )
    if dead.any():
        cx[dead], cy[dead], sigma[dead] = np.nanmean(cx), np.nanmean(cy), np.nanmean(sigma)
    return cx, cy, sigma, "pooled" if pooled else "per-channel"


def calibration_images(model: BrainModel, n: int = CALIBRATION_IMAGES) -> torch.Tensor:
    """``n`` natural crops filling the field of view, as pixel values (gamma 2.2)."""
    ppd = model.input_size / model.visual_degrees
    stim = natural(n, size_deg=model.visual_degrees, seed=0, ppd=ppd)
    rgb, _ = stim.images()
    if rgb.shape[-1] != model.input_size:
        rgb = torch.nn.functional.interpolate(
            rgb, size=(model.input_size,) * 2, mode="bilinear", antialias=True
        )
    return rgb.clamp(0, 1) ** (1 / 2.2)


def layer_activations(model: BrainModel, layer: str, images: torch.Tensor) -> torch.Tensor:
    """Activations (images, C, H, W) of ``layer`` to ``images``, 32 per pass, float32 on CPU."""
    return torch.cat(
        [
            model.activations(images[k : k + 32], [layer])[layer].float().cpu()
            for k in range(0, len(images), 32)
        ]
    )


def calibrate(model: BrainModel, layer: str) -> tuple[float, torch.Tensor]:
    """99th-percentile activation of ``layer`` and its activations (images, C, H, W)."""
    a = layer_activations(model, layer, calibration_images(model))
    flat = a.flatten().numpy()
    if len(flat) > 4_000_000:
        flat = flat[:: len(flat) // 4_000_000 + 1]
    scale = float(np.percentile(flat, 99))
    if not scale > 0:
        scale = float(np.abs(flat).max()) or 1.0
    return scale, a


def _measure(model: BrainModel, region: str, progress: bool) -> dict[str, np.ndarray]:
    rc = model.region(region)
    cx, cy, sigma, method = probe_receptive_fields(model, rc.layer, progress)
    scale, acts = calibrate(model, rc.layer)
    if rc.arrangement == "unit-swap":
        shape = model.layer_shape(rc.layer)
        rf_x, _ = _rf_grid(model, shape, cx, cy)
        more = layer_activations(model, rc.layer, calibration_images(model, UNIT_SWAP_IMAGES))
        hemi = unit_hemispheres(rf_x.mean(axis=0), shape)
        cells, info = arrange_units(more, hemi, rc.sheet_size_mm, progress)
    else:
        cell_mm = arrangement_cell_mm(rc, acts.shape[1])
        cells, info = arrange(rc.arrangement, acts, cell_mm, model.trained_cells.get(rc.layer))
    return {
        "rf_cx_px": cx,
        "rf_cy_px": cy,
        "rf_sigma_px": sigma,
        "rate_scale": np.array(scale),
        "cells": cells,
        "spatial_correlation": np.array(info["spatial_correlation"]),
        "method": np.array(method),
    }


_CACHE_KEYS = {
    "rf_cx_px",
    "rf_cy_px",
    "rf_sigma_px",
    "rate_scale",
    "cells",
    "spatial_correlation",
    "method",
}


def _valid_cache(data: dict, shape: tuple[int, int, int]) -> bool:
    """Whether a loaded cache file holds every measurement, one per channel, all finite."""
    if set(data) != _CACHE_KEYS:
        return False
    c = shape[0]
    per_channel = [data[k] for k in ("rf_cx_px", "rf_cy_px", "rf_sigma_px")]
    return (
        all(a.shape == (c,) and np.isfinite(a).all() for a in per_channel)
        and data["cells"].shape in ((c, 2), (c * shape[1] * shape[2], 2))
        and np.isfinite(data["rate_scale"]).all()
    )


def measure_region(model: BrainModel, region: str, progress: bool = True) -> RegionUnits:
    """Measure (or load from the cache) the units of ``region``."""
    rc = model.region(region)
    shape = model.layer_shape(rc.layer)
    # the name is only a label here: the key hashes the model; no character can leave the folder
    label = re.sub(r"[^A-Za-z0-9._+-]", "_", f"{model.name}-{region}").lstrip(".")
    path = cache_dir() / f"{label}-{_cache_key(model, rc)}.npz"
    data = None
    if path.exists():
        try:
            with np.load(path) as f:
                data = {k: f[k] for k in f.files}
            if not _valid_cache(data, shape):
                raise ValueError("incomplete")
        except Exception:  # zipfile, pickle and OS errors: a damaged file of ours
            data = None  # a corrupt or truncated cache file is measured again and replaced
    if data is None:
        data = _measure(model, region, progress)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **data)
            os.replace(tmp, path)
        except OSError as err:
            warnings.warn(
                f"could not cache unit measurements in {path.parent}: {err}", stacklevel=2
            )
    return _build(model, region, rc, shape, data)


def _rf_grid(
    model: BrainModel, shape: tuple[int, int, int], cx_px: np.ndarray, cy_px: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """RF centres (x, y) in deg of every unit (C, H, W): each channel's measurement at the
    central position (``cx_px``, ``cy_px``, input pixels) translated by the layer's stride."""
    c, h, w = shape
    size = model.input_size
    ppd = size / model.visual_degrees
    stride_px = size / w
    cx = cx_px[:, None, None] + (np.arange(w)[None, None, :] - w // 2) * stride_px
    cy = cy_px[:, None, None] + (np.arange(h)[None, :, None] - h // 2) * stride_px
    mid = (size - 1) / 2
    rf_x = (np.broadcast_to(cx, (c, h, w)) - mid) / ppd
    return rf_x, (mid - np.broadcast_to(cy, (c, h, w))) / ppd


def _build(
    model: BrainModel, region: str, rc: RegionCommitment, shape: tuple[int, int, int], data: dict
) -> RegionUnits:
    c, h, w = shape
    ppd = model.input_size / model.visual_degrees
    stride_px = model.input_size / w
    rf_x, rf_y = _rf_grid(model, shape, data["rf_cx_px"], data["rf_cy_px"])
    rf_size = np.broadcast_to(data["rf_sigma_px"][:, None, None] * FWHM_PER_SIGMA / ppd, (c, h, w))
    pos_x = rf_x.mean(axis=0)
    pos_y = rf_y.mean(axis=0)
    tx, ty, hemisphere = sheet_layout(rc, shape, pos_x, pos_y, data["cells"], stride_px / ppd)
    channel, row, col = np.unravel_index(np.arange(c * h * w), (c, h, w))
    table = pd.DataFrame(
        {
            "unit": np.arange(c * h * w),
            "channel": channel,
            "row": row,
            "col": col,
            "rf_x_deg": rf_x.ravel(),
            "rf_y_deg": rf_y.ravel(),
            "rf_size_deg": rf_size.ravel(),
            "tissue_x_mm": tx,
            "tissue_y_mm": ty,
            "hemisphere": hemisphere,
        }
    )
    return RegionUnits(
        region=region,
        layer=rc.layer,
        shape=shape,
        table=table,
        rate_scale=float(data["rate_scale"]),
        rf_method=str(data["method"]),
        sheet_extent_mm=(float(tx.max()), float(ty.max())),
        arrangement=rc.arrangement,
        spatial_correlation=float(data["spatial_correlation"]),
    )


def with_places(
    model: BrainModel, region: str, table: pd.DataFrame, arrangement: str
) -> BrainModel:
    """A view of ``model`` (the same network, weights and activation caches) whose ``region``
    units lie at ``table``'s tissue positions (mm), recorded as ``arrangement``: for null
    arrangements such as places shuffled (``insilico.analysis.topography.shuffled_places``).
    ``table`` must list the region's units in their order, on the same hemispheres."""
    import copy
    import dataclasses

    ru = model.region_units(region)
    same = (
        len(table) == len(ru.table)
        and (table["unit"].to_numpy() == ru.table["unit"].to_numpy()).all()
    )
    if not same or not (table["hemisphere"].to_numpy() == ru.table["hemisphere"].to_numpy()).all():
        raise ValueError(
            f"places for {region} must list its {len(ru.table)} units in order, each on its "
            f"own hemisphere; got a table of {len(table)} rows that does not"
        )
    view = copy.copy(model)
    view._units = {
        **model._units,
        region: dataclasses.replace(
            ru, table=table, arrangement=arrangement, spatial_correlation=float("nan")
        ),
    }
    return view
