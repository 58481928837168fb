"""Stimulus generators, all specified in degrees of visual angle.

Every generator returns a lazy :class:`~stimuli.stimulus_set.StimulusSet` whose table holds
every generating parameter. List-valued parameters are crossed (full factorial, the last
parameter varying fastest). Luminance is linear in [0, 1]; ``mean`` is the mean luminance.
Orientation convention: ``orientation_deg`` is the direction of luminance modulation,
counter-clockwise from the +x axis, so 0° gives vertical bars and 90° horizontal bars.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
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

DEFAULT_PPD = 32.0
#: gamma used to linearise 8-bit images (sRGB is close to a 2.2 power law)
IMAGE_GAMMA = 2.2
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
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


# helpers ------------------------------------------------------------------------------
def _as_list(value: Any) -> list:
    if isinstance(value, str) or not isinstance(value, Iterable):
        return [value]
    values = list(value)
    if not values:
        raise ValueError("a parameter list is empty; give at least one value")
    return values


def _factorial(**params: Any) -> pd.DataFrame:
    keys = list(params)
    combos = list(itertools.product(*(_as_list(params[k]) for k in keys)))
    return pd.DataFrame(combos, columns=keys)


def _stimulus_ids(kind: str, table: pd.DataFrame) -> list[str]:
    """Content-addressed ids: the same parameters give the same id in every set.

    Every numeric parameter must be finite (a NaN orientation or edge used to render NaN
    images silently)."""
    for name in table.columns:
        values = table[name].to_numpy()
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            bad = values[~np.isfinite(values)][0]
            raise ValueError(f"{kind}: {name} must be a finite number, got {bad!r}")
    ids = []
    for row in table.to_dict(orient="records"):
        blob = json.dumps({k: row[k] for k in sorted(row)}, default=str, sort_keys=True)
        ids.append(f"{kind}_{hashlib.sha1(blob.encode()).hexdigest()[:12]}")
    return ids


def _shape_for(size_deg: float, ppd: float, aspect: float = 1.0) -> tuple[int, int]:
    width = max(8, round(size_deg * ppd))
    return max(8, round(width * aspect)), width


def for_each_threaded(fn: Callable[[int], None], n: int) -> None:
    """Call ``fn(k)`` for k in ``range(n)`` on up to ``torch.get_num_threads()`` threads.

    For per-image work whose torch kernels run on one thread each (a batch-of-one antialiased
    resize, a PIL decode) while the network waits: the cores the forward pass will use
    render the batch together. ``fn`` must write only its own output slot."""
    threads = torch.get_num_threads()
    workers = min(threads, n)
    if workers <= 1:
        for k in range(n):
            fn(k)
        return

    def chunk(j: int) -> None:
        # one OpenMP thread inside each worker (else every worker's copies fork a team of
        # their own: 4 threads on 2 cores, 1.4x slower); set_num_threads also stores the
        # count new threads start with, so the caller's count is put back at the end
        torch.set_num_threads(1)
        try:
            for k in range(j, n, workers):
                fn(k)
        finally:
            torch.set_num_threads(threads)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(chunk, range(workers)))  # list(): re-raises a worker's exception


def _check_ppd(ppd: float) -> float:
    return check_size_deg(ppd, "ppd (pixels per degree)")


def _check_unit_interval(name: str, values: Any) -> None:
    for v in _as_list(values):
        if not (isinstance(v, int | float | np.number) and 0.0 <= float(v) <= 1.0):
            raise ValueError(f"{name} must be in [0, 1], got {v!r}")


def _deg_grid(rows: pd.DataFrame, shape_px: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-stimulus x, y coordinates in degrees of each pixel centre: (n, H, W) each."""
    h, w = shape_px
    dpp = torch.as_tensor(rows["size_deg"].to_numpy(dtype=np.float32) / w)[:, None, None]
    cols = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
    rws = (h - 1) / 2 - torch.arange(h, dtype=torch.float32)
    return cols[None, None, :] * dpp, rws[None, :, None] * dpp


def _col(rows: pd.DataFrame, name: str) -> torch.Tensor:
    return torch.tensor(rows[name].to_numpy(dtype=np.float32))[:, None, None]


def _is(rows: pd.DataFrame, name: str, value: str) -> torch.Tensor:
    return torch.tensor((rows[name] == value).to_numpy(dtype=bool))[:, None, None]


