"""Robustness transforms applied to the batch at every step (kornia, explicitly seeded):
translation jitter, scaling and small rotations, each image its own parameters."""

from __future__ import annotations

import torch
from kornia.geometry.transform import get_rotation_matrix2d, warp_affine


class RandomAffine(torch.nn.Module):
    """Jitter by up to ``jitter_frac`` of the image size, scale in ``scale``, rotate by up to
    ``degrees``; parameters drawn per call from ``generator`` (inspect ``last_params``).
    Pixels moved in from outside are background (zero deviation)."""

    def __init__(
        self,
        generator: torch.Generator,
        jitter_frac: float = 0.05,
        scale: tuple[float, float] = (0.95, 1.05),
        degrees: float = 5.0,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.jitter_frac = jitter_frac
        self.scale = scale
        self.degrees = degrees
        self.last_params: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        g = self.generator
        u = torch.rand(b, 4, generator=g)
        shift = (u[:, :2] * 2 - 1) * self.jitter_frac * torch.tensor([w, h])
        scale = self.scale[0] + u[:, 2] * (self.scale[1] - self.scale[0])
        angle = (u[:, 3] * 2 - 1) * self.degrees
        centre = torch.tensor([(w - 1) / 2, (h - 1) / 2]).expand(b, 2)
        m = get_rotation_matrix2d(centre, angle, scale[:, None].expand(b, 2))
        m = m.clone()
        m[:, :, 2] += shift
        self.last_params = {"shift_px": shift, "scale": scale, "angle_deg": angle}
        return warp_affine(
            x, m.to(x.device, x.dtype), (h, w), padding_mode="zeros", align_corners=True
        )
