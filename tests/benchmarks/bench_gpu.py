"""rig.record on a CUDA device: float32 and bfloat16 against raw torch on the same GPU.

Per region: ``rig.record`` of the whole region (rendering on the CPU into pinned memory,
channels-last network on the GPU) at ``precision="float32"`` and ``"bfloat16"``, and raw
torch on the same folded network with the already-rendered images resident on the GPU
(so the baseline pays neither rendering nor the host-to-device copy). Times are taken after
``torch.cuda.synchronize()``; jobs run round-robin after a warm-up.

    python tests/benchmarks/bench_gpu.py                 # EfficientNet-Lite0, 2048 images
    python tests/benchmarks/bench_gpu.py --quick         # tiny model; without CUDA, says so

Without a CUDA device it prints ``{"cuda": false}`` and exits 0 (CI's smoke run).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import forward_to, round_robin, write_result

import insilico as lab


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--regions", default="V1,V2,V4,IT")
    p.add_argument("--quick", action="store_true", help="tiny model, 64 images, 1 repeat")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.n, args.repeats, args.batch_size = "tiny", 64, 1, 32
    if not torch.cuda.is_available():
        result = {"cuda": False, "note": "no CUDA device: nothing measured"}
        write_result(args.json, result)
        return result
    model = lab.load_model(args.model, device="cuda")
    rig = lab.Rig(model)
    stim = lab.stimuli.natural(
        args.n, size_deg=model.visual_degrees, seed=0, ppd=model.input_size / model.visual_degrees
    )
    images = rig.present(stim).to("cuda")
    bs = args.batch_size

    def raw(layer: str, autocast: bool) -> None:
        with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=autocast):
            for lo in range(0, args.n, bs):
                x = model.normalise(
                    images[lo : lo + bs].contiguous(memory_format=torch.channels_last)
                )
                forward_to(model.network, x, layer).reshape(len(x), -1).float().cpu()

    result = {
        "model": args.model,
        "device": torch.cuda.get_device_name(),
        "n_images": args.n,
        "batch_size": bs,
        "torch": torch.__version__,
        "regions": {},
    }
    for region in args.regions.split(","):
        layer = model.region(region).layer
        model.region_units(region)
        jobs = {
            "record_fp32": lambda region=region: rig.record(
                stim, region, batch_size=bs, progress=False
            ),
            "record_bf16": lambda region=region: rig.record(
                stim, region, batch_size=bs, progress=False, precision="bfloat16"
            ),
            "raw_fp32": lambda layer=layer: raw(layer, False),
            "raw_bf16": lambda layer=layer: raw(layer, True),
        }
        times = round_robin(jobs, args.repeats, sync=torch.cuda.synchronize)
        rate = {k: round(args.n / min(v), 1) for k, v in times.items()}
        result["regions"][region] = {
            "layer": layer,
            **{f"{k}_img_per_s": v for k, v in rate.items()},
        }
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    main()
