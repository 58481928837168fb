"""Mapping a virtual animal: predictivity vs training images, per readout, and the cost of
one ``map_neurons`` per readout at the session size.

    OMP_NUM_THREADS=2 python tests/benchmarks/bench_mapping_curve.py    # Lite2 animal -> Lite0
    python tests/benchmarks/bench_mapping_curve.py --quick   # tiny_b -> tiny, one session (CI)

The animal is ``insilico.animals.VirtualAnimal`` on EfficientNet-Lite2 (a separately trained
network; 100 V4 sites, seed 0), recorded with 4 repetitions on ``max(--sizes)`` training
natural images and on 500 *held-out* natural images (disjoint photographs' crops: another
seed). The lab's model is EfficientNet-Lite0 (V4's committed layer).

1. **Curve**: for each training size N (250, 500, 1,000, 2,000) and readout (ridge, PLS,
   factorized, Gaussian, and an ensemble of ``--ensemble`` Gaussian readouts) one fit on the
   first N training images; held-out predictivity = Pearson r between the prediction and the
   mean of the 4 repetitions on the 500 held-out images; ceiling-normalised = r / the
   held-out noise ceiling (split-half, Spearman-Brown; sites with a ceiling < 0.1 left out of
   the normalised median). The null beside it: ridge fitted on responses shuffled across
   training images. ``--cores efficientnet_lite1`` adds, for the ensemble readout, the other
   lab network alone and the mean of both networks' predictions (an ensemble over cores,
   ``rigs.cores``); ``--readouts`` limits the curve to some rows.
2. **Session**: ``rig.map_neurons(recording of --session images, method=M, cv=5)`` per readout
   in its own process: wall time (features + 5 CV fits + the final fit), peak resident
   memory above the level before mapping (sampled every 5 ms), median cross-validated r and
   its ceiling-normalised median (``MappedSites.consistency``); with ``--cores``, one more
   session maps the ensemble readout onto every network and scores their mean
   (``rigs.cores.ensemble_predictivity``; the time and memory are those of all mappings).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import median_normalised, write_result

import insilico as lab
from insilico.animals import VirtualAnimal
from rigs.mapping import layer_features
from rigs.regression import DEFAULT_ALPHAS, fit
from rigs.reliability import mean_and_repeats, pearson, split_half_ceiling

SIZE_DEG = 8.0
READOUTS = {
    "ridge": ("ridge", 1),
    "pls": ("pls", 1),
    "factorized": ("factorized", 1),
    "gaussian": ("gaussian", 1),
}

SESSION = r"""
import json, sys
from _common import median_normalised, peak_rss_while  # the child runs in this folder
import numpy as np
import insilico as lab
from insilico.animals import VirtualAnimal
from rigs.cores import ensemble_predictivity
animal_name, lab_names, n_sites, n_images, method, k = sys.argv[1:7]
animal = VirtualAnimal(animal_name, "V4", int(n_sites), seed=0, trial_budget=10**7)
stim = lab.stimuli.natural(int(n_images), size_deg=8.0, seed=7)
rec = animal.show(stim, repeats=4, seed=0)
rigs = [lab.Rig(lab.load_model(name)) for name in lab_names.split("+")]
for rig in rigs:
    rig.model.region_units("V4")
maps, seconds, before, peak = peak_rss_while(lambda: [rig.map_neurons(
    rec, "V4", method=method, cv=5, stimuli_set=stim, progress=False, n_models=int(k))
    for rig in rigs])
r = ensemble_predictivity(maps)  # one network: its own CV r
ceiling = maps[0].noise_ceiling
print(json.dumps({"method": method, "n_models": int(k), "cores": lab_names,
                  "seconds": round(seconds, 1),
                  "mapping_peak_increase_mb": round(peak - before, 1),
                  "median_r": round(float(np.nanmedian(r)), 3),
                  "median_ceiling": round(float(np.nanmedian(ceiling)), 3),
                  "median_normalised": round(median_normalised(r, ceiling), 3)}))
