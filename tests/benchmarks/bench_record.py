"""rig.record throughput against raw torch on the same work, in one process.

The raw-torch baseline runs the same network, truncated at the same layer, on the
already-rendered input tensors (what ``rig.present`` produced), same batch size and
threads. ``rig.record`` starts from the StimulusSet, so its time includes rendering,
unit gathering, the rate mapping and building the xarray.

    python tests/benchmarks/bench_record.py                 # EfficientNet-Lite0, 512 images
    python tests/benchmarks/bench_record.py --quick         # tiny model smoke run (CI)

Prints JSON: best images/s of each and the median of paired ratios record/raw (runs
alternate, so machine-speed drifts hit both) per region (target: ratio >= 0.9).
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import paired, raw_truncated_forward, write_result

import insilico as lab


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
    model = lab.load_model(args.model)
    rig = lab.Rig(model)
    stim = lab.stimuli.natural(
        args.n, size_deg=model.visual_degrees, seed=0, ppd=model.input_size / model.visual_degrees
    )
    images = rig.present(stim)  # the already-rendered tensors the baseline gets
    result = {
        "model": args.model,
        "n_images": args.n,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "torch": torch.__version__,
        "regions": {},
    }
    for region in args.regions.split(","):
        layer = model.region(region).layer
        model.region_units(region)  # measure/cache units outside the timing
        timing = paired(
            lambda layer=layer: raw_truncated_forward(model, images, layer, args.batch_size),
            lambda region=region: rig.record(
                stim, region, batch_size=args.batch_size, progress=False
            ),
            args.repeats,
        )
        result["regions"][region] = {
            "layer": layer,
            "raw_torch_img_per_s": round(args.n / timing["a_best_s"], 1),
            "record_img_per_s": round(args.n / timing["b_best_s"], 1),
            "ratio": round(timing["median_ratio"], 3),
        }
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    main()
