"""Peak memory of a streamed recording: 5,000 stimuli against 500, each in a fresh process;
and of a first run (measuring a region's units with an empty cache).

    python tests/benchmarks/bench_memory.py            # EfficientNet-Lite0, V4 array, 500 vs 5000
    python tests/benchmarks/bench_memory.py --first-run  # Lite0 units of each region, empty cache
    python tests/benchmarks/bench_memory.py --quick    # tiny model, 50 vs 500 + first run (CI)

Prints JSON with each run's peak resident memory (ru_maxrss) and the difference
(target: within 300 MB); the first-run peaks (target: under 3 GB).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from _common import write_result

CHILD = r"""
import json, resource, sys, time
import insilico as lab
model_name, n, out, region = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
model = lab.load_model(model_name)
rig = lab.Rig(model)
sites = rig.implant(region, n_sites=96, at_deg=(1.0, 1.0), seed=0)
stim = lab.stimuli.natural(n, size_deg=6, seed=1)
t0 = time.perf_counter()
rec = rig.record(stim, sites, repeats=2, noise="poisson", seed=0, out=out, progress=False)
seconds = time.perf_counter() - t0
assert rec.sizes["presentation"] == 2 * n
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"n": n, "peak_rss_mb": round(peak_mb, 1), "seconds": round(seconds, 1)}))
"""


FIRST_RUN = r"""
import json, resource, sys, time
import insilico as lab
model = lab.load_model(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
model.units(sys.argv[2])
seconds = time.perf_counter() - t0
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"region": sys.argv[2], "peak_rss_mb": round(peak_mb, 1),
                  "model_loaded_mb": round(before, 1), "seconds": round(seconds, 1)}))
"""


def first_run(model: str, region: str) -> dict:
    """Peak RSS of measuring ``region``'s units in a fresh process with an empty cache."""
    with tempfile.TemporaryDirectory() as cache:
        proc = subprocess.run(
            [sys.executable, "-c", FIRST_RUN, model, region],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "INSILICO_CACHE": cache},
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(model: str, n: int, region: str, workdir: str) -> dict:
    out = os.path.join(workdir, f"rec_{n}.zarr")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, model, str(n), out, region],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--region", default="V4")
    p.add_argument("--small", type=int, default=500)
    p.add_argument("--large", type=int, default=5000)
    p.add_argument("--quick", action="store_true", help="tiny model, 50 vs 500 stimuli")
    p.add_argument(
        "--first-run", action="store_true", help="only the first-run unit measurement peaks"
    )
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.model, args.small, args.large = "tiny", 50, 500
    t0 = time.perf_counter()
    first = {r: first_run(args.model, r) for r in ("V1", "V2", "V4", "IT")}
    if args.first_run:
        result = {"model": args.model, "first_run": first}
        write_result(args.json, result)
        return result
    with tempfile.TemporaryDirectory() as tmp:
        small = run(args.model, args.small, args.region, tmp)
        large = run(args.model, args.large, args.region, tmp)
    result = {
        "model": args.model,
        "region": args.region,
        "small": small,
        "large": large,
        "peak_difference_mb": round(large["peak_rss_mb"] - small["peak_rss_mb"], 1),
        "first_run": first,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    main()
