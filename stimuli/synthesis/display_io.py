"""Images as a monitor shows them: gamma encoding, bit depth, monitor pixels; PNG files."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from stimuli.display import Display, check_bit_depth


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
    (default: the display's). Depths above 8 bits (10, 12, 16) come back as uint16 holding
    the integer code values 0 .. 2**bit_depth - 1 (a 10-bit display's codes are 0..1023)."""
    bits = display.bit_depth if bit_depth is None else check_bit_depth(bit_depth)
    size = monitor_size_px(display, size_deg, position_x_deg)
    x = luminance.detach().float().cpu()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = x.clamp(0, 1)
    if gamma_correct:
        x = x ** (1 / display.gamma)
    top = 2**bits - 1
    values = (x * top).round().permute(0, 2, 3, 1).numpy()
    return values.astype(np.uint8 if bits == 8 else np.uint16)


def from_display(
    values: np.ndarray,
    display: Display,
    gamma_correct: bool = True,
    bit_depth: int | None = None,
) -> np.ndarray:
    """Integer code values (B, h, w, 3) at ``bit_depth`` (default: the display's) -> the
    linear luminance (0..1) the monitor shows."""
    bits = display.bit_depth if bit_depth is None else check_bit_depth(bit_depth)
    top = 2**bits - 1
    if values.size and int(values.max()) > top:
        raise ValueError(
            f"pixel values up to {int(values.max())} exceed {bits}-bit codes (max {top})"
        )
    x = values.astype(np.float64) / top
    return (x**display.gamma if gamma_correct else x).astype(np.float32)


def write_png(path: str | Path, values: np.ndarray, bit_depth: int | None = None) -> None:
    """Write an RGB image (h, w, 3) of uint8 or uint16 as PNG. 16-bit is written directly.
    10- and 12-bit codes (uint16, ``bit_depth`` given) go into a 16-bit PNG container the way
    the PNG specification asks (section 12.5, sample depth rescaling): each code is scaled to
    16 bits by left-bit-replication, and an ``sBIT`` chunk records the original depth so that
    ``read_png`` (and any reader honouring sBIT) recovers the exact codes. Ordinary viewers
    then show the right brightness."""
    values = np.ascontiguousarray(values)
    bits = (
        (8 if values.dtype == np.uint8 else 16) if bit_depth is None else check_bit_depth(bit_depth)
    )
    if bits in (10, 12):
        if values.dtype != np.uint16:
            raise ValueError(f"{bits}-bit codes must be uint16, got {values.dtype}")
        if values.size and int(values.max()) > 2**bits - 1:
            raise ValueError(f"pixel values up to {int(values.max())} exceed {bits}-bit codes")
        v = values.astype(np.uint32)
        values = ((v << (16 - bits)) | (v >> (2 * bits - 16))).astype(np.uint16)
    if values.dtype == np.uint8:
        Image.fromarray(values, mode="RGB").save(path)
        return
    if values.dtype != np.uint16:
        raise ValueError(f"PNG export needs uint8 or uint16 pixels, got {values.dtype}")
    h, w, _ = values.shape
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    if bits < 16:
        png += chunk(b"sBIT", bytes([bits, bits, bits]))
    png += chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def read_png(path: str | Path) -> np.ndarray:
    """Read an RGB PNG as (h, w, 3): 16-bit files as uint16 (PIL reads only 8-bit RGB).
    A 16-bit file with an ``sBIT`` chunk of 10 or 12 bits comes back as those codes
    (0 .. 2**bits - 1), undoing ``write_png``'s rescaling exactly."""
    data = Path(path).read_bytes()
    pos, header, idat, sbit = 8, None, [], 16
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if tag == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif tag == b"IDAT":
            idat.append(body)
        elif tag == b"sBIT" and len(body) >= 3:
            sbit = max(body[:3])
        pos += 12 + length
    if header is None:
        raise ValueError(f"{str(path)!r} is not a PNG file")
    w, h, depth, colour = header[:4]
    if depth == 16 and colour == 2:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(h, -1)
        if (raw[:, 0] != 0).any():
            raise ValueError(f"{str(path)!r}: 16-bit PNGs with row filters are not supported")
        out = raw[:, 1:].copy().view(">u2").reshape(h, w, 3).astype(np.uint16)
        return out >> (16 - sbit) if sbit in (10, 12) else out
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))