"""


def _record(animal: VirtualAnimal, stim) -> tuple[np.ndarray, np.ndarray]:
    rec = animal.show(stim, repeats=4, seed=0)
    mean, reps = mean_and_repeats(rec, np.asarray([str(s) for s in stim.ids]))
    return mean, split_half_ceiling(reps, seed=0)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--animal", default="efficientnet_lite2")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--sites", type=int, default=100)
    p.add_argument("--sizes", default="250,500,1000,2000")
    p.add_argument("--test", type=int, default=500, help="held-out images")
    p.add_argument("--ensemble", type=int, default=4, help="members of the ensemble readout")
    p.add_argument("--session", type=int, default=1000, help="images of the timed sessions")
    p.add_argument("--skip-session", action="store_true")
    p.add_argument("--cores", default="", help="other lab networks for a cross-network row")
    p.add_argument("--readouts", default="", help="only these rows, e.g. gaussian_x4")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.animal, args.model, args.sites = "tiny_b", "tiny", 12
        args.sizes, args.test, args.ensemble, args.session = "100,200", 100, 2, 200
    sizes = [int(s) for s in args.sizes.split(",")]
    readouts = dict(READOUTS)
    readouts[f"gaussian_x{args.ensemble}"] = ("gaussian", args.ensemble)
    if args.readouts:
        readouts = {k: v for k, v in readouts.items() if k in args.readouts.split(",")}
    others = [c for c in args.cores.split(",") if c]
    if args.animal in [args.model, *others]:
        raise SystemExit(f"the lab's networks include the animal's own ({args.animal!r})")

    animal = VirtualAnimal(args.animal, "V4", args.sites, seed=0, trial_budget=10**7)
    train = lab.stimuli.natural(max(sizes), size_deg=SIZE_DEG, seed=7)
    test = lab.stimuli.natural(args.test, size_deg=SIZE_DEG, seed=11)
    t0 = time.perf_counter()
    y_train, _ = _record(animal, train)
    y_test, ceiling = _record(animal, test)
    rig = lab.Rig(lab.load_model(args.model))
    layer = rig.model.region("V4").layer
    shape = rig.model.layer_shape(layer)
    x_train = layer_features(rig, train, layer)
    x_test = layer_features(rig, test, layer)
    setup_s = time.perf_counter() - t0
    print(
        f"{args.animal} animal, {args.sites} V4 sites -> {args.model} {layer} {tuple(shape)}; "
        f"held-out ceiling median {np.nanmedian(ceiling):.3f} ({setup_s:.0f} s to record)",
        flush=True,
    )
    curve: dict[str, dict] = {}
    preds: dict[str, dict[int, np.ndarray]] = {}  # held-out predictions per row and size

    def row(label, method, k, x_tr, x_te, shape) -> None:
        curve[label], preds[label] = {}, {}
        for n in sizes:
            y = torch.as_tensor(y_train[:n], dtype=torch.float32)
            if label.startswith("null"):
                y = y[torch.from_numpy(np.random.default_rng(0).permutation(n))]
            t = time.perf_counter()
            w, b, _ = fit(method, x_tr[:n], y, DEFAULT_ALPHAS, 25, shape, k)
            preds[label][n] = (x_te @ w + b).numpy()
            score(label, n, preds[label][n], time.perf_counter() - t)

    def score(label: str, n: int, pred: np.ndarray, seconds: float) -> None:
        r = pearson(pred, y_test)
        curve.setdefault(label, {})[n] = {
            "median_r": round(float(np.nanmedian(r)), 3),
            "median_normalised": round(median_normalised(r, ceiling), 3),
            "fit_s": round(seconds, 1),
        }
        print(f"{label:>20} N={n:5d}: {json.dumps(curve[label][n])}", flush=True)

    for label, (method, k) in [*readouts.items(), ("null_shuffled_ridge", ("ridge", 1))]:
        row(label, method, k, x_train, x_test, shape)
    ens = f"gaussian_x{args.ensemble}"
    for name in others:  # an ensemble over cores: the other network alone, then the mean
        other = lab.Rig(lab.load_model(name))
        o_layer = other.model.region("V4").layer
        o_shape = other.model.layer_shape(o_layer)
        o_train, o_test = (
            layer_features(other, train, o_layer),
            layer_features(other, test, o_layer),
        )
        row(f"{name}:{ens}", "gaussian", args.ensemble, o_train, o_test, o_shape)
        if ens in preds:
            for n in sizes:
                both = (preds[ens][n] + preds[f"{name}:{ens}"][n]) / 2
                score(f"{args.model}+{name}:{ens}", n, both, 0.0)
    result = {
        "animal": args.animal,
        "model": args.model,
        "layer": layer,
        "sites": args.sites,
        "test_images": args.test,
        "heldout_ceiling_median": round(float(np.nanmedian(ceiling)), 3),
        "curve": curve,
    }
    if not args.skip_session:
        result["session"] = []
        timed = [("gaussian", args.ensemble)] if args.quick else list(readouts.values())
        timed = [(args.model, method, k) for method, k in timed]
        if others:  # the ensemble over networks: every network mapped, the mean's CV r
            timed.append(("+".join([args.model, *others]), "gaussian", args.ensemble))
        for names, method, k in timed:
            cmd = [sys.executable, "-c", SESSION, args.animal, names, str(args.sites)]
            cmd += [str(args.session), method, str(k)]
            here = Path(__file__).parent  # the child imports _common
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=here)
            result["session"].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(result["session"][-1]), flush=True)
    write_result(args.json, result)
    return result


if __name__ == "__main__":
    main()
