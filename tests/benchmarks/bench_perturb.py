"""Perturbation costs: overhead on rig.record, and compare() with matched controls.

    python tests/benchmarks/bench_perturb.py            # EfficientNet-Lite0
    python tests/benchmarks/bench_perturb.py --quick    # tiny model (CI smoke)

1. ``rig.record`` throughput with a muscimol injection in IT (or microstimulation in V4)
   against no perturbation, paired runs (target: overhead <= 10 %).
2. ``insilico.analysis.compare`` of an IT muscimol injection on a fitted decoder's accuracy, 200
   natural images, 50 matched random injections: wall time batched (conditions replicated
   at the perturbed layer) and condition by condition.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import paired, write_result

import insilico as lab
import insilico.analysis.effects as effects


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--n", type=int, default=256, help="images for the record overhead")
    p.add_argument("--n-compare", type=int, default=200)
    p.add_argument("--controls", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--serial", action="store_true", help="also time compare condition by condition")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.n, args.n_compare, args.controls, args.repeats = "tiny", 64, 40, 5, 1
    torch.set_num_threads(args.threads)
    model = lab.load_model(args.model)
    rig = lab.Rig(model)
    vd = model.visual_degrees
    stim = lab.stimuli.natural(args.n, size_deg=vd, seed=0, ppd=model.input_size / vd)
    ex, ey = model.region_units("IT").sheet_extent_mm
    vx, vy = model.region_units("V4").sheet_extent_mm
    result = {"model": args.model, "threads": args.threads, "record_overhead": {}}
    for name, pert in (
        ("muscimol_IT", lab.perturb.Muscimol("IT", at_mm=(ex / 2, ey / 2))),
        ("microstim_V4", lab.perturb.Microstimulation("V4", at_mm=(vx / 2, vy / 2), current_ua=50)),
    ):

        def perturbed(pert=pert):
            with rig.perturb(pert):
                rig.record(stim, "IT", progress=False)

        t = paired(lambda: rig.record(stim, "IT", progress=False), perturbed, args.repeats)
        result["record_overhead"][name] = {
            "plain_img_per_s": round(args.n / t["a_best_s"], 1),
            "perturbed_img_per_s": round(args.n / t["b_best_s"], 1),
            "overhead": round(1 / t["median_ratio"] - 1, 3),
        }
    # compare: decoder on image source, fitted on one half, tested on the other
    pool = lab.stimuli.natural(2 * args.n_compare, size_deg=vd, seed=5)
    train, test = pool[: args.n_compare], pool[args.n_compare :]
    decoder = rig.fit_task(train, "source", region="IT")
    injection = lab.perturb.Muscimol("IT", at_mm=(ex / 2, ey / 2), volume_ul=1.0)
    kwargs = dict(
        readout="behaviour",
        task=decoder,
        labels=test.meta["source"].to_numpy(),
        controls=args.controls,
        seed=0,
        progress=False,
    )
    t0 = time.perf_counter()
    effect = lab.analysis.compare(rig, test, injection, **kwargs)
    batched_s = time.perf_counter() - t0
    result["compare"] = {
        "n_images": len(test),
        "controls": args.controls,
        "decoder_cv_accuracy": round(decoder.cv_accuracy, 3),
        "batched_s": round(batched_s, 1),
        "effect": round(effect.effect, 4),
        "ci": [round(v, 4) for v in effect.ci],
        "p_value": round(effect.p_value, 4),
    }
    if args.serial:
        real = effects.acts_through_unit_maps
        effects.acts_through_unit_maps = lambda p: False
        try:
            t0 = time.perf_counter()
            serial = lab.analysis.compare(rig, test, injection, **kwargs)
            result["compare"]["serial_s"] = round(time.perf_counter() - t0, 1)
            result["compare"]["serial_equals_batched"] = bool(
                abs(serial.effect - effect.effect) < 1e-9
            )
        finally:
            effects.acts_through_unit_maps = real
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    main()