def _aperture(rows: pd.DataFrame, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Circular aperture (diameter = size_deg) with a raised-cosine edge ``edge_deg`` wide."""
    if "aperture" not in rows or (rows["aperture"] == "none").all():
        return None
    r = torch.sqrt(x**2 + y**2)
    radius = _col(rows, "size_deg") / 2
    edge = _col(rows, "edge_deg").clamp(min=1e-6)
    ramp = ((radius - r) / edge).clamp(0.0, 1.0)
    alpha = 0.5 - 0.5 * torch.cos(math.pi * ramp)
    circle = _is(rows, "aperture", "circle")
    return torch.where(circle, alpha, torch.ones_like(alpha))[:, None]


def _rgb(luminance: torch.Tensor) -> torch.Tensor:
    return luminance[:, None].expand(-1, 3, -1, -1).contiguous()


# gratings and gabors ------------------------------------------------------------------
def _grating_renderer(shape_px: tuple[int, int]):
    def render(rows: pd.DataFrame) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, y = _deg_grid(rows, shape_px)
        theta = torch.deg2rad(_col(rows, "orientation_deg"))
        phase = torch.deg2rad(_col(rows, "phase_deg"))
        arg = 2 * math.pi * _col(rows, "sf_cpd") * (x * torch.cos(theta) + y * torch.sin(theta))
        wave = torch.sin(arg + phase)
        square = _is(rows, "waveform", "square")
        wave = torch.where(square, torch.sign(wave), wave)
        if "sigma_deg" in rows:
            wave = wave * torch.exp(-(x**2 + y**2) / (2 * _col(rows, "sigma_deg") ** 2))
        lum = _col(rows, "mean") * (1 + _col(rows, "contrast") * wave)
        return Rendered(_rgb(lum), _aperture(rows, x, y))

    return render


def _checked_grating_table(
    kind: str, table: pd.DataFrame, ppd: float
) -> tuple[pd.DataFrame, tuple]:
    for size in table["size_deg"].unique():
        check_size_deg(size)
    for sf in table["sf_cpd"].unique():
        check_size_deg(sf, "sf_cpd (cycles per degree)")
    for name in ("contrast", "mean"):
        _check_unit_interval(name, table[name].unique())
    if ((table["mean"] * (1 + table["contrast"])) > 1.0 + 1e-9).any():
        raise ValueError(
            "mean * (1 + contrast) exceeds 1: the grating would leave the display gamut"
        )
    for w in table["waveform"].unique():
        if w not in ("sine", "square"):
            raise ValueError(f"waveform must be 'sine' or 'square', got {w!r}")
    for a in table.get("aperture", pd.Series(["none"])).unique():
        if a not in ("circle", "none"):
            raise ValueError(f"aperture must be 'circle' or 'none', got {a!r}")
    shape = _shape_for(float(table["size_deg"].max()), ppd)
    nyquist = shape[1] / float(table["size_deg"].max()) / 2
    if float(table["sf_cpd"].max()) > nyquist:
        raise ValueError(
            f"sf_cpd={table['sf_cpd'].max()} exceeds the Nyquist limit {nyquist:.1f} cycles/deg "
            f"at ppd={ppd}; raise ppd"
        )
    table.insert(0, "stimulus_id", _stimulus_ids(kind, table))
    return table, shape


def _positions(table: pd.DataFrame, position_deg: Any) -> pd.DataFrame:
    pos = np.asarray(position_deg, dtype=object)
    positions = [position_deg] if pos.ndim == 1 else list(position_deg)
    checked = [check_position_deg(p) for p in positions]
    out = []
    for x, y in checked:
        t = table.copy()
        t["position_x_deg"], t["position_y_deg"] = x, y
        out.append(t)
    return pd.concat(out, ignore_index=True)


def gratings(
    size_deg: float | Sequence[float],
    position_deg: tuple[float, float] | Sequence[tuple[float, float]] = (0.0, 0.0),
    orientation_deg: float | Iterable[float] = 0.0,
    sf_cpd: float | Iterable[float] = 2.0,
    phase_deg: float | Iterable[float] = 0.0,
    contrast: float | Iterable[float] = 1.0,
    mean: float = 0.5,
    waveform: str = "sine",
    aperture: str = "circle",
    edge_deg: float = 0.1,
    ppd: float = DEFAULT_PPD,
) -> StimulusSet:
    """Sine or square-wave gratings in a circular aperture (diameter ``size_deg``).

    sf in cycles/deg, orientation and phase in deg, Michelson ``contrast``, ``mean`` linear
    luminance; the aperture edge is a raised cosine ``edge_deg`` wide. Every combination of
    list-valued parameters is one stimulus (and every position in a list of positions).
    """
    ppd = _check_ppd(ppd)
    table = _factorial(
        size_deg=size_deg,
        orientation_deg=orientation_deg,
        sf_cpd=sf_cpd,
        phase_deg=phase_deg,
        contrast=contrast,
        mean=mean,
        waveform=waveform,
        aperture=aperture,
        edge_deg=edge_deg,
    )
    table = _positions(table, position_deg)
    table, shape = _checked_grating_table("grating", table, ppd)
    return StimulusSet(table, shape, _grating_renderer(shape), "gratings", "gratings-v1")


def gabors(
    sigma_deg: float | Sequence[float],
    position_deg: tuple[float, float] | Sequence[tuple[float, float]] = (0.0, 0.0),
    orientation_deg: float | Iterable[float] = 0.0,
    sf_cpd: float | Iterable[float] = 2.0,
    phase_deg: float | Iterable[float] = 0.0,
    contrast: float | Iterable[float] = 1.0,
    mean: float = 0.5,
    size_deg: float | None = None,
    ppd: float = DEFAULT_PPD,
) -> StimulusSet:
    """Gabor patches: a sine grating under a Gaussian envelope of s.d. ``sigma_deg``.

    The image is ``size_deg`` wide (default 6 sigma, where the envelope is < 1.2 %).
    """
    ppd = _check_ppd(ppd)
    sigmas = [check_size_deg(s, "sigma_deg") for s in _as_list(sigma_deg)]
    size = 6 * max(sigmas) if size_deg is None else check_size_deg(size_deg)
    table = _factorial(
        size_deg=size,
        sigma_deg=sigmas,
        orientation_deg=orientation_deg,
        sf_cpd=sf_cpd,
        phase_deg=phase_deg,
        contrast=contrast,
        mean=mean,
        waveform="sine",
        aperture="none",
        edge_deg=0.0,
    )
    table = _positions(table, position_deg)
    table, shape = _checked_grating_table("gabor", table, ppd)
    return StimulusSet(table, shape, _grating_renderer(shape), "gabors", "gabors-v1")


def blank(
    size_deg: float,
    luminance: float | Iterable[float] = 0.5,
    position_deg: tuple[float, float] = (0.0, 0.0),
    ppd: float = 8.0,
) -> StimulusSet:
    """Uniform fields of the given linear ``luminance`` (one stimulus per value)."""
    size_deg = check_size_deg(size_deg)
    _check_unit_interval("luminance", luminance)
    table = _positions(_factorial(size_deg=size_deg, luminance=luminance), position_deg)
    table.insert(0, "stimulus_id", _stimulus_ids("blank", table))
    shape = _shape_for(size_deg, _check_ppd(ppd))

    def render(rows: pd.DataFrame):
        lum = _col(rows, "luminance").expand(-1, *shape)
        return Rendered(_rgb(lum))

    return StimulusSet(table, shape, render, "blank", "blank-v1")


# noise --------------------------------------------------------------------------------
def _noise_table(
    kind: str, n: int, size_deg: float, position_deg, seed: int, **params
) -> pd.DataFrame:
    if not isinstance(n, int | np.integer) or n <= 0:
        raise ValueError(f"n must be a positive integer number of stimuli, got {n!r}")
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
    table.insert(0, "stimulus_id", _stimulus_ids(kind, table))
    return table


def _white(rows: pd.DataFrame, shape: tuple[int, int], channels: int) -> torch.Tensor:
    """Standard normal noise, one generator per stimulus so a subset renders identically."""
    out = np.empty((len(rows), channels, *shape), dtype=np.float32)
    for k, (seed, index) in enumerate(zip(rows["seed"], rows["index"])):
        rng = np.random.default_rng([int(seed), int(index)])
        out[k] = rng.standard_normal((channels, *shape), dtype=np.float32)
    return torch.from_numpy(out)


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
    _check_unit_interval("mean", mean)
    if not 0 <= contrast <= 1:
        raise ValueError(f"contrast (RMS) must be in [0, 1], got {contrast!r}")
    size_deg = check_size_deg(size_deg)
    ppd = _check_ppd(ppd)
    grain = 1.0 / ppd if grain_deg is None else check_size_deg(grain_deg, "grain_deg")
    shape = _shape_for(size_deg, ppd)
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

    def render(rows: pd.DataFrame):
        checks = max(1, round(size_deg / grain))
        z = _white(rows, (checks, checks), 3 if color else 1)
        if checks != shape[1]:
            z = F.interpolate(z, size=shape, mode="nearest")
        lum = _col(rows, "mean")[:, None] * (1 + _col(rows, "contrast")[:, None] * z)
        return Rendered(lum.expand(-1, 3, -1, -1).contiguous())

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
    _check_unit_interval("mean", mean)
    if not 0 <= contrast <= 1:
        raise ValueError(f"contrast (RMS) must be in [0, 1], got {contrast!r}")
    size_deg = check_size_deg(size_deg)
    shape = _shape_for(size_deg, _check_ppd(ppd))
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

    def render(rows: pd.DataFrame):
        z = _white(rows, shape, 1)
        fy = torch.fft.fftfreq(shape[0])[:, None]
        fx = torch.fft.rfftfreq(shape[1])[None, :]
        f = torch.sqrt(fx**2 + fy**2)
        f[0, 0] = 1.0
        spec = torch.fft.rfft2(z) / f ** _col(rows, "exponent")[:, None]
        spec[..., 0, 0] = 0
        img = torch.fft.irfft2(spec, s=shape)
        img = img / img.std(dim=(-2, -1), keepdim=True).clamp(min=1e-8)
        lum = _col(rows, "mean")[:, None] * (1 + _col(rows, "contrast")[:, None] * img)
        return Rendered(lum.expand(-1, 3, -1, -1).contiguous())

    return StimulusSet(table, shape, render, "pink_noise", "pink-v1")


# images -------------------------------------------------------------------------------
def _validate_images(images: Any, source: str) -> np.ndarray:
    """(n, H, W) or (n, H, W, 3) uint8 or float in [0, 1] -> float32 (n, H, W, 3) values."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and min(arr.shape[:2]) > 4:
        arr = arr[None]  # one (H, W, 3|4) colour image, not H grey images 3 pixels wide
    if arr.ndim == 4 and arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.ndim == 3:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(
            f"{source}: images have shape {arr.shape}; expected (n, H, W) grey or (n, H, W, 3) RGB"
        )
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"{source}: images have dtype {arr.dtype}; expected uint8 (0-255) or float in [0, 1]"
        )
    if not np.isfinite(arr).all():
        raise ValueError(f"{source}: images contain NaN or infinite pixels")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{source}: float pixel values span [{lo:.3g}, {hi:.3g}]; expected [0, 1]")
    return arr.astype(np.float32)


