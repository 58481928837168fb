"""Stimulus sets of given images: arrays in memory (``from_arrays``) and image files in a
folder (``from_folder``, decoded lazily), plus the threaded per-image decoding they share
with the natural photographs.

8-bit images stay gamma-encoded (``IMAGE_GAMMA``) until their luminance is needed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from stimuli.stimulus_set import Rendered, StimulusSet, check_position_deg, check_size_deg

#: gamma used to linearise 8-bit images (sRGB is close to a 2.2 power law)
IMAGE_GAMMA = 2.2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


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

    def render(rows: pd.DataFrame) -> Rendered:
        return _encoded(data[torch.tensor(rows["_row"].to_numpy())], encoding)

    return StimulusSet(table, (h, w), render, "arrays", f"arrays-{digest}-{encoding}")


@contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """The image file at ``path``, open; an unreadable file is a ValueError naming it."""
    try:
        with Image.open(path) as im:
            yield im
    except OSError as err:
        raise ValueError(f"cannot read image {str(path)!r}: {err}") from None


def _load_image(path: Path, shape: tuple[int, int] | None) -> np.ndarray:
    """8-bit RGB pixels (H, W, 3) of an image file, resized to ``shape`` when given."""
    with _opened(path) as im:
        im = im.convert("RGB")
        if shape is not None and im.size != (shape[1], shape[0]):
            im = im.resize((shape[1], shape[0]), Image.Resampling.LANCZOS)
        return np.array(im, dtype=np.uint8)  # a writable copy: torch.from_numpy warns otherwise


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
    shapes = {}
    for f in files:
        with _opened(f) as im:
            shapes[f] = (im.size[1], im.size[0])
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

    def render(rows: pd.DataFrame) -> Rendered:
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
