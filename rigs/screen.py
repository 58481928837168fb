"""The screen as a model sees it: a display, a fixation point and the model's field of view.

``Screen.present`` renders stimuli in degrees onto the display background over the model's
field of view (cropped where larger, padded where smaller) and resamples them, antialiased
and in linear luminance, to the model's input pixels (DESIGN.md, "Visual space").
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from stimuli import Display, StimulusSet, from_arrays
from stimuli.stimulus_set import check_position_deg
from stimuli.synthesis.result import SynthesisResult


class OffScreenWarning(UserWarning):
    """Part of a stimulus or of the model's field of view lies off the physical display."""


def as_stimulus_set(stimuli: Any) -> StimulusSet:
    """A StimulusSet, or a synthesis result's images as one (same ids, size, position)."""
    if isinstance(stimuli, StimulusSet):
        return stimuli
    if isinstance(stimuli, SynthesisResult):
        t = stimuli.table
        images = stimuli.images.detach().float().clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        keep = [c for c in ("target", "replicate", "objective") if c in t.columns]
        return from_arrays(
            images,
            size_deg=float(t["size_deg"].iloc[0]),
            position_deg=(float(t["position_x_deg"].iloc[0]), float(t["position_y_deg"].iloc[0])),
            ids=t["stimulus_id"].astype(str).tolist(),
            encoding="linear",
            metadata=t[keep].reset_index(drop=True),
        )
    raise TypeError(
        f"stimuli must be a StimulusSet or a SynthesisResult, got {type(stimuli).__name__}"
    )