def _encoded(values: torch.Tensor, encoding: str, in_range: bool = False) -> Rendered:
    return Rendered(values, None, None if encoding == "linear" else IMAGE_GAMMA, in_range)


def _check_encoding(encoding: str) -> str:
    if encoding not in ("srgb", "linear"):
        raise ValueError(f"encoding must be 'srgb' (pixel values) or 'linear', got {encoding!r}")
    return encoding


def from_arrays(
    images: Any,
    size_deg: float,
    position_deg: tuple[float, float] = (0.0, 0.0),
    ids: Sequence[str] | None = None,
    encoding: str = "srgb",
    metadata: pd.DataFrame | None = None,
) -> StimulusSet:
    """Images from an array ``(n, H, W[, 3])`` shown ``size_deg`` wide at ``position_deg``.

    ``encoding="srgb"`` (default) treats values as display pixel values and linearises them;
    ``"linear"`` takes them as linear luminance. Extra per-image columns go in ``metadata``.
    """
    arr = _validate_images(images, "from_arrays")
    _check_encoding(encoding)
    size_deg = check_size_deg(size_deg)
    x, y = check_position_deg(position_deg)
    n, h, w, _ = arr.shape
    digest = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]
    if ids is None:  # content-addressed; repeated images get their index appended
        ids = [
            f"image_{hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest()[:12]}" for a in arr
        ]
        counts = pd.Series(ids).value_counts()
        ids = [i if counts[i] == 1 else f"{i}_{k}" for k, i in enumerate(ids)]
    if len(ids) != n:
        raise ValueError(f"got {len(ids)} ids for {n} images")
    table = pd.DataFrame(
        {
            "stimulus_id": [str(i) for i in ids],
            "size_deg": size_deg,
            "position_x_deg": x,
            "position_y_deg": y,
            "encoding": encoding,
            "_row": np.arange(n),
        }
    )
    if metadata is not None:
        if len(metadata) != n:
            raise ValueError(f"metadata has {len(metadata)} rows for {n} images")
        table = pd.concat([table, metadata.reset_index(drop=True)], axis=1)
    data = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()

    def render(rows: pd.DataFrame):
        return _encoded(data[torch.tensor(rows["_row"].to_numpy())], encoding)

    return StimulusSet(table, (h, w), render, "arrays", f"arrays-{digest}-{encoding}")


