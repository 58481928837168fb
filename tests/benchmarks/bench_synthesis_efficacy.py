"""Synthesis efficacy, scored on the optimised model and on held-out networks: images
synthesized on EfficientNet-Lite0 for a few V4 sites, compared with 1,000 natural patches of
the same size and place, both equated to the synthesis's display budget and unconstrained, on
Lite0 itself and transferred to Lite1 and Lite2 (each site matched to a unit of the other
network by RF position and natural-image responses; ``stimuli.synthesis`` /
``rigs.synthesis.match_units``).

    python tests/benchmarks/bench_synthesis_efficacy.py [--sites 12] [--steps 64] [--json out.json]
    python tests/benchmarks/bench_synthesis_efficacy.py --quick      # tiny model (CI smoke)

Every response is re-measured on the image as the display shows it (8-bit, gamma 2.2,
monitor pixels and back); the equated patches are rendered through the same display. Null
for "beats natural": an image exchangeable with the natural patches beats the best of N with
probability 1 / (N + 1). In ``--quick`` mode the held-out network is tiny with perturbed
weights (a different network for the RF-matched path) and every objective and region runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import write_result

import insilico as lab


def _perturbed_tiny(folder: Path) -> lab.Rig:
    """tiny with its weights jittered by 5 % of each tensor's SD: another network."""
    gen = torch.Generator().manual_seed(1)
    state = {}
    for k, v in lab.load_model("tiny").network.state_dict().items():
        noise = torch.randn(v.shape, generator=gen) * 0.05 * v.float().std().nan_to_num()
        state[k] = v + noise if v.is_floating_point() and v.numel() > 1 else v
    torch.save(state, folder / "tiny_jittered.pt")
    return lab.Rig(lab.load_model("tiny", weights=folder / "tiny_jittered.pt"))


def _summary(t, prefix: str = "") -> dict:
    out = {}
    for key in ("", "_unconstrained"):
        beats = t[f"{prefix}beats_natural{key}"].to_numpy(dtype=float)
        ratio = t[f"{prefix}ratio{key}"].to_numpy(dtype=float)
        out[f"beats_natural{key}"] = float(beats.mean())
        out[f"median_ratio{key}"] = float(np.nanmedian(ratio)) if np.isfinite(ratio).any() else None
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--held-out", default="efficientnet_lite1,efficientnet_lite2")
    p.add_argument("--regions", default="V4")
    p.add_argument("--objectives", default="drive,one_hot")
    p.add_argument("--sites", type=int, default=12)
    p.add_argument("--reference", type=int, default=1000)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--size-deg", type=float, default=4.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    tmp = tempfile.TemporaryDirectory()
    if args.quick:
        args.model, args.sites, args.reference, args.steps, args.size_deg = "tiny", 4, 40, 10, 4.0
        args.regions, args.objectives = "V4,IT", "drive,silence,one_hot"
        others = [_perturbed_tiny(Path(tmp.name))]
    else:
        others = [lab.Rig(lab.load_model(n)) for n in args.held_out.split(",") if n]
    torch.set_num_threads(args.threads)
    rig = lab.Rig(lab.load_model(args.model))
    reference = lab.stimuli.natural(args.reference, size_deg=args.size_deg, seed=1)
    rng = np.random.default_rng(0)
    result: dict = {
        "model": args.model,
        "held_out": [o.model.name for o in others],
        "steps": args.steps,
        "reference": args.reference,
        "size_deg": args.size_deg,
        "null_beats_natural": 1 / (args.reference + 1),
    }
    where = {"V4": (2.0, -1.5), "IT": (0.0, 0.0)}
    for region in args.regions.split(","):
        array = rig.implant(region, n_sites=96, seed=0, at_deg=where[region])
        chosen = np.sort(rng.choice(96, size=args.sites, replace=False))
        for objective in args.objectives.split(","):
            t0 = time.perf_counter()
            res = rig.synthesize(
                array.sites[chosen],
                objective=objective,
                size_deg=args.size_deg,
                position_deg=where[region],
                steps=args.steps,
                seed=0,
                reference=reference,
                transfer=others,
                progress=False,
            )
            t = res.targets
            entry = _summary(t)
            entry["sites"] = len(t)
            for other in others:
                name = other.model.name
                match = res.attrs["transfer_match"].get(name, [])
                entry[name] = _summary(t, f"transfer_{name}_") | {
                    "mode": res.attrs["transfer_modes"][name],
                    "median_match_r": float(np.median([m["r"] for m in match])) if match else None,
                    "max_rf_offset_deg": max((m["rf_offset_deg"] for m in match), default=None),
                }
            if objective == "silence":
                entry["beats_natural_drive"] = float(t["beats_natural_drive"].mean())
                entry["natural_min_at_zero"] = float((t["best_natural"] == 0).mean())
            entry["seconds"] = round(time.perf_counter() - t0, 1)
            result[f"{region}_{objective}"] = entry
            print(region, objective, json.dumps(entry), flush=True)
    tmp.cleanup()
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    main()