class Screen:
    """A ``display`` seen by a model fixating ``fixation_deg`` (from screen centre), whose
    input of ``input_size`` px spans ``visual_degrees`` deg. Positions are in degrees relative
    to fixation, x right, y up."""

    def __init__(
        self,
        display: Display,
        fixation_deg: tuple[float, float],
        input_size: int,
        visual_degrees: float,
    ) -> None:
        if not isinstance(display, Display):
            raise TypeError(f"display must be a Display, got {type(display).__name__}")
        self.display = display
        self.fixation_deg = check_position_deg(fixation_deg, "fixation_deg")
        self.input_size = int(input_size)
        self.visual_degrees = float(visual_degrees)
        n = self.input_size
        ppd = n / self.visual_degrees
        coords = (torch.arange(n, dtype=torch.float64) - (n - 1) / 2) / ppd
        sx = coords[None, :] + self.fixation_deg[0]
        sy = -coords[:, None] + self.fixation_deg[1]
        hx, hy = self.display.extent_deg
        on_screen = ((sx.abs() <= hx) & (sy.abs() <= hy)).float()[None, None]
        #: model-input pixels that fall on the screen (outside it the room is dark); None
        #: when the whole field of view is on the screen
        self.on_screen = None if bool(on_screen.all()) else on_screen
        if self.on_screen is not None:
            warnings.warn(
                f"{100 * (1 - float(on_screen.mean())):.0f} % of the model's field of view falls "
                f"off the display (±{hx:.2f} x ±{hy:.2f} deg) at fixation {self.fixation_deg} "
                "deg: the model sees darkness there",
                OffScreenWarning,
                stacklevel=3,
            )

    def px_to_deg(self, u: float, v: float) -> tuple[float, float]:
        """Monitor pixel (column u, row v) -> degrees relative to fixation (atan geometry)."""
        x, y = self.display.px_to_deg(u, v)
        return float(x) - self.fixation_deg[0], float(y) - self.fixation_deg[1]

    def check_visible(self, stimuli: StimulusSet) -> None:
        """Raise if a stimulus lies entirely outside the model's field of view; warn if part
        of one lies off the physical display (that part is not shown)."""
        half = self.visual_degrees / 2
        h, w = stimuli.shape_px
        width = stimuli.size_deg
        height = width * h / w
        pos = stimuli.position_deg
        hx, hy = self.display.extent_deg
        sx = np.abs(pos[:, 0] + self.fixation_deg[0]) + width / 2
        sy = np.abs(pos[:, 1] + self.fixation_deg[1]) + height / 2
        cut = (sx > hx + 1e-9) | (sy > hy + 1e-9)
        if cut.any():
            k = int(np.argmax(cut))
            warnings.warn(
                f"{int(cut.sum())} of {len(cut)} stimuli extend past the display "
                f"(±{hx:.2f} x ±{hy:.2f} deg), e.g. {stimuli.ids[k]!r} at "
                f"({pos[k, 0]:g}, {pos[k, 1]:g}) deg, {width[k]:g} deg wide: the part off the "
                "screen is not shown",
                OffScreenWarning,
                stacklevel=3,
            )
        off = (np.abs(pos[:, 0]) - width / 2 >= half) | (np.abs(pos[:, 1]) - height / 2 >= half)
        if off.any():
            k = int(np.argmax(off))
            raise ValueError(
                f"stimulus {stimuli.ids[k]!r} at ({pos[k, 0]:g}, {pos[k, 1]:g}) deg, "
                f"{width[k]:g} deg wide, lies entirely outside the model's field of view "
                f"(±{half:g} deg around fixation)"
            )

    def present(
        self, stimuli: StimulusSet, index: Sequence[int] | slice | None = None
    ) -> torch.Tensor:
        """Render stimuli as the model sees them: ``(n, 3, N, N)`` pixel values in [0, 1].

        Each stimulus is composited at its position and size onto the display background
        over the model's field of view (cropped where larger, padded where smaller), with
        antialiased resampling in linear luminance, then gamma-encoded for the display.
        """
        if not isinstance(stimuli, StimulusSet):
            raise TypeError(f"stimuli must be a StimulusSet, got {type(stimuli).__name__}")
        rows = stimuli.meta if index is None else stimuli.meta.iloc[index]
        rendered = stimuli.render(index)
        n_px = self.input_size
        gamma = self.display.gamma
        sizes = rows["size_deg"].to_numpy(dtype=float)
        pos = rows[["position_x_deg", "position_y_deg"]].to_numpy(dtype=float)
        groups = np.unique(sizes)
        if (
            len(groups) == 1
            and rendered.alpha is None
            and self.on_screen is None
            and self.pixel_offset(pos, float(groups[0]), *stimuli.shape_px) == (0, 0)
            and stimuli.shape_px == (n_px, n_px)
        ):  # the stimuli exactly fill the field of view: presenting is re-encoding
            values = rendered.values.float()
            if rendered.gamma == gamma:
                return values if rendered.in_range else values.clamp(0.0, 1.0)
            # a buffer of our own for the in-place powers (never the renderer's tensor)
            values = values.clone() if rendered.in_range else values.clamp(0.0, 1.0)
            return (values if rendered.gamma is None else values.pow_(rendered.gamma)).pow_(
                1 / gamma
            )
        bg = float(self.display.background)
        rgb = rendered.linear()
        premult = rgb - bg if rendered.alpha is None else rendered.alpha * (rgb - bg)
        if len(groups) == 1:
            out = self.place(premult, pos, float(groups[0]))
        else:
            out = torch.empty(len(rows), 3, n_px, n_px)
            for size in groups:
                sel = np.flatnonzero(sizes == size)
                out[torch.as_tensor(sel)] = self.place(premult[sel], pos[sel], float(size))
        luminance = (out + bg).clamp_(0.0, 1.0)
        if self.on_screen is not None:
            luminance *= self.on_screen
        return luminance.pow_(1.0 / gamma)

    def pixel_offset(self, pos: np.ndarray, width: float, h: int, w: int) -> tuple[int, int] | None:
        """(column, row) of the images' top-left corner on the model's pixel grid when they
        share the model's pixels per degree and sit at one integral offset; else None."""
        n_px = self.input_size
        ppd = n_px / self.visual_degrees
        left = (n_px - w) / 2 + pos[:, 0] * ppd
        top = (n_px - h) / 2 - pos[:, 1] * ppd
        x0, y0 = round(float(left[0])), round(float(top[0]))
        aligned = (
            abs(ppd / (w / width) - 1) < 1e-9
            and np.allclose(left, x0, atol=1e-6)
            and np.allclose(top, y0, atol=1e-6)
        )
        return (x0, y0) if aligned else None

    def place(self, src: torch.Tensor, pos: np.ndarray, width: float) -> torch.Tensor:
        """Resample images ``width`` deg wide centred at ``pos`` onto the model's pixel grid.
        Images that already fill the grid exactly are returned as they are (not copied)."""
        n_px, vd = self.input_size, self.visual_degrees
        ppd = n_px / vd
        _, _, h, w = src.shape
        factor = ppd / (w / width)  # model ppd / stimulus ppd
        offset = self.pixel_offset(pos, width, h, w)
        if offset == (0, 0) and (h, w) == (n_px, n_px):
            return src
        if offset is not None:  # same pixel grid: placing is copying (exact, no resampling)
            out = src.new_zeros(len(src), 3, n_px, n_px)
            x0, y0 = offset
            dx0, dy0 = max(0, x0), max(0, y0)
            dx1, dy1 = min(n_px, x0 + w), min(n_px, y0 + h)
            if dx1 > dx0 and dy1 > dy0:
                out[:, :, dy0:dy1, dx0:dx1] = src[:, :, dy0 - y0 : dy1 - y0, dx0 - x0 : dx1 - x0]
            return out
        if factor < 1.0:  # antialias: low-pass to the model's sampling density first
            target = (max(2, math.ceil(h * factor)), max(2, math.ceil(w * factor)))
            src = F.interpolate(
                src, size=target, mode="bilinear", antialias=True, align_corners=False
            )
        height = width * h / w
        theta = torch.zeros(len(src), 2, 3)
        theta[:, 0, 0] = vd / width
        theta[:, 1, 1] = vd / height
        theta[:, 0, 2] = torch.as_tensor(-2 * pos[:, 0] / width)
        theta[:, 1, 2] = torch.as_tensor(2 * pos[:, 1] / height)
        grid = F.affine_grid(theta, [len(src), 3, n_px, n_px], align_corners=False)
        return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
