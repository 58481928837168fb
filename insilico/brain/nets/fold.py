"""Fold inference-mode BatchNorm into the preceding convolution (a runtime form, same function).

For a convolution ``y = w * x + b`` followed by ``BN(y) = gamma (y - mean) / sqrt(var + eps) +
beta`` with frozen statistics, ``BN(conv(x))`` equals a single convolution with
``w' = w * s`` and ``b' = beta + (b - mean) * s``, ``s = gamma / sqrt(var + eps)`` per output
channel. :func:`fold_batchnorm` rewrites every such pair in place: the convolution gets the
folded weight and a bias, the BatchNorm module is replaced by ``nn.Identity`` under the same
name, so module names (and the commitments' layer names) still resolve and forward hooks on
any module still fire. The folded network's state dict has no BatchNorm entries and a bias per
folded convolution: load trained weights *before* folding.

Pairs are found by tracing the forward pass with ``torch.fx`` (the network itself is kept, the
trace is only read): a BatchNorm2d whose only input is a Conv2d whose output feeds nothing
else. A pair is left unfolded when either module is named in ``keep`` (a layer whose output
must keep its meaning, e.g. a region's committed layer: folding changes the convolution's own
output). The arithmetic runs in float64 and is stored in the convolution's dtype.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.fx
from torch import nn


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn``'s inference-mode affine map into ``conv`` in place (``bn`` is left as is)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics")
    with torch.no_grad():
        w = conv.weight.detach().double()
        scale = bn.running_var.double().add(bn.eps).rsqrt()
        if bn.weight is not None:
            scale = scale * bn.weight.detach().double()
        shift = -bn.running_mean.double()
        if conv.bias is not None:
            shift = shift + conv.bias.detach().double()
        bias = shift * scale
        if bn.bias is not None:
            bias = bias + bn.bias.detach().double()
        dtype, device = conv.weight.dtype, conv.weight.device
        conv.weight = nn.Parameter(
            (w * scale.view(-1, *([1] * (w.ndim - 1)))).to(dtype),
            requires_grad=conv.weight.requires_grad,
        )
        conv.bias = nn.Parameter(
            bias.to(dtype=dtype, device=device), requires_grad=conv.weight.requires_grad
        )


def conv_bn_pairs(net: nn.Module) -> list[tuple[str, str]]:
    """(conv name, bn name) of every Conv2d -> BatchNorm2d pair whose conv output feeds only the
    BatchNorm, in forward order (found by an ``torch.fx`` trace of ``net``)."""
    graph = torch.fx.symbolic_trace(net).graph
    modules = dict(net.named_modules())
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules.get(node.target), nn.BatchNorm2d):
            continue
        if len(node.args) != 1 or node.kwargs:
            continue
        src = node.args[0]
        if (
            isinstance(src, torch.fx.Node)
            and src.op == "call_module"
            and isinstance(modules.get(src.target), nn.Conv2d)
            and len(src.users) == 1
        ):
            pairs.append((str(src.target), str(node.target)))
    return pairs


def fold_batchnorm(net: nn.Module, keep: Iterable[str] = ()) -> nn.Module:
    """Fold every Conv2d -> BatchNorm2d pair of ``net`` in place for inference; return ``net``.

    The BatchNorms become ``nn.Identity`` (same names) and ``net`` is put in eval mode: the
    result computes what the eval-mode original computed (to float rounding) but cannot be
    trained as a BatchNorm network any more. Pairs where the conv or the BatchNorm is named in
    ``keep`` stay unfolded.
    """
    keep = set(keep)
    net.eval()
    for conv_name, bn_name in conv_bn_pairs(net):
        if conv_name in keep or bn_name in keep:
            continue
        conv = net.get_submodule(conv_name)
        fold_conv_bn(conv, net.get_submodule(bn_name))
        parent_name, _, attr = bn_name.rpartition(".")
        parent = net.get_submodule(parent_name) if parent_name else net
        setattr(parent, attr, nn.Identity())
    return net


def count_batchnorm(net: nn.Module) -> int:
    """Number of BatchNorm modules left in ``net``."""
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
