"""Display constraints, enforced exactly at every step: what a real monitor can show.

Images are luminance *deviations* ``d`` from the background ``bg`` (linear luminance, the
shown image is ``bg + d``). :class:`DisplayConstraints` maps any raw tensor to a deviation
that satisfies, exactly (to float precision):

* aperture: ``d`` is multiplied by a circular window of diameter ``size_deg`` with a raised-
  cosine edge ``edge_deg`` wide, so it is zero outside;
* mean luminance: the mean of ``bg + d`` over the image equals ``bg`` (per colour channel);
* RMS contrast: ``sqrt(sum(w d^2) / (3 sum(w))) / bg <= rms_contrast``, ``w`` the window;
* gamut: ``0 <= bg + d <= 1``.

The map centres the raw image under the window, windows it, and scales it down by the
largest factor <= 1 that meets the contrast budget and the gamut: differentiable, and a
projection onto the constraints for images that already meet them.
"""

from __future__ import annotations

import torch

from stimuli.apertures import circular_window

GAMUT_MARGIN = 1e-6


class DisplayConstraints(torch.nn.Module):
    """Exact aperture / mean-luminance / RMS-contrast / gamut constraints (see module doc)."""

    def __init__(
        self,
        shape: tuple[int, int],
        size_deg: float,
        background: float = 0.5,
        rms_contrast: float = 0.25,
        edge_deg: float = 0.25,
        use_aperture: bool = True,
    ) -> None:
        super().__init__()
        if not 0 < rms_contrast <= 1:
            raise ValueError(f"rms_contrast must be in (0, 1], got {rms_contrast!r}")
        if not 0 < background < 1:
            raise ValueError(f"background must be in (0, 1), got {background!r}")
        self.background = float(background)
        self.rms_contrast = float(rms_contrast)
        self.size_deg = float(size_deg)
        self.edge_deg = float(edge_deg)
        window = circular_window(shape, size_deg, edge_deg) if use_aperture else torch.ones(shape)
        self.register_buffer("window", window)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw (B, 3, H, W) -> deviations (B, 3, H, W) meeting every constraint."""
        w = self.window
        bg = self.background
        centred = raw - (raw * w).sum(dim=(-2, -1), keepdim=True) / w.sum()
        d = centred * w
        rms = torch.sqrt((w * d**2).sum(dim=(1, 2, 3)) / (3 * w.sum()) + 1e-20) / bg
        limits = torch.stack(
            [
                torch.ones_like(rms),
                self.rms_contrast / rms,
                (1 - bg) * (1 - GAMUT_MARGIN) / d.amax(dim=(1, 2, 3)).clamp(min=1e-12),
                bg * (1 - GAMUT_MARGIN) / (-d).amax(dim=(1, 2, 3)).clamp(min=1e-12),
            ]
        )
        scale = limits.amin(dim=0)
        return d * scale.view(-1, 1, 1, 1)

    def measure(self, deviation: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per image: mean luminance (per channel), RMS contrast, min/max luminance, and the
        largest |deviation| outside the aperture; for checking the constraints."""
        w = self.window
        lum = self.background + deviation
        outside = deviation.abs() * (w == 0)
        return {
            "mean_luminance": lum.mean(dim=(-2, -1)),
            "rms_contrast": torch.sqrt((w * deviation**2).sum(dim=(1, 2, 3)) / (3 * w.sum()))
            / self.background,
            "min": lum.amin(dim=(1, 2, 3)),
            "max": lum.amax(dim=(1, 2, 3)),
            "outside_aperture": outside.amax(dim=(1, 2, 3)),
        }
