"""Mapping cost: 200 sites from 1,000 images, 5-fold CV, on the offline model; wall time and
peak memory (resident set sampled every 5 ms during mapping, minus the level before) for one
candidate layer and for ``layer="best"`` over several layers (each run in a fresh process).

    python tests/benchmarks/bench_mapping.py            # EfficientNet-Lite0
    python tests/benchmarks/bench_mapping.py --quick    # tiny model (CI smoke)

The recorded "animal" is the same network committed to 9 visual degrees (Poisson spikes,
4 repetitions), implanted with a 200-site V4 array. Target: peak memory does not grow with
the number of candidate layers (one layer's features are held at a time).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, tempfile
from _common import peak_rss_while  # the child runs in this folder
from importlib import resources
from pathlib import Path
import insilico as lab
model_name, n_images, n_sites, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
text = (resources.files("insilico.brain") / "commitments" / f"{model_name}.toml").read_text()
tmp = Path(tempfile.mkdtemp()) / "animal.toml"
tmp.write_text(text.replace("visual_degrees = 8.0", "visual_degrees = 9.0"))
animal = lab.Rig(lab.load_model(str(tmp)))
rig = lab.Rig(lab.load_model(model_name))
stim = lab.stimuli.natural(n_images, size_deg=8.0, seed=7)
array = animal.implant("V4", n_sites=n_sites, at_deg=(0.5, 0.5), seed=0)
rec = animal.record(stim, array, repeats=4, noise="poisson", seed=0, progress=False)
for r in rig.model.regions:
    rig.model.region_units(r)
cands = None if layers == "commitment" else layers.split(",")
mapped, seconds, before, peak = peak_rss_while(lambda: rig.map_neurons(
    rec, "V4", cv=5, stimuli_set=stim, progress=False,
    layer="best" if cands else None, candidate_layers=cands))
print(json.dumps({"layers": layers, "chosen": mapped.layer, "seconds": round(seconds, 1),
                  "peak_rss_mb": round(peak, 1), "rss_before_mapping_mb": round(before, 1),
                  "mapping_peak_increase_mb": round(peak - before, 1),
                  "median_r": round(float(mapped.report().predictivity.median()), 3),
                  "median_ceiling": round(float(mapped.report().noise_ceiling.median()), 3)}))
"""


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--sites", type=int, default=200)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.images, args.sites = "tiny", 120, 10
    if args.model == "tiny":
        sets = ["commitment", "v4,it", "v2,v4,it"]
    else:
        sets = ["commitment", "_blocks.7,_blocks.14", "_blocks.4,_blocks.7,_blocks.14"]
    runs = []
    for layers in sets:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, args.model, str(args.images), str(args.sites), layers],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,  # the child imports _common
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    result = {"model": args.model, "images": args.images, "sites": args.sites, "runs": runs}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
