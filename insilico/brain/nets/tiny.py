"""A tiny four-stage network for tests: Gabor V1 filters, random later stages (seeded)."""

from __future__ import annotations

import math

import torch
from torch import nn


def _gabor_bank(size: int = 5) -> torch.Tensor:
    """8 luminance Gabor filters: orientations 0, 45, 90, 135 deg x phases 0, 90 deg."""
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    y, x = torch.meshgrid(-r, r, indexing="ij")
    filters = []
    for theta in (0.0, 45.0, 90.0, 135.0):
        t = math.radians(theta)
        u = x * math.cos(t) + y * math.sin(t)
        env = torch.exp(-(x**2 + y**2) / (2 * (size / 4) ** 2))
        for phase in (0.0, math.pi / 2):
            g = env * torch.cos(2 * math.pi * u / 4.0 + phase)
            g = g - g.mean()
            filters.append(g / g.norm())
    bank = torch.stack(filters)[:, None].repeat(1, 3, 1, 1) / 3
    return bank


class TinyNet(nn.Module):
    """conv5 (8 Gabor ch, stride 1) -> conv3 s2 (16) -> conv3 s2 (32) -> conv3 s2 (64) -> fc."""

    def __init__(self, num_classes: int = 10, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.v1 = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.ReLU())
        self.v2 = nn.Sequential(nn.Conv2d(8, 16, 3, 2, padding=1), nn.ReLU())
        self.v4 = nn.Sequential(nn.Conv2d(16, 32, 3, 2, padding=1), nn.ReLU())
        self.it = nn.Sequential(nn.Conv2d(32, 64, 3, 2, padding=1), nn.ReLU())
        self.fc = nn.Linear(64, num_classes)
        with torch.no_grad():
            self.v1[0].weight.copy_(_gabor_bank())
            self.v1[0].bias.fill_(-0.05)
            for m in (self.v2[0], self.v4[0], self.it[0], self.fc):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2 / fan_in))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.it(self.v4(self.v2(self.v1(x))))
        return self.fc(x.mean(dim=(2, 3)))
