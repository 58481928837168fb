"""The same channel visualisations through insilico-lab (batched) and Lucent (one at a time).

Job: EfficientNet-Lite0, maximise the mean of each of N channels of ``_blocks.7`` (V4), one
224 px image per channel (the model's whole 8 degree field), ``--steps`` steps, 2 threads.
insilico-lab: ``rig.synthesize`` with a population target per channel (all its units; the
mean rate is an affine function of the channel mean), batched, with its display constraints
(RMS contrast <= 0.25, mean luminance = background, aperture). Lucent: ``render_vis`` per
channel (``peer_lucent.py`` in its own venv). Reports image-steps/s, the ratio, and the
channel mean each tool's final images reach (measured the same way on the plain network).

    python tests/benchmarks/bench_peer_lucent.py [--channels 8] [--steps 64] [--repeats 3]

Rounds alternate the two tools; the ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import insilico as lab

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from _common import ALLOCATOR_ENV, write_result  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--channels", type=int, default=8)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="round-robin rounds (median ratio)")
    p.add_argument("--peer-python", default="/work/peers/lucent/bin/python")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = lab.load_model("efficientnet_lite0")
    rig = lab.Rig(model)
    layer = model.region("V4").layer
    units = model.units("V4")
    channels = list(range(args.channels))
    targets = {
        f"ch{c}": list(model.region_units("V4").neuroid_ids(units.index[units.channel == c]))
        for c in channels
    }
    reference = lab.stimuli.natural(16, size_deg=8, seed=1)
    kwargs = dict(
        objective="drive",
        size_deg=8.0,
        steps=args.steps,
        seed=0,
        reference=reference,
        batch_size=args.channels,
        progress=False,
    )
    rig.synthesize({"ch0": targets["ch0"]}, **{**kwargs, "steps": 2})  # warm-up
    cmd = f"--layer {layer} --steps {args.steps} --size 224 --threads {args.threads}".split()
    cmd = [
        args.peer_python,
        str(HERE / "peer_lucent.py"),
        *cmd,
        "--channel",
        ",".join(map(str, channels)),
    ]

    def lucent(env: dict | None) -> dict:
        out = subprocess.run(
            cmd, capture_output=True, text=True, check=True, env={**os.environ, **(env or {})}
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    # round-robin: each round times insilico, then Lucent with its default allocator, then
    # Lucent with ours, so a drift of the machine's speed hits both sides of each ratio
    ours_rates, peers, tuneds = [], [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = rig.synthesize(targets, **kwargs)
        ours_rates.append(args.channels * args.steps / (time.perf_counter() - t0))
        peers.append(lucent(None))
        tuneds.append(lucent(ALLOCATOR_ENV))
    images = rig.present(
        lab.stimuli.from_arrays(
            res.images.permute(0, 2, 3, 1).numpy(), size_deg=8.0, encoding="linear"
        )
    )
    acts = model.activations(images, [layer])[layer]
    ours_obj = [float(acts[k, c].mean()) for k, c in enumerate(channels)]
    peer = peers[-1]
    ratios = [o / p["image_steps_per_s"] for o, p in zip(ours_rates, peers)]
    tuned_ratios = [o / p["image_steps_per_s"] for o, p in zip(ours_rates, tuneds)]
    ours_rate = statistics.median(ours_rates)
    result = {
        "job": {"layer": layer, "channels": args.channels, "steps": args.steps, "input_px": 224},
        "rounds": args.repeats,
        "insilico_image_steps_per_s": [round(v, 2) for v in ours_rates],
        "lucent_image_steps_per_s": [p["image_steps_per_s"] for p in peers],
        "lucent_tuned_allocator_image_steps_per_s": [p["image_steps_per_s"] for p in tuneds],
        "ratio_per_round": [round(v, 2) for v in ratios],
        "ratio": round(statistics.median(ratios), 2),
        "ratio_vs_tuned_allocator_peer_per_round": [round(v, 2) for v in tuned_ratios],
        "ratio_vs_tuned_allocator_peer": round(statistics.median(tuned_ratios), 2),
        "insilico_median_image_steps_per_s": round(ours_rate, 2),
        "insilico_final_channel_mean": [round(v, 3) for v in ours_obj],
        "lucent_final_channel_mean": [round(v, 3) for v in peer["final_objective"]],
        "lucent_version": peer["version"],
        "note": "insilico images obey RMS contrast <= 0.25 and mean luminance = background; "
        "Lucent's are unconstrained (sigmoid range)",
    }
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