def _load_image(path: Path, shape: tuple[int, int] | None) -> np.ndarray:
    """8-bit RGB pixels (H, W, 3) of an image file, resized to ``shape`` when given."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if shape is not None and im.size != (shape[1], shape[0]):
                im = im.resize((shape[1], shape[0]), Image.Resampling.LANCZOS)
            return np.array(im, dtype=np.uint8)  # a writable copy: torch.from_numpy warns otherwise
    except OSError as err:
        raise ValueError(f"cannot read image {str(path)!r}: {err}") from None


def from_folder(
    path: str | os.PathLike,
    size_deg: float,
    position_deg: tuple[float, float] = (0.0, 0.0),
    size_px: tuple[int, int] | None = None,
    encoding: str = "srgb",
) -> StimulusSet:
    """Every image file in ``path`` (sorted by name), loaded lazily, ``size_deg`` wide.

    All images must share one pixel shape, or pass ``size_px=(H, W)`` to resize them.
    The stimulus id is the file name; the table carries the file path.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"stimulus folder {str(folder)!r} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(
            f"stimulus folder {str(folder)!r} has no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    _check_encoding(encoding)
    size_deg = check_size_deg(size_deg)
    x, y = check_position_deg(position_deg)
    from PIL import Image

    shapes = {}
    for f in files:
        try:
            with Image.open(f) as im:
                shapes[f] = (im.size[1], im.size[0])
        except OSError as err:
            raise ValueError(f"cannot read image {str(f)!r}: {err}") from None
    if size_px is None:
        first = shapes[files[0]]
        for f, s in shapes.items():
            if s != first:
                raise ValueError(
                    f"image {f.name!r} is {s[0]}x{s[1]} px but {files[0].name!r} is "
                    f"{first[0]}x{first[1]}; pass size_px=(H, W) to resize all images"
                )
        shape = first
    else:
        shape = (int(size_px[0]), int(size_px[1]))
    table = pd.DataFrame(
        {
            "stimulus_id": [f.name for f in files],
            "size_deg": size_deg,
            "position_x_deg": x,
            "position_y_deg": y,
            "path": [str(f.resolve()) for f in files],
            "encoding": encoding,
        }
    )

    def render(rows: pd.DataFrame):
        # decoded on the torch threads (PIL releases the GIL), each straight into its
        # channels-last float slot
        paths = rows["path"].tolist()
        out = torch.empty(len(paths), 3, *shape, memory_format=torch.channels_last)

        def load(k: int) -> None:
            pixels = torch.from_numpy(_load_image(Path(paths[k]), shape)).permute(2, 0, 1)
            out[k].copy_(pixels).div_(255.0)

        for_each_threaded(load, len(paths))
        return _encoded(out, encoding, in_range=True)  # k / 255, k in 0..255

    stamp = ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
    return StimulusSet(table, shape, render, "folder", f"folder-{stamp}-{encoding}")


