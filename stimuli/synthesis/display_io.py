"""Images as a monitor shows them: gamma encoding, bit depth, monitor pixels; PNG files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stimuli.display import Display


def monitor_size_px(display: Display, size_deg: float, position_x_deg: float = 0.0) -> int:
    """Width in monitor pixels of a stimulus ``size_deg`` wide at ``position_x_deg`` (atan)."""
    return max(1, round(display.size_px(size_deg, at_deg=position_x_deg)))


def to_display(
    luminance: torch.Tensor,
    display: Display,
    size_deg: float,
    position_x_deg: float = 0.0,
    gamma_correct: bool = True,
    bit_depth: int | None = None,
) -> np.ndarray:
    """Linear luminance (B, 3, H, W) -> integer pixel values (B, h, w, 3) at the monitor's
    pixels per degree: resampled (antialiased, in linear light), gamma-encoded when
    ``gamma_correct`` (for a monitor with the display's gamma), quantised to ``bit_depth``
    (default: the display's)."""
    bits = display.bit_depth if bit_depth is None else int(bit_depth)
    if bits not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16 for PNG export, got {bit_depth!r}")
    size = monitor_size_px(display, size_deg, position_x_deg)
    x = luminance.detach().float().cpu()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = x.clamp(0, 1)
    if gamma_correct:
        x = x ** (1 / display.gamma)
    top = 2**bits - 1
    values = (x * top).round().permute(0, 2, 3, 1).numpy()
    return values.astype(np.uint8 if bits == 8 else np.uint16)


def from_display(values: np.ndarray, display: Display, gamma_correct: bool = True) -> np.ndarray:
    """Integer pixel values (B, h, w, 3) -> the linear luminance the monitor shows."""
    top = np.iinfo(values.dtype).max
    x = values.astype(np.float64) / top
    return (x**display.gamma if gamma_correct else x).astype(np.float32)


def write_png(path: str | Path, values: np.ndarray) -> None:
    """Write an RGB image (h, w, 3) of uint8 or uint16 as PNG (16-bit written directly)."""
    values = np.ascontiguousarray(values)
    if values.dtype == np.uint8:
        from PIL import Image

        Image.fromarray(values, mode="RGB").save(path)
        return
    if values.dtype != np.uint16:
        raise ValueError(f"PNG export needs uint8 or uint16 pixels, got {values.dtype}")
    h, w, _ = values.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def read_png(path: str | Path) -> np.ndarray:
    """Read an RGB PNG as (h, w, 3): 16-bit files as uint16 (PIL reads only 8-bit RGB)."""
    data = Path(path).read_bytes()
    pos, header, idat = 8, None, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        pos += 12 + length
    if header is None:
        raise ValueError(f"{str(path)!r} is not a PNG file")
    w, h, depth, colour = header[:4]
    if depth == 16 and colour == 2:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(h, -1)
        if (raw[:, 0] != 0).any():
            raise ValueError(f"{str(path)!r}: 16-bit PNGs with row filters are not supported")
        return raw[:, 1:].copy().view(">u2").reshape(h, w, 3).astype(np.uint16)
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
