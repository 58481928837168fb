"""Display geometry: monitor pixels <-> degrees of visual angle with exact ``atan`` geometry."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from stimuli.stimulus_set import check_positive

#: display bit depths the lab renders and exports (10/12-bit codes go in a 16-bit PNG)
SUPPORTED_BITS = (8, 10, 12, 16)


def check_bit_depth(bits: object) -> int:
    """``bits`` as an int if it is one of SUPPORTED_BITS (8.7 or "8" are refused, not cut)."""
    if isinstance(bits, bool) or not isinstance(bits, int | float) or bits not in SUPPORTED_BITS:
        raise ValueError(f"bit_depth must be 8, 10, 12 or 16, got {bits!r}")
    return int(bits)


@dataclass(frozen=True)
class Display:
    """A monitor seen from ``distance_cm`` by an eye in front of its centre.

    Coordinates: pixel ``(u, v)`` is column ``u`` from the left and row ``v`` from the top,
    pixel centres at integer indices. Degrees of visual angle have their origin at the
    screen centre, x to the right and y up, each axis by exact ``atan`` geometry:
    ``x_deg = atan(X_cm / distance_cm)`` where ``X_cm`` is the horizontal offset on the
    screen (no small-angle shortcut).

    Luminance: stimuli are linear luminance in [0, 1] (fraction of the monitor's maximum);
    the monitor shows pixel value ``p`` at luminance ``p ** gamma``. ``background`` is the
    linear luminance of the background grey.
    """

    distance_cm: float = 57.0
    width_cm: float = 53.0
    resolution: tuple[int, int] = (1920, 1080)
    height_cm: float | None = None
    gamma: float = 2.2
    background: float = 0.5
    bit_depth: int = 8

    def __post_init__(self) -> None:
        check_positive(self.distance_cm, "distance_cm")
        check_positive(self.width_cm, "width_cm")
        try:
            w, h = (int(r) for r in self.resolution)
        except (TypeError, ValueError):
            raise ValueError(
                f"resolution must be (width_px, height_px), got {self.resolution!r}"
            ) from None
        if w <= 0 or h <= 0 or (w, h) != tuple(self.resolution):
            raise ValueError(
                f"resolution must be two positive integers (width_px, height_px), "
                f"got {self.resolution!r}"
            )
        object.__setattr__(self, "resolution", (w, h))
        if self.height_cm is None:
            object.__setattr__(self, "height_cm", self.width_cm * h / w)  # square pixels
        check_positive(self.height_cm, "height_cm")
        check_positive(self.gamma, "gamma")
        if not 0.0 <= float(self.background) <= 1.0:
            raise ValueError(
                f"background must be a linear luminance in [0, 1], got {self.background!r}"
            )
        object.__setattr__(self, "bit_depth", check_bit_depth(self.bit_depth))

    # geometry ------------------------------------------------------------------------
    @property
    def pixel_pitch_cm(self) -> tuple[float, float]:
        """Physical (width, height) of one pixel in cm."""
        return self.width_cm / self.resolution[0], float(self.height_cm) / self.resolution[1]

    @property
    def extent_deg(self) -> tuple[float, float]:
        """Half-width and half-height of the screen in degrees (from its centre)."""
        return (
            math.degrees(math.atan(self.width_cm / 2 / self.distance_cm)),
            math.degrees(math.atan(float(self.height_cm) / 2 / self.distance_cm)),
        )

    def px_to_deg(
        self, u: np.ndarray | float, v: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Monitor pixel (column ``u``, row ``v``) -> visual angle (x_deg, y_deg)."""
        pw, ph = self.pixel_pitch_cm
        w, h = self.resolution
        x_cm = (np.asarray(u, dtype=float) - (w - 1) / 2) * pw
        y_cm = ((h - 1) / 2 - np.asarray(v, dtype=float)) * ph
        return (
            np.degrees(np.arctan(x_cm / self.distance_cm)),
            np.degrees(np.arctan(y_cm / self.distance_cm)),
        )

    def deg_to_px(
        self, x_deg: np.ndarray | float, y_deg: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Visual angle (x_deg, y_deg) -> monitor pixel (column ``u``, row ``v``), fractional."""
        pw, ph = self.pixel_pitch_cm
        w, h = self.resolution
        x_cm = np.tan(np.radians(np.asarray(x_deg, dtype=float))) * self.distance_cm
        y_cm = np.tan(np.radians(np.asarray(y_deg, dtype=float))) * self.distance_cm
        return x_cm / pw + (w - 1) / 2, (h - 1) / 2 - y_cm / ph

    def ppd(self, at_deg: float = 0.0) -> float:
        """Horizontal pixels per degree at eccentricity ``at_deg`` along the x axis."""
        pw, _ = self.pixel_pitch_cm
        theta = math.radians(at_deg)
        return self.distance_cm / math.cos(theta) ** 2 * math.pi / 180 / pw

    def size_px(self, size_deg: float, at_deg: float = 0.0) -> float:
        """Width in monitor pixels of a stimulus ``size_deg`` wide centred at ``at_deg`` (x)."""
        check_positive(size_deg, "size_deg")
        u0, _ = self.deg_to_px(at_deg - size_deg / 2, 0.0)
        u1, _ = self.deg_to_px(at_deg + size_deg / 2, 0.0)
        return float(u1 - u0)

    # luminance -----------------------------------------------------------------------
    def encode(self, luminance: np.ndarray) -> np.ndarray:
        """Linear luminance in [0, 1] -> pixel value in [0, 1] (inverse gamma)."""
        return np.clip(luminance, 0.0, 1.0) ** (1.0 / self.gamma)

    def decode(self, value: np.ndarray) -> np.ndarray:
        """Pixel value in [0, 1] -> linear luminance shown (gamma)."""
        return np.clip(value, 0.0, 1.0) ** self.gamma

    def to_dict(self) -> dict:
        """JSON-safe description for provenance."""
        d = asdict(self)
        d["resolution"] = list(self.resolution)
        return d