@cache
def _sample_image(name: str) -> torch.Tensor:
    """A skimage.data sample image as 8-bit pixel values, (1, 3, H, W) channels-last."""
    from skimage import data

    im = np.asarray(getattr(data, name)())
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
    if not isinstance(n, int | np.integer) or n <= 0:
        raise ValueError(f"n must be a positive integer number of stimuli, got {n!r}")
    check_seed(seed)
    size_deg = check_size_deg(size_deg)
    x, y = check_position_deg(position_deg)
    shape = _shape_for(size_deg, _check_ppd(ppd))
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
    table.insert(0, "stimulus_id", _stimulus_ids("natural", table))
    table.insert(1, "size_deg", size_deg)
    table.insert(2, "position_x_deg", x)
    table.insert(3, "position_y_deg", y)
    table["seed"] = int(seed)

    def render(rows: pd.DataFrame):
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


#: how a crop with less RMS contrast than the budget is treated by :func:`equate`
LOW_CONTRAST = ("scale_up", "keep")


def _window(shape: tuple[int, int], size_deg: float, edge_deg: float) -> torch.Tensor:
    """(H, W) circular window of diameter ``size_deg`` (deg) with a raised-cosine edge
    ``edge_deg`` wide: the same aperture as ``stimuli.synthesis.constraints.aperture``."""
    h, w = shape
    dpp = size_deg / w
    y = ((h - 1) / 2 - torch.arange(h, dtype=torch.float32))[:, None] * dpp
    x = (torch.arange(w, dtype=torch.float32) - (w - 1) / 2)[None, :] * dpp
    ramp = ((size_deg / 2 - torch.sqrt(x**2 + y**2)) / max(edge_deg, 1e-6)).clamp(0.0, 1.0)
    return 0.5 - 0.5 * torch.cos(math.pi * ramp)


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
    from stimuli.display import Display

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
    window = _window(shape, size, float(edge_deg))
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
    table.insert(0, "stimulus_id", _stimulus_ids("blend", table))
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
