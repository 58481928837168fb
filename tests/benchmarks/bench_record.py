"""rig.record throughput against raw torch on the same work, in one process.

Per region, four jobs on the same images, same batch size and threads, run round-robin
(``--repeats`` rounds after one warm-up round, so machine-speed drifts hit all of them):

* ``record``: ``rig.record`` of the whole region on the loaded model (BatchNorm folded into
  the convolutions, ``load_model``'s default). It starts from the StimulusSet, so its time
  includes rendering, unit gathering, the rate mapping and building the xarray.
* ``raw``: plain torch on the same (folded, channels-last) network, truncated at the region's
  layer, on the already-rendered input tensors (what ``rig.present`` produced).
* ``render``: ``rig.present`` alone, batch by batch (cropping, resizing, float conversion,
  display encoding): the renderer's cost, reported as a share of the raw forward pass.
* ``raw_unfolded``: the same on the network loaded with ``fold_bn=False``: folding's own gain.
* ``naive``: what a user writes by hand: the unfolded network in its default (NCHW) memory
  format, ``net.eval()``, ``with torch.no_grad():`` normalise, then the network's own modules
  called in order up to the region's layer (stem, ``_blocks[: k + 1]``), not to the logits.

Achieved GFLOP/s counts the multiply-adds (2 FLOPs each) of every Conv2d and Linear up to
the region's layer (forward hooks on a one-image pass; BatchNorm, activations and residual
additions are not counted), against the peak of a 2048 x 2048 float32 matmul on the same
threads.

    python tests/benchmarks/bench_record.py                 # EfficientNet-Lite0, 512 images
    python tests/benchmarks/bench_record.py --quick         # tiny model smoke run (CI)

Prints JSON per region: best images/s of each job, the median of per-round ratios record/raw
(target >= 0.9), naive/record time (``speedup_vs_naive``, goal >= 1.25) and raw_unfolded/raw
time (``fold_speedup``), GFLOP per image and achieved GFLOP/s.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from _common import forward_to, median_ratio, raw_truncated_forward, round_robin, write_result

import insilico as lab
from insilico.brain.nets.fold import count_batchnorm


def naive_forward(net: nn.Module, mean, std, images: torch.Tensor, layer: str, batch_size: int):
    """What a user writes by hand: eval mode, no_grad, default memory format, the network's
    modules called in order up to ``layer`` (EfficientNet-Lite ``_blocks.N``, TinyNet)."""
    net.eval()
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = (images[start : start + batch_size] - mean) / std
            forward_to(net, x, layer).reshape(len(x), -1).cpu()


def flops_to(model, layer: str) -> float:
    """Conv2d + Linear FLOPs (2 per multiply-add) of one image up to ``layer``."""
    total = [0.0]

    def count(module: nn.Module, args, out: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total[0] += 2.0 * out[0].numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total[0] += 2.0 * module.in_features * module.out_features

    handles = [
        m.register_forward_hook(count)
        for m in model.network.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    try:
        model.activations(model._blank(1), [layer])
    finally:
        for h in handles:
            h.remove()
    return total[0]


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of an n x n @ n x n matmul on the current threads."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best / 1e9


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--regions", default="V1,V2,V4,IT")
    p.add_argument("--quick", action="store_true", help="tiny model, 64 images, 1 repeat")
    p.add_argument("--json", default=None, help="also write the result here")
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.n, args.repeats = "tiny", 64, 1
    torch.set_num_threads(args.threads)
    model = lab.load_model(args.model)  # folded (the default)
    unfolded = lab.load_model(args.model, fold_bn=False)
    naive_net = copy.deepcopy(unfolded.network).to(memory_format=torch.contiguous_format)
    rig = lab.Rig(model)
    stim = lab.stimuli.natural(
        args.n, size_deg=model.visual_degrees, seed=0, ppd=model.input_size / model.visual_degrees
    )
    # the already-rendered tensors the baselines get, in the default (NCHW) memory format:
    # their broadcast normalisation is 2x faster on it than on channels-last
    images = rig.present(stim).contiguous()
    peak = matmul_peak_gflops()
    result = {
        "model": args.model,
        "n_images": args.n,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "torch": torch.__version__,
        "batchnorms_left": {
            "record": count_batchnorm(model.network),
            "naive": count_batchnorm(naive_net),
        },
        "peak_matmul_gflop_per_s": round(peak, 1),
        "regions": {},
    }
    bs = args.batch_size
    for region in args.regions.split(","):
        layer = model.region(region).layer
        model.region_units(region)  # measure/cache units outside the timing
        t = round_robin(
            {
                "raw": lambda layer=layer: raw_truncated_forward(model, images, layer, bs),
                "record": lambda region=region: rig.record(
                    stim, region, batch_size=bs, progress=False
                ),
                "render": lambda: [
                    rig.present(stim, slice(lo, lo + bs)) for lo in range(0, args.n, bs)
                ],
                "raw_unfolded": lambda layer=layer: raw_truncated_forward(
                    unfolded, images, layer, bs
                ),
                "naive": lambda layer=layer: naive_forward(
                    naive_net, unfolded._mean, unfolded._std, images, layer, bs
                ),
            },
            args.repeats,
        )
        rate = {k: args.n / min(v) for k, v in t.items()}
        gflop = flops_to(model, layer) / 1e9
        result["regions"][region] = {
            "layer": layer,
            "record_img_per_s": round(rate["record"], 1),
            "raw_torch_img_per_s": round(rate["raw"], 1),
            "raw_unfolded_img_per_s": round(rate["raw_unfolded"], 1),
            "naive_unfolded_img_per_s": round(rate["naive"], 1),
            "render_ms_per_img": round(1e3 / rate["render"], 3),
            "render_pct_of_raw_forward": round(100 * median_ratio(t["render"], t["raw"]), 1),
            "ratio": round(median_ratio(t["raw"], t["record"]), 3),
            "speedup_vs_naive": round(median_ratio(t["naive"], t["record"]), 3),
            "fold_speedup": round(median_ratio(t["raw_unfolded"], t["raw"]), 3),
            "gflop_per_img": round(gflop, 4),
            "record_gflop_per_s": round(gflop * rate["record"], 2),
            "naive_gflop_per_s": round(gflop * rate["naive"], 2),
            "record_pct_of_peak": round(100 * gflop * rate["record"] / peak, 1),
        }
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    main()
